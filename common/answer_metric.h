// The published experiment's answer metric: the first number (digits or a digit word) in a
// generated answer is the model's prediction. Thread-safe: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace llava {

// The first number in `answer`, whichever comes first of
//  - a run of ASCII digits, read as a whole number: "The digit is 10." gives 10 (never a
//    correct single-digit label), "07" gives 7, runs past 9 digits saturate at INT_MAX.
//    Neighbours do not matter ("#7", "(7)", "7th", "-7" and "7.5" all give 7), as with
//    the experiment's regex \d+;
//  - a whole word zero..nine in any case ("Seven", "NINE!"). Whole word means no ASCII
//    letter touches it and no hyphen joins it to one, so "someone", "seventy" and
//    "twenty-one" hold no digit word. Other number words ("ten", "twelve") are skipped.
// nullopt when the answer holds no number: a missing prediction, counted wrong.
std::optional<int> ParseAnswerDigit(std::string_view answer);

// True when the parsed answer names `label`.
inline bool AnswerIsCorrect(const std::optional<int>& predicted, int64_t label) {
  return predicted.has_value() && *predicted == label;
}

}  // namespace llava
