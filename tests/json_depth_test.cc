// JsonNestingExceeds: the depth bound the JSON parsers check first.
#include "common/json_depth.h"

#include <gtest/gtest.h>

#include <string>

namespace llava {
namespace {

TEST(JsonDepthTest, CountsArraysAndObjects) {
  EXPECT_EQ(JsonNestingExceeds("[]", 1), std::nullopt);
  EXPECT_EQ(JsonNestingExceeds("[[]]", 1), std::optional<size_t>(1));
  EXPECT_EQ(JsonNestingExceeds(R"({"a":[{"b":1}]})", 3), std::nullopt);
  EXPECT_EQ(JsonNestingExceeds(R"({"a":[{"b":1}]})", 2), std::optional<size_t>(6));
  // Closing brackets bring the depth back down: siblings do not add up.
  EXPECT_EQ(JsonNestingExceeds("[[],[],{},[[]]]", 3), std::nullopt);
  EXPECT_EQ(JsonNestingExceeds("", 0), std::nullopt);
  EXPECT_EQ(JsonNestingExceeds("7", 0), std::nullopt);
}

TEST(JsonDepthTest, IgnoresBracketsInsideStrings) {
  EXPECT_EQ(JsonNestingExceeds(R"(["[[[[", "{{{{"])", 1), std::nullopt);
  // An escaped quote does not end the string; an escaped backslash before a quote does.
  EXPECT_EQ(JsonNestingExceeds(R"(["\"[[[["])", 1), std::nullopt);
  EXPECT_EQ(JsonNestingExceeds(R"(["\\", [[]]])", 1), std::optional<size_t>(7));
}

TEST(JsonDepthTest, DefaultLimitAllowsRealFilesAndRefusesDeepOnes) {
  const std::string ok = std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']');
  EXPECT_EQ(JsonNestingExceeds(ok), std::nullopt);
  const std::string deep = "[" + ok + "]";
  EXPECT_EQ(JsonNestingExceeds(deep), std::optional<size_t>(kMaxJsonDepth));
}

}  // namespace
}  // namespace llava
