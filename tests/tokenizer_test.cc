// Tokenizer tests: the real Llama 3.1 tokenizer.json against ids and texts computed by HF
// `tokenizers` (fixtures), round trips, and small hand-built tokenizer.json files whose
// expected output is worked out by hand (merge order, added-token flags, errors).
#include "common/tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/file_util.h"
#include "common/log.h"
#include "tests/test_util.h"
#include "tests/status_matchers.h"

namespace llava {
namespace {

using ::llava::testing::IsOk;
using ::llava::testing::StatusIs;

using ::testing::HasSubstr;
using Json = nlohmann::json;

// GPT-2's bytes_to_unicode, written out independently of the implementation: the
// byte-level token that stands for one raw byte.
std::string ByteChar(unsigned char byte) {
  const auto printable = [](int b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  };
  int extra = 0;
  for (int b = 0; b < byte; ++b) extra += printable(b) ? 0 : 1;
  const uint32_t cp = printable(byte) ? byte : 256 + extra;
  std::string out;
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return out;
}

std::string ByteLevel(std::string_view raw) {
  std::string out;
  for (unsigned char b : raw) out += ByteChar(b);
  return out;
}

// ---------------------------------------------------------------------------------------
// The real Llama 3.1 tokenizer

class LlamaTokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto start = std::chrono::steady_clock::now();
    auto loaded = Tokenizer::Load(testing::TokenizerPath());
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    LM_LOG(INFO) << "loaded " << testing::TokenizerPath() << " in " << seconds << " s";
    if (loaded.ok()) {
      tokenizer_ = new Tokenizer(std::move(loaded).value());
    } else {
      load_error_ = std::string(loaded.status().ToString());
    }
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    tokenizer_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(tokenizer_, nullptr) << load_error_; }

  static const Tokenizer& tok() { return *tokenizer_; }

  static Json Cases() {
    auto text = ReadFile(testing::FixturesDir() + "/tokenizer_cases.json");
    EXPECT_THAT(text, IsOk());
    return text.ok() ? Json::parse(*text) : Json::object();
  }

  static std::vector<int64_t> EncodeOrDie(std::string_view text) {
    auto ids = tok().Encode(text);
    EXPECT_THAT(ids, IsOk());
    return ids.ok() ? *ids : std::vector<int64_t>{};
  }

  static int64_t ByteId(unsigned char b) { return tok().TokenToId(ByteChar(b)).value_or(-1); }

  static inline Tokenizer* tokenizer_ = nullptr;
  static inline std::string load_error_;
};

TEST_F(LlamaTokenizerTest, EncodeMatchesHuggingFaceFixtures) {
  const Json cases = Cases();
  ASSERT_GE(cases["encode"].size(), 60u);
  for (size_t i = 0; i < cases["encode"].size(); ++i) {
    const Json& c = cases["encode"][i];
    const std::string text = c["text"].get<std::string>();
    SCOPED_TRACE(::testing::Message() << "encode case " << i << ": " << text);
    auto ids = tok().Encode(text);
    ASSERT_THAT(ids, IsOk());
    EXPECT_EQ(*ids, c["ids"].get<std::vector<int64_t>>());
  }
}

TEST_F(LlamaTokenizerTest, DecodeMatchesHuggingFaceFixtures) {
  const Json cases = Cases();
  ASSERT_GE(cases["decode"].size(), 20u);
  for (size_t i = 0; i < cases["decode"].size(); ++i) {
    const Json& c = cases["decode"][i];
    SCOPED_TRACE(::testing::Message() << "decode case " << i);
    auto text = tok().Decode(c["ids"].get<std::vector<int64_t>>());
    ASSERT_THAT(text, IsOk());
    EXPECT_EQ(*text, c["text"].get<std::string>());
  }
}

