#include "common/validation.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace llava {
namespace {

bool IdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

}  // namespace

absl::Status CheckId(absl::string_view field, absl::string_view value) {
  if (value.empty() || value.size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be 1-", kMaxIdBytes, " characters, got ", value.size()));
  }
  for (char c : value) {
    if (!IdChar(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, " '", ForLog(value, 64), "' may hold only letters, digits, '.', '_' and '-'"));
    }
  }
  if (value == "." || value == "..") {
    return absl::InvalidArgumentError(absl::StrCat(field, " may not be '", value, "'"));
  }
  return absl::OkStatus();
}

absl::Status CheckIdOrEmpty(absl::string_view field, absl::string_view value) {
  return value.empty() ? absl::OkStatus() : CheckId(field, value);
}

absl::Status CheckText(absl::string_view field, absl::string_view value, size_t max_bytes,
                       bool allow_empty) {
  if (value.empty() && !allow_empty) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is empty"));
  }
  if (value.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is ", value.size(), " bytes, over the limit of ", max_bytes));
  }
  for (char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " holds a control character: '", ForLog(value, 64), "'"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckPositive(absl::string_view field, int64_t value) {
  if (value > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, " must be > 0, got ", value));
}

absl::Status CheckRange(absl::string_view field, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be in [", lo, ", ", hi, "], got ", value));
  }
  return absl::OkStatus();
}

absl::Status CheckRange(absl::string_view field, double value, double lo, double hi) {
  if (!std::isfinite(value) || value < lo || value > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be in [", lo, ", ", hi, "], got ", value));
  }
  return absl::OkStatus();
}

bool CheckedMul(int64_t a, int64_t b, int64_t* out) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return false;
  *out = r;
  return true;
}

std::string ForLog(absl::string_view value, size_t max_bytes) {
  std::string out;
  for (char c : value.substr(0, max_bytes)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) {
      absl::StrAppend(&out, "\\x", absl::Hex(u, absl::kZeroPad2));
    } else {
      out.push_back(c);
    }
  }
  if (value.size() > max_bytes) absl::StrAppend(&out, "... (", value.size(), " bytes)");
  return out;
}

}  // namespace llava
