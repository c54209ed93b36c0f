// The Llama 3 family tokenizer: byte-level BPE read from a Hugging Face tokenizer.json,
// computing what HF `tokenizers` computes for encode (add_special_tokens=false) and decode.
// Thread-safe: immutable once loaded; const methods may run concurrently (no shared caches).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace llava {

class Tokenizer {
 public:
  // Errors name the file and the JSON field at fault (e.g. "model.merges[12]").
  static absl::StatusOr<Tokenizer> Load(const std::string& tokenizer_json_path);
  static absl::StatusOr<Tokenizer> FromJson(std::string_view json_text,
                                            const std::string& source_name);

  // HF encode(text, add_special_tokens=false): added/special tokens written in the text
  // are matched. Invalid UTF-8 gives InvalidArgument naming the byte offset.
  absl::StatusOr<std::vector<int64_t>> Encode(std::string_view text) const;
  // HF decode(ids, skip_special_tokens=false); bytes that do not form UTF-8 become
  // U+FFFD as Rust's String::from_utf8_lossy does. Unknown ids give InvalidArgument.
  absl::StatusOr<std::string> Decode(const std::vector<int64_t>& ids) const;

  // Vocabulary or added token.
  std::optional<int64_t> TokenToId(std::string_view token) const;
  // The raw token string (byte-level alphabet for model tokens, e.g. "Ġthe").
  std::optional<std::string> IdToToken(int64_t id) const;
  // Max id + 1 over the vocabulary and the added tokens.
  int64_t vocab_size() const;
  // True for added tokens marked "special" (e.g. <|eot_id|>).
  bool IsSpecial(int64_t id) const;

  // Copies share the immutable state. A moved-from Tokenizer may only be assigned or
  // destroyed.
  Tokenizer(const Tokenizer&) = default;
  Tokenizer& operator=(const Tokenizer&) = default;
  Tokenizer(Tokenizer&&) noexcept = default;
  Tokenizer& operator=(Tokenizer&&) noexcept = default;

  struct Impl;  // Defined in tokenizer.cc; keeps PCRE2 and the tables out of this header.

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  const Impl& impl() const;

  std::shared_ptr<const Impl> impl_;
};

}  // namespace llava
