// How this process's C allocator treats the large buffers of tensor work.
//
// glibc's malloc serves an allocation above its mmap threshold (128 KiB at start, raised
// on the fly to at most 32 MiB) with a fresh mapping that free() unmaps, and it trims the
// heap's top when much of it is free. A training or eval step allocates and frees buffers
// of tens of MiB every step (logits over the vocabulary, activations), so each step's
// buffers came back as new pages that the kernel faulted in and zeroed again; on the VMs
// where a page fault is slow, that made the CPU path several times slower than the
// arithmetic (bench/RESULTS.md, "The CPU path and the allocator").
//
// KeepFreedMemoryForReuse raises both thresholds so that freed buffers stay in the
// process and are reused: the resident size stays at the high-water mark of a step instead
// of going back to the system between steps. The numbers computed do not change.
//
// Threading: call once at the start of main, before any other thread starts.
#pragma once

#include <string>

namespace llava {

// True when applied; otherwise `why` says why not: the C library is not glibc, or the user
// set glibc's own malloc tunables (GLIBC_TUNABLES), which then stand.
bool KeepFreedMemoryForReuse(std::string* why);

}  // namespace llava
