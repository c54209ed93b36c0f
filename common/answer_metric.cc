#include "common/answer_metric.h"

#include <array>
#include <climits>
#include <cstddef>

namespace llava {
namespace {

constexpr std::array<std::string_view, 10> kDigitWords = {"zero", "one", "two",   "three", "four",
                                                          "five", "six", "seven", "eight", "nine"};

bool IsAsciiLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }
char ToLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Whether text[pos] is part of the word that ends (or starts) next to it: a letter, or a
// hyphen with a letter beyond it ("twenty-one"). `step` is -1 to look left, +1 right.
bool JoinsWord(std::string_view text, std::ptrdiff_t pos, int step) {
  if (pos < 0 || pos >= static_cast<std::ptrdiff_t>(text.size())) return false;
  if (IsAsciiLetter(text[pos])) return true;
  std::ptrdiff_t beyond = pos + step;
  return text[pos] == '-' && beyond >= 0 && beyond < static_cast<std::ptrdiff_t>(text.size()) &&
         IsAsciiLetter(text[beyond]);
}

// The digit word starting at text[pos] as a whole word, or nullopt.
std::optional<int> DigitWordAt(std::string_view text, size_t pos) {
  if (JoinsWord(text, static_cast<std::ptrdiff_t>(pos) - 1, -1)) return std::nullopt;
  for (size_t d = 0; d < kDigitWords.size(); ++d) {
    std::string_view word = kDigitWords[d];
    if (text.size() - pos < word.size()) continue;
    bool same = true;
    for (size_t i = 0; i < word.size() && same; ++i) same = ToLower(text[pos + i]) == word[i];
    if (same && !JoinsWord(text, static_cast<std::ptrdiff_t>(pos + word.size()), +1)) {
      return static_cast<int>(d);
    }
  }
  return std::nullopt;
}

int ReadNumber(std::string_view text, size_t pos) {
  int64_t value = 0;
  for (; pos < text.size() && IsAsciiDigit(text[pos]); ++pos) {
    value = value * 10 + (text[pos] - '0');
    if (value > INT_MAX) return INT_MAX;
  }
  return static_cast<int>(value);
}

}  // namespace

std::optional<int> ParseAnswerDigit(std::string_view answer) {
  for (size_t pos = 0; pos < answer.size(); ++pos) {
    if (IsAsciiDigit(answer[pos])) return ReadNumber(answer, pos);
    if (IsAsciiLetter(answer[pos])) {
      if (std::optional<int> digit = DigitWordAt(answer, pos)) return digit;
    }
  }
  return std::nullopt;
}

}  // namespace llava
