// GoogleTest entry point shared by every test binary: logging goes to stderr.
#include <gtest/gtest.h>

#include "common/log.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  llava::log::InitLogging(argv[0]);
  return RUN_ALL_TESTS();
}
