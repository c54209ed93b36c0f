// GoogleTest entry point shared by every test binary: logging goes to stderr.
#include <gtest/gtest.h>

#include <string>

#include "common/log.h"
#include "common/malloc_tuning.h"

int main(int argc, char** argv) {
  // As the product runs (launch/main.cc): tensor buffers stay in the process between steps.
  std::string why_not;
  llava::KeepFreedMemoryForReuse(&why_not);
  ::testing::InitGoogleTest(&argc, argv);
  llava::log::InitLogging(argv[0]);
  return RUN_ALL_TESTS();
}
