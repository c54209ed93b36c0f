// GoogleTest matchers for absl::Status and absl::StatusOr<T> (the Abseil release in Debian
// predates absl/status/status_matchers.h). A test of an error asserts its code and the
// words that name the field, file or request, so that a failure for another reason with
// the same code does not pass:
//   EXPECT_THAT(store.Put(bad), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("step")));
//   ASSERT_THAT(client.Get(id), IsOk());
// On a mismatch the message shows the whole status. Header only, no torch.
#pragma once

#include <gmock/gmock.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace llava::testing {
namespace internal {

inline const absl::Status& StatusOf(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}

}  // namespace internal

MATCHER(IsOk, "is OK") {
  const absl::Status& s = internal::StatusOf(arg);
  if (!s.ok()) *result_listener << "whose status is " << s;
  return s.ok();
}

MATCHER_P(StatusIs, code, "has code " + absl::StatusCodeToString(code)) {
  const absl::Status& s = internal::StatusOf(arg);
  *result_listener << "whose status is " << s;
  return s.code() == code;
}

MATCHER_P2(StatusIs, code, message,
           "has code " + absl::StatusCodeToString(code) + " and a message that " +
               ::testing::DescribeMatcher<std::string>(message)) {
  const absl::Status& s = internal::StatusOf(arg);
  *result_listener << "whose status is " << s;
  return s.code() == code && ::testing::Matches(::testing::MatcherCast<const std::string&>(
                                 message))(std::string(s.message()));
}

}  // namespace llava::testing
