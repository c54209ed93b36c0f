// Who is calling the coordinator: the name of the caller's credential and the roles it
// holds. Roles: `client` submits and manages jobs, `worker` serves them (registration,
// heartbeats, results, shards, rendezvous, checkpoint uploads), `admin` is a client that
// may also cancel or delete anyone's job. Without tokens (plaintext `launch` on
// loopback) every caller is "local" with every role. A plain value; thread-safe.
#pragma once

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace llava {

enum Role : unsigned {
  kRoleClient = 1u << 0,
  kRoleWorker = 1u << 1,
  kRoleAdmin = 1u << 2,
};

struct Caller {
  std::string name = "local";
  unsigned roles = kRoleClient | kRoleWorker | kRoleAdmin;

  bool Has(Role role) const { return (roles & role) != 0; }
  // The caller may manage (cancel, delete) a job submitted by `submitter`.
  bool MayManage(const std::string& submitter) const {
    return Has(kRoleAdmin) || (Has(kRoleClient) && submitter == name);
  }
};

// "client", "worker", "admin" or "client+worker" (a legacy single token) -> role bits.
absl::StatusOr<unsigned> ParseRoles(absl::string_view text);
std::string RolesName(unsigned roles);

}  // namespace llava
