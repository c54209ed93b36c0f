// The HTTP/2 receive window of the coordinator's connections, both ends: checkpoints move
// as 1 MB messages, and gRPC's 64 KB starting window (before its BDP probing grows it)
// would pace such a stream in round trips. A window of a few messages, never more than
// one whole message limit, lets the sender go at memory speed.
#pragma once

#include <algorithm>
#include <cstdint>

namespace llava {

inline int TransferWindowBytes(int64_t max_message_bytes) {
  return static_cast<int>(std::min<int64_t>(max_message_bytes, 8 << 20));
}

}  // namespace llava
