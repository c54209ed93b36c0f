#include "common/answer_metric.h"

#include <gtest/gtest.h>

#include <climits>
#include <optional>
#include <string>

namespace llava {
namespace {

struct Case {
  std::string answer;
  std::optional<int> want;
};

class ParseAnswerDigitTest : public ::testing::TestWithParam<Case> {};

TEST_P(ParseAnswerDigitTest, FirstNumberWins) {
  EXPECT_EQ(ParseAnswerDigit(GetParam().answer), GetParam().want)
      << "answer: \"" << GetParam().answer << "\"";
}

INSTANTIATE_TEST_SUITE_P(
    HandWritten, ParseAnswerDigitTest,
    ::testing::Values(
        // The trained answer and its digit-word forms.
        Case{"The digit is 7.", 7}, Case{"seven", 7}, Case{"Seven", 7}, Case{"SEVEN", 7},
        Case{"Nine!", 9}, Case{"The answer: 0", 0}, Case{"zero", 0},
        Case{"one two three four five six seven eight nine", 1},
        // First number in the text, digits or words alike.
        Case{"I see a 1 and a 2", 1}, Case{"3 or maybe eight", 3}, Case{"eight or maybe 3", 8},
        // Multi-digit numbers are read whole, so they never equal a single-digit label.
        Case{"The digit is 10.", 10}, Case{"12", 12}, Case{"07", 7},
        Case{"99999999999999999999", INT_MAX},
        // Punctuation around digits is tolerated.
        Case{"(7)", 7}, Case{"#7", 7}, Case{"7th", 7}, Case{"-4", 4}, Case{"7.5", 7},
        Case{"digit=5,", 5}, Case{"\"six\"", 6}, Case{"four.", 4}, Case{"(two)", 2},
        Case{"\xE2\x80\x9C"
             "five"
             "\xE2\x80\x9D",
             5},  // curly quotes (UTF-8)
        // Digit words must be whole words.
        Case{"someone", std::nullopt}, Case{"twenty", std::nullopt}, Case{"seventy", std::nullopt},
        Case{"twenty-one", std::nullopt}, Case{"phone tone", std::nullopt},
        Case{"nineteen", std::nullopt}, Case{"ten or twelve", std::nullopt},
        Case{"someone said two", 2}, Case{"-seven", 7}, Case{"seven-", 7},
        // No number at all: no prediction.
        Case{"no number here", std::nullopt}, Case{"", std::nullopt},
        Case{"the digit is on", std::nullopt}, Case{"nin", std::nullopt}));

TEST(AnswerIsCorrectTest, NeedsAPredictionEqualToTheLabel) {
  EXPECT_TRUE(AnswerIsCorrect(7, 7));
  EXPECT_FALSE(AnswerIsCorrect(10, 1));
  EXPECT_FALSE(AnswerIsCorrect(std::nullopt, 0));
}

}  // namespace
}  // namespace llava