TEST_F(LlamaTokenizerTest, SpecialTokensAndLookups) {
  EXPECT_EQ(tok().vocab_size(), 128256);
  EXPECT_EQ(tok().TokenToId("<|begin_of_text|>"), 128000);
  EXPECT_EQ(tok().TokenToId("<|start_header_id|>"), 128006);
  EXPECT_EQ(tok().TokenToId("<|end_header_id|>"), 128007);
  EXPECT_EQ(tok().TokenToId("<|eot_id|>"), 128009);
  EXPECT_EQ(tok().TokenToId("<|reserved_special_token_250|>"), 128255);
  EXPECT_EQ(tok().TokenToId("system"), 9125);
  EXPECT_EQ(tok().TokenToId("Ġ"), 220);  // the space byte
  EXPECT_EQ(tok().TokenToId("no such token at all"), std::nullopt);
  EXPECT_EQ(tok().IdToToken(128009), "<|eot_id|>");
  EXPECT_EQ(tok().IdToToken(220), "Ġ");
  EXPECT_EQ(tok().IdToToken(198), "Ċ");  // "\n"
  EXPECT_EQ(tok().IdToToken(-1), std::nullopt);
  EXPECT_EQ(tok().IdToToken(128256), std::nullopt);
  EXPECT_TRUE(tok().IsSpecial(128000));
  EXPECT_TRUE(tok().IsSpecial(128009));
  EXPECT_FALSE(tok().IsSpecial(9125));
  EXPECT_FALSE(tok().IsSpecial(-5));
  for (int b = 0; b < 256; ++b) EXPECT_GE(ByteId(b), 0) << "byte " << b;
}

// The pieces the product's chat prompt is assembled from; ids as in the HF fixtures.
TEST_F(LlamaTokenizerTest, PromptPieces) {
  const std::vector<int64_t> question = {3923, 16099, 374, 420, 30};  // "What digit is this?"
  std::vector<int64_t> expected = {128000, 128006, 9125, 128007, 128009, 128006, 882, 128007, 271};
  expected.insert(expected.end(), question.begin(), question.end());
  expected.insert(expected.end(), {128009, 128006, 78191, 128007, 271});
  const std::string prompt =
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|><|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nWhat digit is this?<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n";
  EXPECT_EQ(EncodeOrDie(prompt), expected);
  EXPECT_EQ(EncodeOrDie("What digit is this?"), question);
  auto decoded = tok().Decode(expected);
  ASSERT_THAT(decoded, IsOk());
  EXPECT_EQ(*decoded, prompt);
  // Every special token written in the text is one id, wherever it stands.
  EXPECT_EQ(EncodeOrDie("7<|eot_id|>"), (std::vector<int64_t>{22, 128009}));
  EXPECT_EQ(EncodeOrDie("<|end_of_text|>"), (std::vector<int64_t>{128001}));
}

TEST_F(LlamaTokenizerTest, RoundTripsVariedUnicode) {
  const std::vector<std::string> texts = {
      "",
      "The quick brown fox jumps over the lazy dog.",
      "DON'T SHOUT, I'M HERE; WE'LL SEE. You'Re it'S",
      "日本語のテキスト、中文文本，한국어 텍스트",
      "emoji: 🙂👍🏽👨‍👩‍👧‍👦 🏳️‍🌈 flags 🇫🇷",
      "combining: e\u0301 a\u0308 n\u0303 \u0915\u094D\u0937 Z\u0351\u036B\u0343",
      "crlf\r\n\r\n\r\nruns\r\r\n\n \r\n  \t\r\n",
      "digits 12345678901234567890123456789 0.000001 1e-9",
      std::string(1000, '7'),
      std::string(500, ' ') + "x" + std::string(300, '\n'),
      "zero width\u200B\u200Cjoiner\u200D nbsp\u00A0 ideographic\u3000space \u180E",
      "mixed <|eot_id|> special<|begin_of_text|>in<|end_header_id|>text <|not_special|>",
      "\xF4\x8F\xBF\xBF max code point, \xEF\xBF\xBD replacement char, \x01\x02 controls",
      std::string("nul\0byte", 8),
      "Ελληνικά, русский, עברית, العربية, हिन्दी, ไทย",
  };
  for (const std::string& text : texts) {
    SCOPED_TRACE(text);
    auto ids = tok().Encode(text);
    ASSERT_THAT(ids, IsOk());
    auto decoded = tok().Decode(*ids);
    ASSERT_THAT(decoded, IsOk());
    EXPECT_EQ(*decoded, text);
  }
  EXPECT_EQ(EncodeOrDie(""), std::vector<int64_t>{});
}

// Llama 3's regex splits digit runs into groups of at most three.
TEST_F(LlamaTokenizerTest, LongDigitRunsSplitInThrees) {
  const std::vector<int64_t> three = EncodeOrDie("123");
  ASSERT_EQ(three.size(), 1u);
  std::vector<int64_t> expected;
  for (int i = 0; i < 10; ++i) expected.push_back(three[0]);
  EXPECT_EQ(EncodeOrDie("123123123123123123123123123123"), expected);
}

