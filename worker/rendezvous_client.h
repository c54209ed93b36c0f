// The write-once key-value store a collective group meets through: the coordinator's
// RendezvousService (CoordinatorClient), or an in-process one in tests. An interface
// without libtorch, so that the coordinator client implements it without the tensor code.
#pragma once

#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace llava {

// Thread-safe.
class RendezvousClient {
 public:
  virtual ~RendezvousClient() = default;
  virtual absl::Status Set(const std::string& key, const std::string& value) = 0;
  virtual absl::StatusOr<std::string> Get(const std::string& key,
                                          std::chrono::milliseconds wait) = 0;
};

}  // namespace llava
