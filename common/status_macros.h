// absl::Status helpers for I/O and RPC boundaries: LM_RETURN_IF_ERROR, LM_ASSIGN_OR_RETURN.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define LM_STATUS_CONCAT_INNER(a, b) a##b
#define LM_STATUS_CONCAT(a, b) LM_STATUS_CONCAT_INNER(a, b)

#define LM_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::absl::Status lm_status_ = (expr);      \
    if (!lm_status_.ok()) return lm_status_; \
  } while (0)

#define LM_ASSIGN_OR_RETURN(lhs, expr) \
  LM_ASSIGN_OR_RETURN_IMPL(LM_STATUS_CONCAT(lm_statusor_, __LINE__), lhs, expr)

#define LM_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()
