// How the ranks of an eval attempt get the checkpoint's projector (the bytes of the
// projector-only checkpoint file) with at most one download from the coordinator per
// attempt, however many ranks there are, so that the job's fixed cost does not grow with
// its workers.
//
// Each rank publishes in the attempt's rendezvous store whether it lacks the projector
// (its cache of the last evaluated checkpoint misses). If no rank lacks it, nothing moves
// and no group is formed. Otherwise every rank meets the attempt's collective group and
// rank 0 broadcasts the bytes, taken from its cache or downloaded while the group forms:
// their length first, then the bytes. When rank 0 cannot fetch them it broadcasts a
// failure marker and its error instead, so that the others fail at once with rank 0's
// error rather than at the group's timeout.
//
// Runs on the task thread (rank 0's fetch on a thread of its own). The group is handed to
// `on_collective` while it lives, so that Abort() from the heartbeat thread reaches a rank
// waiting in the broadcast.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/collective.h"

namespace llava {

// A group that `on_collective` is told of while it lives: with the group when made, with
// null before it is destroyed (the heartbeat thread must never see a destroyed group).
// Movable, not copyable.
class AttachedCollective {
 public:
  AttachedCollective() = default;
  AttachedCollective(std::unique_ptr<Collective> group,
                     std::function<void(Collective*)> on_collective);
  AttachedCollective(AttachedCollective&& other) = default;  // `other` is left empty
  AttachedCollective& operator=(AttachedCollective&& other);
  ~AttachedCollective();
  Collective* get() const { return group_.get(); }
  // Detaches and destroys the group now.
  void Reset();

 private:
  std::unique_ptr<Collective> group_;
  std::function<void(Collective*)> on_collective_;
};

struct ProjectorShareOptions {
  // The attempt's group: rank, world size, rendezvous prefix, timeout, engine.
  CollectiveOptions collective;
  // This rank already holds the projector.
  bool have = false;
};

struct ProjectorShare {
  // The projector-only checkpoint file; empty where the rank already had the projector.
  std::string bytes;
  bool fetched = false;     // rank 0 called `fetch` (a download, or its cache's bytes)
  double fetch_ms = 0;      // that call's time
  double group_ms = 0;      // meeting the group (0: no rank lacked the projector)
  double broadcast_ms = 0;  // the length and the bytes
  // The group, kept for the rest of the task (like a training attempt's, it is destroyed
  // when the task ends); empty when no group was needed.
  AttachedCollective group;
};

// The rendezvous key under which `rank` says whether it lacks the projector.
std::string ProjectorNeedKey(const std::string& prefix, int64_t rank);

// `fetch`: rank 0's source of the bytes, called at most once, on another thread while the
// group forms; the other ranks never call it. `on_collective` as above. Errors name the
// rank that failed (rank 0's fetch error reaches every rank).
absl::StatusOr<ProjectorShare> ShareProjector(
    const ProjectorShareOptions& options, RendezvousClient* store,
    const std::function<absl::StatusOr<std::string>()>& fetch,
    const std::function<void(Collective*)>& on_collective);

}  // namespace llava