TEST_F(LlamaTokenizerTest, InvalidUtf8IsRejectedWithOffset) {
  const std::vector<std::pair<std::string, size_t>> cases = {
      {"abc\xFF"
       "def",
       3},                       // never valid
      {"ok \xE6\x97", 3},        // truncated at the end
      {"\xC0\xAF", 0},           // overlong
      {"ab\xED\xA0\x80", 2},     // surrogate
      {"x\xF4\x90\x80\x80", 1},  // above U+10FFFF
      {"日本\x80", 6},           // stray continuation byte
  };
  for (const auto& [text, offset] : cases) {
    auto ids = tok().Encode(text);
    ASSERT_FALSE(ids.ok()) << "accepted invalid UTF-8 at " << offset;
    EXPECT_THAT(ids, StatusIs(absl::StatusCode::kInvalidArgument,
                              HasSubstr("offset " + std::to_string(offset))));
  }
}

TEST_F(LlamaTokenizerTest, DecodeOfPartialBytesIsLossyLikeRust) {
  const auto decode_bytes = [](const std::vector<unsigned char>& bytes) {
    std::vector<int64_t> ids;
    for (unsigned char b : bytes) ids.push_back(ByteId(b));
    auto text = tok().Decode(ids);
    EXPECT_THAT(text, IsOk());
    return text.ok() ? *text : "<error>";
  };
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(decode_bytes({0xE6}), fffd);
  EXPECT_EQ(decode_bytes({0xE6, 0x97}), fffd);  // one U+FFFD per maximal prefix
  EXPECT_EQ(decode_bytes({0xE6, 0x97, 0xA5}), "日");
  EXPECT_EQ(decode_bytes({0xE6, 'A'}), fffd + "A");
  EXPECT_EQ(decode_bytes({'H', 0xF0, 0x90, 0x80, 'W'}), "H" + fffd + "W");
  EXPECT_EQ(decode_bytes({0xED, 0xA0, 0x80}), fffd + fffd + fffd);
  EXPECT_EQ(decode_bytes({0xC0, 0xAF}), fffd + fffd);
  EXPECT_EQ(decode_bytes({0xE0, 0x80}), fffd + fffd);
  EXPECT_EQ(decode_bytes({0xF4, 0x90, 0x80, 0x80}), fffd + fffd + fffd + fffd);
  EXPECT_EQ(decode_bytes({0xFF, 0xFE}), fffd + fffd);
  // A character split across tokens decodes whole once its bytes are together.
  const std::vector<int64_t> emoji = EncodeOrDie("🙂");
  ASSERT_GE(emoji.size(), 2u);
  auto partial = tok().Decode({emoji[0]});
  ASSERT_THAT(partial, IsOk());
  EXPECT_THAT(*partial, HasSubstr(fffd));
}

TEST_F(LlamaTokenizerTest, DecodeRejectsUnknownIds) {
  for (int64_t bad : {int64_t{-1}, int64_t{128256}, int64_t{1} << 40}) {
    auto text = tok().Decode({9906, bad});
    ASSERT_FALSE(text.ok()) << bad;
    EXPECT_THAT(text, StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("ids[1] = " + std::to_string(bad))));
  }
  auto empty = tok().Decode({});
  ASSERT_THAT(empty, IsOk());
  EXPECT_EQ(*empty, "");
}

