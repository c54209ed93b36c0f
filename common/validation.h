// What client input may look like, checked in one place: ids (job, worker, checkpoint,
// session), free text (questions, reasons, errors), numeric ranges, and products that
// must not overflow; and a form of any string that is safe to put in a log line. Every
// RPC handler and every record read back from disk goes through these before a value
// reaches code that assumes it. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace llava {

// Ids: 1..kMaxIdBytes of [A-Za-z0-9._-]. Safe in file names (no '/', never "." or "..")
// and in log lines.
inline constexpr size_t kMaxIdBytes = 128;
absl::Status CheckId(absl::string_view field, absl::string_view value);
// As CheckId, but empty is allowed (an unset optional id).
absl::Status CheckIdOrEmpty(absl::string_view field, absl::string_view value);

// Free text: at most `max_bytes` bytes, no control characters (newlines would forge log
// lines and break prompts); empty only if `allow_empty`.
absl::Status CheckText(absl::string_view field, absl::string_view value, size_t max_bytes,
                       bool allow_empty = true);

// value > 0, else INVALID_ARGUMENT "<field> must be > 0, got <value>": the one form of
// every positive-count and positive-duration check.
absl::Status CheckPositive(absl::string_view field, int64_t value);

// lo <= value <= hi (doubles: also finite).
absl::Status CheckRange(absl::string_view field, int64_t value, int64_t lo, int64_t hi);
absl::Status CheckRange(absl::string_view field, double value, double lo, double hi);

// a * b without overflow; false (and *out untouched) if it would overflow.
bool CheckedMul(int64_t a, int64_t b, int64_t* out);

// `value` for a log line or an error message: control and non-ASCII bytes as \xNN (so no
// caller can start a forged log line), cut to `max_bytes` with a note of the full length.
std::string ForLog(absl::string_view value, size_t max_bytes = 256);

}  // namespace llava
