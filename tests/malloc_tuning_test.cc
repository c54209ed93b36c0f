// common/malloc_tuning.h: after KeepFreedMemoryForReuse a tensor-sized buffer comes from
// the heap (no mapping of its own) and stays in the process after free.
#include "common/malloc_tuning.h"

#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace llava {
namespace {

TEST(MallocTuningTest, LargeBuffersComeFromTheHeapAndStayAfterFree) {
  std::string why;
  ASSERT_TRUE(KeepFreedMemoryForReuse(&why)) << why;
  const size_t size = 64 << 20;  // above glibc's largest dynamic mmap threshold (32 MiB)
  const struct mallinfo2 before = mallinfo2();
  void* p = std::malloc(size);
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, size);
  const struct mallinfo2 during = mallinfo2();
  EXPECT_EQ(during.hblks, before.hblks) << "the buffer got a mapping of its own";
  std::free(p);
  const struct mallinfo2 after = mallinfo2();
  // Kept: the heap did not shrink, so the next step's buffer needs no new pages.
  EXPECT_EQ(after.arena, during.arena);
  EXPECT_GE(after.fordblks, size);
}

// The control: with glibc's default threshold the same buffer is a mapping of its own,
// unmapped on free (what each step paid for before).
TEST(MallocTuningTest, WithTheDefaultThresholdTheBufferIsMappedAndUnmapped) {
  ASSERT_EQ(mallopt(M_MMAP_THRESHOLD, 128 * 1024), 1);
  // Larger than any free chunk the other tests left in the heap, which would serve it.
  const size_t size = 256 << 20;
  const struct mallinfo2 before = mallinfo2();
  void* p = std::malloc(size);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(mallinfo2().hblks, before.hblks + 1);
  std::free(p);
  EXPECT_EQ(mallinfo2().hblks, before.hblks);
  std::string why;
  ASSERT_TRUE(KeepFreedMemoryForReuse(&why)) << why;
}

TEST(MallocTuningTest, TheUsersOwnGlibcTunablesStand) {
  const char* old = std::getenv("GLIBC_TUNABLES");
  const std::string saved = old == nullptr ? "" : old;
  ASSERT_EQ(setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536", 1), 0);
  std::string why;
  EXPECT_FALSE(KeepFreedMemoryForReuse(&why));
  EXPECT_NE(why.find("GLIBC_TUNABLES"), std::string::npos) << why;
  if (old == nullptr) {
    unsetenv("GLIBC_TUNABLES");
  } else {
    setenv("GLIBC_TUNABLES", saved.c_str(), 1);
  }
}

}  // namespace
}  // namespace llava
