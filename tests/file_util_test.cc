#include "common/file_util.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "tests/test_util.h"
#include "tests/status_matchers.h"

namespace llava {
namespace {

using ::llava::testing::IsOk;
using ::llava::testing::StatusIs;

TEST(FileUtilTest, AtomicWriteReplacesAndLeavesNoTempFiles) {
  std::string dir = testing::MakeTempDir("fileutil");
  std::string path = dir + "/x.bin";
  ASSERT_THAT(WriteFileAtomic(path, "first"), IsOk());
  ASSERT_THAT(WriteFileAtomic(path, std::string("sec\0nd", 6)), IsOk());
  auto got = ReadFile(path);
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(*got, std::string("sec\0nd", 6));
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
}

TEST(FileUtilTest, ErrorsNameThePath) {
  auto got = ReadFile("/nonexistent/dir/file.json");
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(got, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_NE(got.status().message().find("/nonexistent/dir/file.json"), std::string::npos);
  absl::Status st = WriteFileAtomic("/nonexistent/dir/file.json", "x");
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("/nonexistent/dir/file.json"), std::string::npos);
}

TEST(FileUtilTest, ReadingADirectoryIsAnError) {
  std::string dir = testing::MakeTempDir("fileutil");
  auto got = ReadFile(dir);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("directory"), std::string::npos);
}

// A nested tree with a symbolic link out of it: the tree goes, the link's target stays.
TEST(FileUtilTest, RemoveTreeRemovesNestedDirectoriesButNotLinkTargets) {
  std::string dir = testing::MakeTempDir("fileutil");
  ASSERT_THAT(MakeDirs(dir + "/t/a/b"), IsOk());
  ASSERT_THAT(WriteFileAtomic(dir + "/t/a/b/x", "x"), IsOk());
  ASSERT_THAT(WriteFileAtomic(dir + "/t/y", "y"), IsOk());
  ASSERT_THAT(WriteFileAtomic(dir + "/keep", "k"), IsOk());
  std::filesystem::create_symlink(dir + "/keep", dir + "/t/a/link");
  ASSERT_THAT(RemoveTree(dir + "/t"), IsOk());
  EXPECT_FALSE(FileExists(dir + "/t"));
  EXPECT_TRUE(FileExists(dir + "/keep"));
  EXPECT_THAT(RemoveTree(dir + "/t"), IsOk());     // already gone: not an error
  ASSERT_THAT(RemoveTree(dir + "/keep"), IsOk());  // a plain file
  EXPECT_FALSE(FileExists(dir + "/keep"));
}

}  // namespace
}  // namespace llava
