// The logging policy: LM_LOG lines reach stderr even in a file that includes torch
// (whose c10 headers define their own LOG macro), and LM_CHECK aborts with file:line.
#include "common/log.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace llava {
namespace {

TEST(LogTest, InfoLinesReachStderrBesideTorchHeaders) {
  ::testing::internal::CaptureStderr();
  LM_LOG(INFO) << "hello from a torch file " << 42;
  LM_LOG(WARNING) << "a warning";
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("hello from a torch file 42"), std::string::npos) << err;
  EXPECT_NE(err.find("log_test.cc"), std::string::npos) << err;
  EXPECT_NE(err.find("a warning"), std::string::npos) << err;
}

TEST(LogDeathTest, CheckFailureNamesConditionAndLine) {
  int a = 1, b = 2;
  EXPECT_DEATH(LM_CHECK_EQ(a, b) << "context", "log_test.cc.*Check failed: .*a.*b.*context");
}

TEST(LogTest, PassingCheckDoesNothing) {
  ::testing::internal::CaptureStderr();
  LM_CHECK(1 + 1 == 2) << "never printed";
  EXPECT_EQ(::testing::internal::GetCapturedStderr().find("never printed"), std::string::npos);
}

}  // namespace
}  // namespace llava