TEST_F(LlamaTokenizerTest, ConcurrentEncodeAgreesWithSequential) {
  const Json cases = Cases();
  std::vector<std::string> texts;
  std::vector<std::vector<int64_t>> expected;
  for (const Json& c : cases["encode"]) {
    texts.push_back(c["text"].get<std::string>());
    expected.push_back(c["ids"].get<std::vector<int64_t>>());
  }
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          auto ids = tok().Encode(texts[i]);
          if (!ids.ok() || *ids != expected[i]) ++mismatches[t];
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST_F(LlamaTokenizerTest, LargeInputRoundTrips) {
  std::string text;
  while (text.size() < (1 << 20)) {
    text +=
        "Line with words, numbers 31415926 and 日本語 🙂.\r\n    indented DON'T\t\t<|eot_id|>";
  }
  const auto start = std::chrono::steady_clock::now();
  auto ids = tok().Encode(text);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_THAT(ids, IsOk());
  LM_LOG(INFO) << "encoded " << text.size() << " bytes into " << ids->size() << " ids in "
               << seconds << " s";
  auto decoded = tok().Decode(*ids);
  ASSERT_THAT(decoded, IsOk());
  EXPECT_EQ(*decoded, text);
}

// ---------------------------------------------------------------------------------------
// Hand-built tokenizers

// Vocabulary: the 256 byte chars (id = byte value), then ab=256 bc=257 abc=258 aa=259
// aaaa=260 xyz=261 and the byte-level form of "a\u180Eb"=262; added tokens from 263 on.
Json SmallTokenizerJson() {
  Json vocab = Json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteChar(b)] = b;
  const std::vector<std::string> extra = {"ab",
                                          "bc",
                                          "abc",
                                          "aa",
                                          "aaaa",
                                          "xyz",
                                          ByteLevel("a\u180E"
                                                    "b")};
  for (size_t i = 0; i < extra.size(); ++i) vocab[extra[i]] = 256 + i;
  const auto added = [](int id, const std::string& content, bool special, bool single_word,
                        bool lstrip, bool rstrip, bool normalized) {
    return Json{{"id", id},          {"content", content}, {"single_word", single_word},
                {"lstrip", lstrip},  {"rstrip", rstrip},   {"normalized", normalized},
                {"special", special}};
  };
  return Json{
      {"version", "1.0"},
      {"added_tokens",
       {added(263, "<s>", true, false, false, false, false),
        added(264, "<s>>", true, false, false, false, false),
        added(265, "[L]", true, false, true, true, false),
        added(266, "[W]", false, true, false, false, false),
        added(267, "hello", false, false, false, false, true)}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"Regex", " ?\\p{L}+|\\p{N}|\\s+|[^\\s\\p{L}\\p{N}]+"}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"},
           {"add_prefix_space", false},
           {"trim_offsets", true},
           {"use_regex", false}}}}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", true},
        {"vocab", vocab},
        // Ranks: "b c" before "a b", so "abc" must become [a, bc].
        {"merges", {"b c", "a b", "a a", "aa aa", "ab c"}}}},
  };
}

Tokenizer MakeTokenizer(const Json& json) {
  auto tok = Tokenizer::FromJson(json.dump(), "small.json");
  EXPECT_THAT(tok, IsOk());
  return std::move(tok).value();
}

std::vector<int64_t> Ids(const Tokenizer& tok, std::string_view text) {
  auto ids = tok.Encode(text);
  EXPECT_THAT(ids, IsOk());
  return ids.ok() ? *ids : std::vector<int64_t>{-999};
}

using V = std::vector<int64_t>;

TEST(SmallTokenizerTest, MergesApplyInRankOrder) {
  Json json = SmallTokenizerJson();
  json["model"]["merges"] = {"b c", "a b", "a a", "aa aa"};
  json["model"]["ignore_merges"] = false;
  const Tokenizer tok = MakeTokenizer(json);
  EXPECT_EQ(Ids(tok, "abc"), (V{'a', 257}));  // b+c (rank 0) beats a+b (rank 1)
  EXPECT_EQ(Ids(tok, "ab"), (V{256}));
  EXPECT_EQ(Ids(tok, "aaa"), (V{259, 'a'}));  // equal ranks: leftmost first
  EXPECT_EQ(Ids(tok, "aaaaa"), (V{260, 'a'}));
  EXPECT_EQ(Ids(tok, "1 2"), (V{'1', ' ', '2'}));
  EXPECT_EQ(tok.vocab_size(), 268);
}

TEST(SmallTokenizerTest, IgnoreMergesEmitsWholeVocabularyWords) {
  Json json = SmallTokenizerJson();
  json["model"]["merges"] = {"b c", "a b"};
  EXPECT_EQ(Ids(MakeTokenizer(json), "xyz"), (V{261}));
  EXPECT_EQ(Ids(MakeTokenizer(json), "abc"), (V{258}));  // in the vocab, merges unused
  json["model"]["ignore_merges"] = false;
  EXPECT_EQ(Ids(MakeTokenizer(json), "xyz"), (V{'x', 'y', 'z'}));
  EXPECT_EQ(Ids(MakeTokenizer(json), "abc"), (V{'a', 257}));
}

TEST(SmallTokenizerTest, MergesAsPairsEqualMergesAsStrings) {
  Json strings = SmallTokenizerJson();
  strings["model"]["merges"] = {"b c", "a b", "a a", "aa aa", "#version: 0.2"};
  Json pairs = SmallTokenizerJson();
  pairs["model"]["merges"] = Json::array({Json::array({"b", "c"}), Json::array({"a", "b"}),
                                          Json::array({"a", "a"}), Json::array({"aa", "aa"})});
  pairs["model"]["ignore_merges"] = strings["model"]["ignore_merges"] = false;
  const Tokenizer a = MakeTokenizer(strings);
  const Tokenizer b = MakeTokenizer(pairs);
  for (const char* text : {"abc", "aaaaaaa", "bcab abc", "aab"}) {
    EXPECT_EQ(Ids(a, text), Ids(b, text)) << text;
  }
  EXPECT_EQ(Ids(b, "aaaaaaa"), (V{260, 259, 'a'}));
}

