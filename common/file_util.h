// Whole-file I/O with absl::Status errors that name the path, atomic replacement of
// files (temp file in the same directory, fsync, rename, fsync of the directory), and
// environment lookups. Thread-safe: no shared state.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace llava {

absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes `data` to `path` so that readers see either the old file or the whole new one,
// never a torn write, and a crash leaves the old file in place.
absl::Status WriteFileAtomic(const std::string& path, std::string_view data);

// Creates `path` and its parents if missing.
absl::Status MakeDirs(const std::string& path);

// Removes `path` and, for a directory, everything under it (symbolic links themselves,
// never what they point to). A missing path is not an error. Use this rather than
// std::filesystem::remove_all: the PyTorch 2.x wheel's libtorch.so exports its own
// copy of that function, which the dynamic linker binds our calls to, and it crashes
// (a jump to address 0) on any non-empty directory.
absl::Status RemoveTree(const std::string& path);

// The names in directory `path` (no "." or ".."), sorted; empty if it cannot be read.
std::vector<std::string> ListDir(const std::string& path);

bool FileExists(const std::string& path);
bool IsDirectory(const std::string& path);

// $name if set and non-empty, else `fallback`.
std::string GetEnvOr(const char* name, const std::string& fallback);

}  // namespace llava
