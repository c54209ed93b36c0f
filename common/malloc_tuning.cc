#include "common/malloc_tuning.h"

#include <climits>
#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace llava {

bool KeepFreedMemoryForReuse(std::string* why) {
#if defined(__GLIBC__)
  if (const char* t = std::getenv("GLIBC_TUNABLES");
      t != nullptr && std::strstr(t, "glibc.malloc.") != nullptr) {
    *why = "GLIBC_TUNABLES sets malloc tunables; they stand";
    return false;
  }
  // The largest value mallopt takes: every tensor buffer of a step (up to 2 GiB each) comes
  // from the heap, and the heap's top is never given back.
  if (mallopt(M_MMAP_THRESHOLD, INT_MAX) != 1 || mallopt(M_TRIM_THRESHOLD, INT_MAX) != 1) {
    *why = "mallopt refused the thresholds";
    return false;
  }
  *why = "freed memory kept for reuse (mmap and trim thresholds at 2 GiB)";
  return true;
#else
  *why = "not glibc";
  return false;
#endif
}

}  // namespace llava