TEST(SmallTokenizerTest, AddedTokensLongestMatchAndFlags) {
  Json json = SmallTokenizerJson();
  json["model"]["merges"] = {"b c", "a b"};
  const Tokenizer tok = MakeTokenizer(json);
  EXPECT_EQ(Ids(tok, "a<s>b"), (V{'a', 263, 'b'}));
  EXPECT_EQ(Ids(tok, "<s>>"), (V{264}));  // longest of <s> and <s>>
  EXPECT_EQ(Ids(tok, "<s<s>"), (V{'<', 's', 263}));
  // lstrip and rstrip swallow the surrounding whitespace (here spaces and a tab).
  EXPECT_EQ(Ids(tok, "x \t[L]  y"), (V{'x', 265, 'y'}));
  // single_word: only matched with no word character on either side (Rust's \w).
  EXPECT_EQ(Ids(tok, "a [W] b"), (V{'a', ' ', 266, ' ', 'b'}));
  EXPECT_EQ(Ids(tok, "[W]"), (V{266}));
  EXPECT_EQ(Ids(tok, "a[W]"), (V{'a', '[', 'W', ']'}));
  EXPECT_EQ(Ids(tok, "[W]7"), (V{'[', 'W', ']', '7'}));
  // normalized tokens are found too (the normalizer is null).
  EXPECT_EQ(Ids(tok, "xhello"), (V{'x', 267}));
  EXPECT_TRUE(tok.IsSpecial(263));
  EXPECT_FALSE(tok.IsSpecial(266));
  auto decoded = tok.Decode({'a', 263, 265, 266, 267, 258});
  ASSERT_THAT(decoded, IsOk());
  EXPECT_EQ(*decoded, "a<s>[L][W]helloabc");
}

