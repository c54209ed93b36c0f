// A bound on the nesting of JSON read from outside (safetensors headers and indexes,
// config.json, tokenizer.json). nlohmann's parser is iterative, but dump(), copies and
// comparisons recurse, so a file nested a few hundred thousand levels deep overflowed the
// stack while an error message was built; the parsers check the text first.
// Pure function; thread-safe.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace llava {

// Far deeper than any file we read (a tokenizer.json nests 6 levels).
inline constexpr int kMaxJsonDepth = 64;

// The byte offset of the first '[' or '{' (outside strings) that opens nesting level
// max_depth + 1; nullopt when the text never nests deeper. Not a validator: malformed
// JSON is left to the parser.
std::optional<size_t> JsonNestingExceeds(std::string_view text, int max_depth = kMaxJsonDepth);

}  // namespace llava
