#include "common/file_util.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "tests/test_util.h"
#include "tests/status_matchers.h"

namespace llava {
namespace {

using ::llava::testing::StatusIs;

TEST(FileUtilTest, AtomicWriteReplacesAndLeavesNoTempFiles) {
  std::string dir = testing::MakeTempDir("fileutil");
  std::string path = dir + "/x.bin";
  ASSERT_TRUE(WriteFileAtomic(path, "first").ok());
  ASSERT_TRUE(WriteFileAtomic(path, std::string("sec\0nd", 6)).ok());
  auto got = ReadFile(path);
  ASSERT_TRUE(got.ok()) << got.status();
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
  ASSERT_TRUE(MakeDirs(dir + "/t/a/b").ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/t/a/b/x", "x").ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/t/y", "y").ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/keep", "k").ok());
  std::filesystem::create_symlink(dir + "/keep", dir + "/t/a/link");
  ASSERT_TRUE(RemoveTree(dir + "/t").ok());
  EXPECT_FALSE(FileExists(dir + "/t"));
  EXPECT_TRUE(FileExists(dir + "/keep"));
  EXPECT_TRUE(RemoveTree(dir + "/t").ok());     // already gone: not an error
  ASSERT_TRUE(RemoveTree(dir + "/keep").ok());  // a plain file
  EXPECT_FALSE(FileExists(dir + "/keep"));
}

}  // namespace
}  // namespace llava