// HF runs Split patterns through Oniguruma: its \s does not match U+180E (PCRE2's does),
// and an empty match right after a match is skipped by one character.
TEST(SmallTokenizerTest, RegexFollowsOnigurumaSemantics) {
  Json json = SmallTokenizerJson();
  json["model"]["merges"] = {"b c", "a b"};
  json["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\s+|\\S+";
  EXPECT_EQ(Ids(MakeTokenizer(json),
                "a\u180E"
                "b"),
            (V{262}));
  // NBSP is \s in both engines: its own piece.
  EXPECT_EQ(Ids(MakeTokenizer(json), "ab\u00A0ab"), (V{256, 0xC2, 0xA0, 256}));
  json["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "x*";
  EXPECT_EQ(Ids(MakeTokenizer(json), "ab"), (V{'a', 'b'}));  // split at every empty match
  EXPECT_EQ(Ids(MakeTokenizer(json), "axxb"), (V{'a', 'x', 'x', 'b'}));
  json["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"String", "."}};
  EXPECT_EQ(Ids(MakeTokenizer(json), "ab.ab"), (V{256, '.', 256}));
}

TEST(SmallTokenizerTest, DecodeWithoutDecoderJoinsTokensWithSpaces) {
  Json json = SmallTokenizerJson();
  json["decoder"] = nullptr;
  auto text = MakeTokenizer(json).Decode({256, 263, 'x'});
  ASSERT_THAT(text, IsOk());
  EXPECT_EQ(*text, "ab <s> x");
}

// Each malformed file is written to disk and loaded: the error names the file and field.
TEST(SmallTokenizerTest, MalformedFilesGiveClearErrors) {
  const std::string dir = testing::MakeTempDir("tokenizer");
  ASSERT_FALSE(dir.empty());
  struct Variant {
    std::string name;
    std::function<void(Json&)> edit;
    std::string expected;  // in the message, next to the file path
    absl::StatusCode code = absl::StatusCode::kInvalidArgument;
  };
  const std::vector<Variant> variants = {
      {"no_model", [](Json& j) { j.erase("model"); }, "model: missing"},
      {"no_vocab", [](Json& j) { j["model"].erase("vocab"); }, "model.vocab: missing"},
      {"no_merges", [](Json& j) { j["model"].erase("merges"); }, "model.merges: missing"},
      {"vocab_array", [](Json& j) { j["model"]["vocab"] = Json::array(); },
       "model.vocab: expected an object"},
      {"wordpiece", [](Json& j) { j["model"]["type"] = "WordPiece"; },
       "model.type: expected \"BPE\""},
      {"unknown_merge_token", [](Json& j) { j["model"]["merges"][1] = "a zz"; },
       "model.merges[1]: token \"zz\" is not in model.vocab"},
      {"merge_result_unknown", [](Json& j) { j["model"]["merges"][0] = "q q"; },
       "model.merges[0]: token \"qq\" is not in model.vocab"},
      {"merge_three_parts", [](Json& j) { j["model"]["merges"][2] = "a b c"; },
       "model.merges[2]: expected \"left right\""},
      {"merge_bad_type", [](Json& j) { j["model"]["merges"][0] = 7; }, "model.merges[0]"},
      {"negative_id", [](Json& j) { j["model"]["vocab"]["a"] = -3; },
       "model.vocab[\"a\"]: expected an integer id"},
      {"duplicate_id", [](Json& j) { j["model"]["vocab"]["xyz"] = 256; },
       "model.vocab: id 256 is given to both"},
      {"bad_regex",
       [](Json& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(a"; },
       "pre_tokenizer.pretokenizers[0].pattern: bad regex"},
      {"no_pre_tokenizer", [](Json& j) { j.erase("pre_tokenizer"); }, "pre_tokenizer: missing"},
      {"added_id_mismatch", [](Json& j) { j["added_tokens"][0]["id"] = 999; },
       "added_tokens[0].id: \"<s>\" has id 999"},
      {"added_no_content", [](Json& j) { j["added_tokens"][1].erase("content"); },
       "added_tokens[1].content: missing"},
      {"normalizer",
       [](Json& j) {
         j["normalizer"] = {{"type", "NFC"}};
       },
       "normalizer", absl::StatusCode::kUnimplemented},
      {"merged_behavior",
       [](Json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "MergedWithNext"; },
       "pre_tokenizer.pretokenizers[0].behavior", absl::StatusCode::kUnimplemented},
      {"root_array",
       [](Json& j) {
         j = Json::array({1, 2});
       },
       "(root): expected a JSON object"},
  };
  for (const Variant& v : variants) {
    SCOPED_TRACE(v.name);
    Json json = SmallTokenizerJson();
    v.edit(json);
    const std::string path = dir + "/" + v.name + ".json";
    ASSERT_THAT(WriteFileAtomic(path, json.dump()), IsOk());
    auto tok = Tokenizer::Load(path);
    ASSERT_FALSE(tok.ok());
    EXPECT_THAT(tok.status(), StatusIs(v.code, HasSubstr(path + ": " + v.expected)));
  }

  const std::string not_json = dir + "/not_json.json";
  ASSERT_THAT(WriteFileAtomic(not_json, "{\"model\": [1, 2,"), IsOk());
  auto broken = Tokenizer::Load(not_json);
  ASSERT_FALSE(broken.ok());
  EXPECT_THAT(broken, StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr(not_json + ": not valid JSON")));

  auto missing = Tokenizer::Load(dir + "/does_not_exist.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("does_not_exist.json"));
}

// Found by fuzz_tokenizer: a normalizer (which must be null) nested a million levels deep
// overflowed the stack while its error message was built. Now refused by depth.
TEST(SmallTokenizerTest, DeeplyNestedJsonIsRefused) {
  std::string text = SmallTokenizerJson().dump();
  const std::string null_normalizer = "\"normalizer\":null";
  const size_t at = text.find(null_normalizer);
  ASSERT_NE(at, std::string::npos);
  text.replace(at, null_normalizer.size(),
               "\"normalizer\":" + std::string(1000000, '[') + std::string(1000000, ']'));
  auto tok = Tokenizer::FromJson(text, "deep.json");
  ASSERT_FALSE(tok.ok());
  EXPECT_THAT(tok, StatusIs(absl::StatusCode::kInvalidArgument,
                            HasSubstr("deep.json: JSON nested deeper than 64 levels")));
}

TEST(SmallTokenizerTest, MovedTokenizerKeepsWorking) {
  Tokenizer a = MakeTokenizer(SmallTokenizerJson());
  Tokenizer b = std::move(a);
  EXPECT_EQ(Ids(b, "xyz"), (V{261}));
  Tokenizer c = b;  // copies share the immutable state
  EXPECT_EQ(Ids(c, "xyz"), (V{261}));
}

}  // namespace
}  // namespace llava
