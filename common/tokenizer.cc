#include "common/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <exception>
#include <nlohmann/json.hpp>
#include <queue>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/json_depth.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace llava {
namespace {

using Json = nlohmann::json;

// Ids index a dense table; this bound keeps a hostile file from making us allocate
// gigabytes (real vocabularies are < 1M).
constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

// This abseil may have its own string_view type, which StrCat takes and std's does not.
absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// ---------------------------------------------------------------------------------------
// UTF-8

// Length of the well-formed UTF-8 sequence starting at s[i], or the negated length of
// its longest well-formed prefix (at least 1) when it is malformed. This "maximal
// subpart" rule is the one Rust's from_utf8_lossy uses to place U+FFFD.
int Utf8Sequence(std::string_view s, size_t i) {
  const auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b = at(i);
  if (b < 0x80) return 1;
  int need;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b >= 0xE0 && b <= 0xEF) {
    need = 2;
    if (b == 0xE0) lo = 0xA0;  // overlong
    if (b == 0xED) hi = 0x9F;  // surrogates
  } else if (b >= 0xF0 && b <= 0xF4) {
    need = 3;
    if (b == 0xF0) lo = 0x90;  // overlong
    if (b == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return -1;
  }
  for (int k = 1; k <= need; ++k) {
    if (i + k >= s.size()) return -k;
    const unsigned char c = at(i + k);
    const bool ok = k == 1 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
    if (!ok) return -k;
  }
  return need + 1;
}

// Byte offset of the first malformed sequence, if any.
std::optional<size_t> FirstInvalidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const int n = Utf8Sequence(s, i);
    if (n < 0) return i;
    i += n;
  }
  return std::nullopt;
}

std::string Utf8Lossy(std::string_view s) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const int n = Utf8Sequence(s, i);
    if (n > 0) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out.append(kReplacement);
      i += -n;
    }
  }
  return out;
}

// Code point of the well-formed sequence at s[i] and its length.
std::pair<uint32_t, int> DecodeUtf8(std::string_view s, size_t i) {
  const int n = Utf8Sequence(s, i);
  LM_CHECK_GT(n, 0) << "DecodeUtf8 on malformed input";
  const auto at = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(s[k])); };
  uint32_t cp = n == 1 ? at(i) : n == 2 ? (at(i) & 0x1F) : n == 3 ? (at(i) & 0x0F) : (at(i) & 0x07);
  for (int k = 1; k < n; ++k) cp = (cp << 6) | (at(i + k) & 0x3F);
  return {cp, n};
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Rust's char::is_whitespace / regex `\s` (the White_Space property), which HF uses
// for the lstrip/rstrip of added tokens.
bool IsWhiteSpace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// Start of the code point that ends at s[end - 1] (s valid UTF-8, end > 0).
size_t PrevCharStart(std::string_view s, size_t end) {
  size_t i = end - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return i;
}

// ---------------------------------------------------------------------------------------
// Byte-level alphabet (GPT-2 bytes_to_unicode): every byte becomes a printable char.

struct ByteLevelAlphabet {
  std::array<std::string, 256> byte_to_char;
  std::array<int16_t, 512> char_to_byte;  // code point -> byte, -1 if not in the alphabet

  ByteLevelAlphabet() {
    char_to_byte.fill(-1);
    const auto printable = [](int b) {
      return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    };
    int next_extra = 0;
    for (int b = 0; b < 256; ++b) {
      const uint32_t cp = printable(b) ? b : 256 + next_extra++;
      AppendUtf8(cp, &byte_to_char[b]);
      char_to_byte[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteLevelAlphabet& Alphabet() {
  static const ByteLevelAlphabet* const kAlphabet = new ByteLevelAlphabet();
  return *kAlphabet;
}

// What the ByteLevel decoder turns one token into: the bytes its chars stand for, or
// the token's own UTF-8 when any char is outside the alphabet (as HF does).
std::string ByteLevelDecodeToken(std::string_view token) {
  const ByteLevelAlphabet& alphabet = Alphabet();
  std::string bytes;
  // The JSON parser has validated the UTF-8 already; stay safe should that ever change.
  if (FirstInvalidUtf8(token)) return std::string(token);
  for (size_t i = 0; i < token.size();) {
    const auto [cp, len] = DecodeUtf8(token, i);
    if (cp >= alphabet.char_to_byte.size() || alphabet.char_to_byte[cp] < 0) {
      return std::string(token);
    }
    bytes.push_back(static_cast<char>(alphabet.char_to_byte[cp]));
    i += len;
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------
// PCRE2

struct CodeDeleter {
  void operator()(pcre2_code* code) const { pcre2_code_free(code); }
};
struct MatchDataDeleter {
  void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
};
using MatchData = std::unique_ptr<pcre2_match_data, MatchDataDeleter>;

std::string Pcre2ErrorMessage(int code) {
  PCRE2_UCHAR buffer[256];
  const int n = pcre2_get_error_message(code, buffer, sizeof(buffer));
  if (n < 0) return absl::StrCat("PCRE2 error ", code);
  return std::string(reinterpret_cast<const char*>(buffer), n);
}

// HF compiles Split patterns with Oniguruma, whose Unicode `\s` is White_Space and `\w`
// is L|M|N|Pc; PCRE2's UCP versions differ (e.g. its `\s` also matches U+180E), so
// these shorthands are rewritten into explicit classes. Negated shorthands inside a
// class cannot be rewritten that way and keep PCRE2's meaning.
std::string TranslateOnigurumaPattern(std::string_view pattern) {
  const auto class_body = [](char c) -> const char* {
    switch (c) {
      case 's':
      case 'S':
        return "\\t\\n\\x{0B}\\f\\r\\x{85}\\p{Z}";
      case 'w':
      case 'W':
        return "\\p{L}\\p{M}\\p{N}\\p{Pc}";
      case 'h':
      case 'H':
        return "0-9a-fA-F";  // Oniguruma's \h is a hex digit
      default:
        return nullptr;
    }
  };
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[++i];
      const char* body = class_body(e);
      const bool negated = e == 'S' || e == 'W' || e == 'H';
      if (body != nullptr && !in_class) {
        absl::StrAppend(&out, negated ? "[^" : "[", body, "]");
      } else if (body != nullptr && !negated) {
        out.append(body);
      } else {
        out.push_back(c);
        out.push_back(e);
      }
      continue;
    }
    out.push_back(c);
    if (!in_class && c == '[') {
      in_class = true;
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out.push_back(pattern[++i]);
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out.push_back(pattern[++i]);
    } else if (in_class && c == '[' && i + 1 < pattern.size() && pattern[i + 1] == ':') {
      const size_t close = pattern.find(":]", i + 2);  // POSIX class such as [:alpha:]
      if (close != std::string_view::npos) {
        out.append(pattern.substr(i + 1, close + 1 - i));
        i = close + 1;
      }
    } else if (in_class && c == ']') {
      in_class = false;
    }
  }
  return out;
}

class Regex {
 public:
  static absl::StatusOr<Regex> Compile(std::string_view pattern, uint32_t options) {
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    // PCRE2 rejects UCP together with LITERAL, where it would mean nothing anyway.
    const uint32_t ucp = (options & PCRE2_LITERAL) ? 0 : PCRE2_UCP;
    pcre2_code* code =
        pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                      PCRE2_UTF | ucp | options, &error_code, &error_offset, nullptr);
    if (code == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(Pcre2ErrorMessage(error_code), " at pattern offset ", error_offset));
    }
    // Without JIT (unsupported platform) matching still works, only slower.
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    Regex regex;
    regex.code_ = std::shared_ptr<pcre2_code>(code, CodeDeleter());
    return regex;
  }

  MatchData NewMatchData() const {
    return MatchData(pcre2_match_data_create_from_pattern(code_.get(), nullptr));
  }

  // First match in subject at or after `start`; nullopt when none. The subject must be
  // valid UTF-8 (checked once by the caller: PCRE2's own check would rescan it per call).
  absl::StatusOr<std::optional<std::pair<size_t, size_t>>> Find(std::string_view subject,
                                                                size_t start, uint32_t options,
                                                                pcre2_match_data* md) const {
    const auto run = [&](uint32_t extra) {
      return pcre2_match(code_.get(), reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(),
                         start, PCRE2_NO_UTF_CHECK | options | extra, md, nullptr);
    };
    int rc = run(0);
    // The JIT stack is small and fixed; the interpreter keeps its backtracking on the heap.
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) rc = run(PCRE2_NO_JIT);
    if (rc == PCRE2_ERROR_NOMATCH) return std::nullopt;
    if (rc < 0) {
      return absl::ResourceExhaustedError(
          absl::StrCat("regex match failed at byte ", start, ": ", Pcre2ErrorMessage(rc)));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(md);
    if (ovector[1] < ovector[0] || ovector[0] < start) {
      return absl::InternalError("regex reported a match that ends before it starts");
    }
    return std::make_pair(static_cast<size_t>(ovector[0]), static_cast<size_t>(ovector[1]));
  }

  // All matches in the order Oniguruma's find_iter (the onig crate) yields them: an
  // empty match right where the previous match ended is skipped by one char.
  absl::Status FindAll(std::string_view subject, pcre2_match_data* md,
                       std::vector<std::pair<size_t, size_t>>* matches) const {
    size_t last_end = 0;
    std::optional<size_t> last_match_end;
    while (last_end <= subject.size()) {
      LM_ASSIGN_OR_RETURN(auto found, Find(subject, last_end, 0, md));
      if (!found) break;
      const auto [start, end] = *found;
      if (start == end && last_match_end == end) {
        last_end += last_end < subject.size() ? std::abs(Utf8Sequence(subject, last_end)) : 1;
        continue;
      }
      last_end = end;
      last_match_end = end;
      matches->emplace_back(start, end);
    }
    return absl::OkStatus();
  }

 private:
  std::shared_ptr<pcre2_code> code_;
};

// ---------------------------------------------------------------------------------------
// Added tokens

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
};

// Leftmost-longest matching of a set of added tokens (HF builds an Aho-Corasick
// automaton with MatchKind::LeftmostLongest; these sets are small, a byte trie suffices).
class AddedTokenTrie {
 public:
  void Insert(std::string_view content, int32_t token_index) {
    int32_t node = 0;
    for (unsigned char b : content) {
      auto& children = nodes_[node].children;
      auto it = std::find_if(children.begin(), children.end(),
                             [b](const auto& child) { return child.first == b; });
      if (it == children.end()) {
        nodes_.push_back(Node());
        // nodes_ may have reallocated: index again rather than through `children`.
        nodes_[node].children.emplace_back(b, static_cast<int32_t>(nodes_.size() - 1));
        node = static_cast<int32_t>(nodes_.size() - 1);
      } else {
        node = it->second;
      }
    }
    nodes_[node].token_index = token_index;
    empty_ = false;
  }

  bool empty() const { return empty_; }

  struct Match {
    size_t start;
    size_t end;
    int32_t token_index;
  };

  // The leftmost match starting at or after `from`, the longest among those.
  std::optional<Match> FindFrom(std::string_view text, size_t from) const {
    for (size_t start = from; start < text.size(); ++start) {
      int32_t node = 0;
      std::optional<Match> best;
      for (size_t i = start; i < text.size(); ++i) {
        node = Child(node, static_cast<unsigned char>(text[i]));
        if (node < 0) break;
        if (nodes_[node].token_index >= 0) best = Match{start, i + 1, nodes_[node].token_index};
      }
      if (best) return best;
    }
    return std::nullopt;
  }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;
    int32_t token_index = -1;
  };

  int32_t Child(int32_t node, unsigned char b) const {
    for (const auto& [byte, child] : nodes_[node].children) {
      if (byte == b) return child;
    }
    return -1;
  }

  std::vector<Node> nodes_ = std::vector<Node>(1);
  bool empty_ = true;
};

// ---------------------------------------------------------------------------------------
// Encoding pieces

// A span of the input: plain text still to be split and tokenized, or an added token.
struct Piece {
  std::string_view text;
  int32_t added_index = -1;  // index into Impl::added when the piece is an added token
};

struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  bool alive;
};

struct MergeEntry {
  uint32_t rank;
  int32_t new_id;
};

struct QueuedMerge {
  uint32_t rank;
  int32_t pos;
  int32_t new_id;
};

// Lowest rank first, then leftmost position: the order of HF's Word::merge_all heap.
struct QueuedMergeAfter {
  bool operator()(const QueuedMerge& a, const QueuedMerge& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  }
};

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

}  // namespace

// ---------------------------------------------------------------------------------------

struct Tokenizer::Impl {
  std::string source;

  // model (BPE)
  std::unordered_map<std::string, int32_t> vocab;
  std::unordered_map<uint64_t, MergeEntry> merges;  // (left id, right id) -> rank, result
  std::array<int32_t, 256> byte_ids{};              // id of each byte's char, -1 if absent
  std::optional<int32_t> unk_id;
  bool fuse_unk = false;
  bool ignore_merges = false;

  // added tokens, in file order
  std::vector<AddedToken> added;
  std::unordered_map<std::string, int32_t> added_by_content;  // -> index into `added`
  AddedTokenTrie raw_trie;         // normalized=false: matched in the raw text
  AddedTokenTrie normalized_trie;  // normalized=true: matched after the (null) normalizer
  std::optional<Regex> word_char;  // Rust regex \w, for single_word tokens

  std::vector<Regex> splits;  // pre-tokenizer Split steps, applied in order
  bool byte_level_decoder = true;

  struct IdEntry {
    std::string token;
    std::string decoded;  // what the decoder turns the token into
    bool present = false;
    bool special = false;
  };
  std::vector<IdEntry> by_id;

  const IdEntry* Entry(int64_t id) const {
    if (id < 0 || id >= static_cast<int64_t>(by_id.size())) return nullptr;
    const IdEntry& entry = by_id[static_cast<size_t>(id)];
    return entry.present ? &entry : nullptr;
  }

  const MergeEntry* FindMerge(int32_t left, int32_t right) const {
    auto it = merges.find(PairKey(left, right));
    return it == merges.end() ? nullptr : &it->second;
  }

  bool IsWordChar(std::string_view text, size_t char_start) const;
  void SplitOnAddedTokens(const AddedTokenTrie& trie, std::vector<Piece>* pieces) const;
  void FindAddedTokens(const AddedTokenTrie& trie, std::string_view sentence,
                       std::vector<Piece>* out) const;
  absl::Status SplitOnRegex(const Regex& regex, std::vector<Piece>* pieces) const;
  void AppendBpe(std::string_view piece, std::string* scratch, std::vector<int64_t>* ids) const;
  void MergeAll(std::vector<Symbol>* symbols) const;
};

const Tokenizer::Impl& Tokenizer::impl() const {
  LM_CHECK(impl_ != nullptr) << "use of a moved-from Tokenizer";
  return *impl_;
}

// ---------------------------------------------------------------------------------------
// Loading

namespace {

absl::Status FieldError(const std::string& source, std::string_view field,
                        std::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", Av(field), ": ", Av(message)));
}

absl::Status Unsupported(const std::string& source, std::string_view field,
                         std::string_view message) {
  return absl::UnimplementedError(absl::StrCat(source, ": ", Av(field), ": ", Av(message),
                                               " (not supported by this tokenizer)"));
}

// Field `key` of `object`, which must be present and satisfy `is_type`.
template <typename Pred>
absl::StatusOr<const Json*> Require(const std::string& source, const Json& object,
                                    const std::string& path, const char* key, Pred is_type,
                                    const char* type_name) {
  const std::string field = path.empty() ? key : absl::StrCat(path, ".", key);
  if (!object.is_object()) return FieldError(source, path, "expected an object");
  auto it = object.find(key);
  if (it == object.end()) return FieldError(source, field, "missing");
  if (!is_type(*it)) return FieldError(source, field, absl::StrCat("expected ", type_name));
  return &*it;
}

const auto kIsObject = [](const Json& j) { return j.is_object(); };
const auto kIsArray = [](const Json& j) { return j.is_array(); };
const auto kIsString = [](const Json& j) { return j.is_string(); };

// Optional boolean field; absent or null gives `fallback`.
absl::StatusOr<bool> OptionalBool(const std::string& source, const Json& object,
                                  const std::string& path, const char* key, bool fallback) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) {
    return FieldError(source, absl::StrCat(path, ".", key), "expected true or false");
  }
  return it->get<bool>();
}

// A token id: an integer in [0, kMaxTokenId].
absl::StatusOr<int32_t> ParseId(const std::string& source, const Json& value,
                                const std::string& field) {
  if (value.is_number_unsigned() && value.get<uint64_t>() <= uint64_t{kMaxTokenId}) {
    return static_cast<int32_t>(value.get<uint64_t>());
  }
  if (value.is_number_integer() && value.get<int64_t>() >= 0 &&
      value.get<int64_t>() <= kMaxTokenId) {
    return static_cast<int32_t>(value.get<int64_t>());
  }
  return FieldError(
      source, field,
      absl::StrCat("expected an integer id in [0, ", kMaxTokenId, "], got ", value.dump()));
}

absl::Status ParseVocab(const Json& model, Tokenizer::Impl* impl) {
  LM_ASSIGN_OR_RETURN(const Json* vocab,
                      Require(impl->source, model, "model", "vocab", kIsObject, "an object"));
  impl->vocab.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    const Json& value = it.value();
    int32_t id;
    if (value.is_number_unsigned() && value.get<uint64_t>() <= uint64_t{kMaxTokenId}) {
      id = static_cast<int32_t>(value.get<uint64_t>());  // the common case, without a field name
    } else {
      LM_ASSIGN_OR_RETURN(
          id, ParseId(impl->source, value, absl::StrCat("model.vocab[\"", it.key(), "\"]")));
    }
    impl->vocab.emplace(it.key(), id);
  }
  for (int b = 0; b < 256; ++b) {
    auto it = impl->vocab.find(Alphabet().byte_to_char[b]);
    impl->byte_ids[b] = it == impl->vocab.end() ? -1 : it->second;
  }
  return absl::OkStatus();
}

// One merge as (left, right): "a b" (exactly one space) or ["a", "b"].
template <typename FieldName>
absl::StatusOr<std::pair<std::string_view, std::string_view>> ParseMergePair(
    const std::string& source, const Json& merge, const FieldName& field) {
  if (merge.is_string()) {
    std::string_view line = merge.get_ref<const std::string&>();
    const size_t space = line.find(' ');
    if (space == std::string_view::npos || line.find(' ', space + 1) != std::string_view::npos) {
      return FieldError(
          source, field(),
          absl::StrCat("expected \"left right\" (one space), got \"", Av(line), "\""));
    }
    return std::make_pair(line.substr(0, space), line.substr(space + 1));
  }
  if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
    return std::make_pair(std::string_view(merge[0].get_ref<const std::string&>()),
                          std::string_view(merge[1].get_ref<const std::string&>()));
  }
  return FieldError(source, field(),
                    "expected a \"left right\" string or a [left, right] pair of strings");
}

absl::Status ParseMerges(const Json& model, Tokenizer::Impl* impl) {
  LM_ASSIGN_OR_RETURN(const Json* merges,
                      Require(impl->source, model, "model", "merges", kIsArray, "an array"));
  impl->merges.reserve(merges->size());
  const auto lookup = [&](std::string_view token) -> std::optional<int32_t> {
    auto it = impl->vocab.find(std::string(token));
    if (it == impl->vocab.end()) return std::nullopt;
    return it->second;
  };
  uint32_t rank = 0;
  std::string merged;
  for (size_t i = 0; i < merges->size(); ++i) {
    const Json& merge = (*merges)[i];
    // Legacy merges.txt headers are skipped without taking a rank, as HF does.
    if (merge.is_string() && merge.get_ref<const std::string&>().rfind("#version", 0) == 0) {
      continue;
    }
    const auto field = [i] { return absl::StrCat("model.merges[", i, "]"); };
    LM_ASSIGN_OR_RETURN(auto pair, ParseMergePair(impl->source, merge, field));
    merged.assign(pair.first);
    merged.append(pair.second);
    const std::optional<int32_t> left = lookup(pair.first);
    const std::optional<int32_t> right = lookup(pair.second);
    const std::optional<int32_t> result = lookup(merged);
    for (const auto& [id, token] :
         {std::make_pair(left, pair.first), std::make_pair(right, pair.second),
          std::make_pair(result, std::string_view(merged))}) {
      if (!id) {
        return FieldError(impl->source, field(),
                          absl::StrCat("token \"", Av(token), "\" is not in model.vocab"));
      }
    }
    // A repeated pair keeps its last rank (HF collects the merges into a hash map).
    impl->merges[PairKey(*left, *right)] = MergeEntry{rank++, *result};
  }
  return absl::OkStatus();
}

absl::Status ParseModel(const Json& root, Tokenizer::Impl* impl) {
  const std::string& source = impl->source;
  LM_ASSIGN_OR_RETURN(const Json* model,
                      Require(source, root, "", "model", kIsObject, "an object"));
  LM_ASSIGN_OR_RETURN(const Json* type,
                      Require(source, *model, "model", "type", kIsString, "a string"));
  if (type->get_ref<const std::string&>() != "BPE") {
    return FieldError(source, "model.type",
                      absl::StrCat("expected \"BPE\", got \"", type->get<std::string>(), "\""));
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model->find(key);
    if (it != model->end() && !it->is_null()) {
      return Unsupported(source, absl::StrCat("model.", key), "must be null");
    }
  }
  LM_ASSIGN_OR_RETURN(bool byte_fallback,
                      OptionalBool(source, *model, "model", "byte_fallback", false));
  if (byte_fallback) return Unsupported(source, "model.byte_fallback", "must be false");
  auto dropout = model->find("dropout");
  if (dropout != model->end() && !dropout->is_null() &&
      !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    return Unsupported(source, "model.dropout", "must be null or 0");
  }
  LM_ASSIGN_OR_RETURN(impl->fuse_unk, OptionalBool(source, *model, "model", "fuse_unk", false));
  LM_ASSIGN_OR_RETURN(impl->ignore_merges,
                      OptionalBool(source, *model, "model", "ignore_merges", false));
  LM_RETURN_IF_ERROR(ParseVocab(*model, impl));
  LM_RETURN_IF_ERROR(ParseMerges(*model, impl));
  auto unk = model->find("unk_token");
  if (unk != model->end() && !unk->is_null()) {
    if (!unk->is_string()) return FieldError(source, "model.unk_token", "expected a string");
    auto it = impl->vocab.find(unk->get<std::string>());
    if (it == impl->vocab.end()) {
      return FieldError(source, "model.unk_token",
                        absl::StrCat("\"", unk->get<std::string>(), "\" is not in model.vocab"));
    }
    impl->unk_id = it->second;
  }
  return absl::OkStatus();
}

absl::StatusOr<AddedToken> ParseAddedToken(const std::string& source, const Json& entry,
                                           const std::string& field) {
  AddedToken token;
  LM_ASSIGN_OR_RETURN(const Json* content,
                      Require(source, entry, field, "content", kIsString, "a string"));
  token.content = content->get<std::string>();
  auto id = entry.find("id");
  if (id == entry.end()) return FieldError(source, field + ".id", "missing");
  LM_ASSIGN_OR_RETURN(token.id, ParseId(source, *id, field + ".id"));
  LM_ASSIGN_OR_RETURN(token.special, OptionalBool(source, entry, field, "special", false));
  LM_ASSIGN_OR_RETURN(token.single_word, OptionalBool(source, entry, field, "single_word", false));
  LM_ASSIGN_OR_RETURN(token.lstrip, OptionalBool(source, entry, field, "lstrip", false));
  LM_ASSIGN_OR_RETURN(token.rstrip, OptionalBool(source, entry, field, "rstrip", false));
  LM_ASSIGN_OR_RETURN(token.normalized, OptionalBool(source, entry, field, "normalized", true));
  return token;
}

// HF ignores the ids written in added_tokens: a token already in the vocabulary keeps
// its id and a new one gets the next free id. Files where the two disagree are rejected
// rather than silently renumbered.
absl::Status ParseAddedTokens(const Json& root, Tokenizer::Impl* impl) {
  auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_array()) return FieldError(impl->source, "added_tokens", "expected an array");
  const int64_t model_size = static_cast<int64_t>(impl->vocab.size());
  int64_t max_added = -1;
  for (size_t i = 0; i < it->size(); ++i) {
    const std::string field = absl::StrCat("added_tokens[", i, "]");
    LM_ASSIGN_OR_RETURN(AddedToken token, ParseAddedToken(impl->source, (*it)[i], field));
    if (token.content.empty()) continue;  // HF skips these
    if (impl->added_by_content.count(token.content)) {
      return FieldError(impl->source, field,
                        absl::StrCat("duplicate content \"", token.content, "\""));
    }
    int64_t expected;
    auto in_vocab = impl->vocab.find(token.content);
    if (in_vocab != impl->vocab.end()) {
      expected = in_vocab->second;
    } else if (max_added < 0) {
      expected = model_size;
    } else {
      expected = (max_added >= model_size || model_size == 0) ? max_added + 1 : model_size;
    }
    if (token.id != expected) {
      return FieldError(impl->source, field + ".id",
                        absl::StrCat("\"", token.content, "\" has id ", token.id,
                                     " but HF tokenizers would give it id ", expected));
    }
    max_added = std::max<int64_t>(max_added, token.id);
    const int32_t index = static_cast<int32_t>(impl->added.size());
    impl->added_by_content.emplace(token.content, index);
    (token.normalized ? impl->normalized_trie : impl->raw_trie).Insert(token.content, index);
    impl->added.push_back(std::move(token));
  }
  const bool any_single_word = std::any_of(impl->added.begin(), impl->added.end(),
                                           [](const AddedToken& t) { return t.single_word; });
  if (any_single_word) {
    // Rust regex's Unicode \w, which HF uses to decide what a word boundary is.
    LM_ASSIGN_OR_RETURN(
        Regex word,
        Regex::Compile("[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]", PCRE2_ANCHORED));
    impl->word_char = std::move(word);
  }
  return absl::OkStatus();
}

absl::Status ParseNormalizer(const Json& root, const std::string& source) {
  auto it = root.find("normalizer");
  if (it == root.end() || it->is_null()) return absl::OkStatus();
  return Unsupported(source, "normalizer", absl::StrCat("must be null, got ", it->dump()));
}

absl::Status ParseSplit(const Json& step, const std::string& field, Tokenizer::Impl* impl) {
  const std::string& source = impl->source;
  LM_ASSIGN_OR_RETURN(const Json* pattern,
                      Require(source, step, field, "pattern", kIsObject, "an object"));
  LM_ASSIGN_OR_RETURN(const Json* behavior,
                      Require(source, step, field, "behavior", kIsString, "a string"));
  if (behavior->get_ref<const std::string&>() != "Isolated") {
    return Unsupported(
        source, field + ".behavior",
        absl::StrCat("only \"Isolated\", got \"", behavior->get<std::string>(), "\""));
  }
  LM_ASSIGN_OR_RETURN(bool invert, OptionalBool(source, step, field, "invert", false));
  if (invert) return Unsupported(source, field + ".invert", "must be false");
  std::string text;
  uint32_t options = 0;
  if (auto regex = pattern->find("Regex"); regex != pattern->end() && regex->is_string()) {
    text = TranslateOnigurumaPattern(regex->get_ref<const std::string&>());
  } else if (auto literal = pattern->find("String");
             literal != pattern->end() && literal->is_string()) {
    text = literal->get<std::string>();
    options = PCRE2_LITERAL;
  } else {
    return FieldError(source, field + ".pattern",
                      "expected {\"Regex\": string} or {\"String\": string}");
  }
  auto compiled = Regex::Compile(text, options);
  if (!compiled.ok()) {
    return FieldError(source, field + ".pattern",
                      absl::StrCat("bad regex: ", compiled.status().message()));
  }
  impl->splits.push_back(std::move(compiled).value());
  return absl::OkStatus();
}

absl::Status ParseByteLevel(const Json& step, const std::string& field, const std::string& source) {
  LM_ASSIGN_OR_RETURN(bool prefix, OptionalBool(source, step, field, "add_prefix_space", true));
  if (prefix) return Unsupported(source, field + ".add_prefix_space", "must be false");
  LM_ASSIGN_OR_RETURN(bool use_regex, OptionalBool(source, step, field, "use_regex", true));
  if (use_regex) return Unsupported(source, field + ".use_regex", "must be false");
  return absl::OkStatus();
}

// Accepts Split steps followed by a final ByteLevel step (alone or in a Sequence).
absl::Status ParsePreTokenizer(const Json& root, Tokenizer::Impl* impl) {
  const std::string& source = impl->source;
  LM_ASSIGN_OR_RETURN(const Json* pre,
                      Require(source, root, "", "pre_tokenizer", kIsObject, "an object"));
  std::vector<std::pair<const Json*, std::string>> steps;
  LM_ASSIGN_OR_RETURN(const Json* type,
                      Require(source, *pre, "pre_tokenizer", "type", kIsString, "a string"));
  if (type->get_ref<const std::string&>() == "Sequence") {
    LM_ASSIGN_OR_RETURN(const Json* list, Require(source, *pre, "pre_tokenizer", "pretokenizers",
                                                  kIsArray, "an array"));
    for (size_t i = 0; i < list->size(); ++i) {
      steps.emplace_back(&(*list)[i], absl::StrCat("pre_tokenizer.pretokenizers[", i, "]"));
    }
  } else {
    steps.emplace_back(pre, "pre_tokenizer");
  }
  for (size_t i = 0; i < steps.size(); ++i) {
    const auto& [step, field] = steps[i];
    LM_ASSIGN_OR_RETURN(const Json* step_type,
                        Require(source, *step, field, "type", kIsString, "a string"));
    const std::string& name = step_type->get_ref<const std::string&>();
    const bool last = i + 1 == steps.size();
    if (name == "Split" && !last) {
      LM_RETURN_IF_ERROR(ParseSplit(*step, field, impl));
    } else if (name == "ByteLevel" && last) {
      LM_RETURN_IF_ERROR(ParseByteLevel(*step, field, source));
    } else {
      return Unsupported(
          source, field + ".type",
          absl::StrCat("expected Split steps then one ByteLevel step, got \"", name, "\""));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseDecoder(const Json& root, Tokenizer::Impl* impl) {
  auto it = root.find("decoder");
  if (it == root.end() || it->is_null()) {
    impl->byte_level_decoder = false;  // HF then joins the tokens with spaces
    return absl::OkStatus();
  }
  LM_ASSIGN_OR_RETURN(const Json* type,
                      Require(impl->source, *it, "decoder", "type", kIsString, "a string"));
  if (type->get_ref<const std::string&>() != "ByteLevel") {
    return Unsupported(impl->source, "decoder.type",
                       absl::StrCat("only ByteLevel, got \"", type->get<std::string>(), "\""));
  }
  impl->byte_level_decoder = true;
  return absl::OkStatus();
}

absl::Status BuildIdTable(Tokenizer::Impl* impl) {
  int64_t size = 0;
  for (const auto& [token, id] : impl->vocab) size = std::max<int64_t>(size, id + 1);
  for (const AddedToken& token : impl->added) size = std::max<int64_t>(size, token.id + 1);
  impl->by_id.resize(static_cast<size_t>(size));
  const auto fill = [&](const std::string& token, int32_t id) {
    Tokenizer::Impl::IdEntry& entry = impl->by_id[id];
    entry.token = token;
    entry.decoded = impl->byte_level_decoder ? ByteLevelDecodeToken(token) : token;
    entry.present = true;
  };
  for (const auto& [token, id] : impl->vocab) {
    if (impl->by_id[id].present) {
      return FieldError(impl->source, "model.vocab",
                        absl::StrCat("id ", id, " is given to both \"", impl->by_id[id].token,
                                     "\" and \"", token, "\""));
    }
    fill(token, id);
  }
  // An added token's id is either new or that of the same string in the vocabulary.
  for (const AddedToken& token : impl->added) {
    fill(token.content, token.id);
    impl->by_id[token.id].special = token.special;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Tokenizer::Impl>> BuildImpl(std::string_view json_text,
                                                           const std::string& source) {
  if (auto at = JsonNestingExceeds(json_text)) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": JSON nested deeper than ", kMaxJsonDepth, " levels at byte ", *at));
  }
  Json root;
  try {
    root = Json::parse(json_text.begin(), json_text.end());
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON: ", e.what()));
  }
  if (!root.is_object()) return FieldError(source, "(root)", "expected a JSON object");
  auto impl = std::make_shared<Tokenizer::Impl>();
  impl->source = source;
  LM_RETURN_IF_ERROR(ParseModel(root, impl.get()));
  LM_RETURN_IF_ERROR(ParseAddedTokens(root, impl.get()));
  LM_RETURN_IF_ERROR(ParseNormalizer(root, source));
  LM_RETURN_IF_ERROR(ParsePreTokenizer(root, impl.get()));
  LM_RETURN_IF_ERROR(ParseDecoder(root, impl.get()));
  LM_RETURN_IF_ERROR(BuildIdTable(impl.get()));
  return impl;
}

}  // namespace

absl::StatusOr<Tokenizer> Tokenizer::Load(const std::string& tokenizer_json_path) {
  LM_ASSIGN_OR_RETURN(std::string text, ReadFile(tokenizer_json_path));
  return FromJson(text, tokenizer_json_path);
}

absl::StatusOr<Tokenizer> Tokenizer::FromJson(std::string_view json_text,
                                              const std::string& source_name) {
  try {
    LM_ASSIGN_OR_RETURN(std::shared_ptr<Impl> impl, BuildImpl(json_text, source_name));
    return Tokenizer(std::move(impl));
  } catch (const std::exception& e) {  // e.g. bad_alloc, or a json accessor we missed
    return absl::InternalError(absl::StrCat(source_name, ": failed to load tokenizer: ", e.what()));
  }
}

// ---------------------------------------------------------------------------------------
// Encoding

bool Tokenizer::Impl::IsWordChar(std::string_view text, size_t char_start) const {
  const int len = Utf8Sequence(text, char_start);
  MatchData md = word_char->NewMatchData();
  if (len <= 0 || md == nullptr) return false;
  auto found = word_char->Find(text.substr(char_start, len), 0, 0, md.get());
  return found.ok() && found->has_value();
}

// HF AddedVocabulary::find_matches on one piece of text.
void Tokenizer::Impl::FindAddedTokens(const AddedTokenTrie& trie, std::string_view sentence,
                                      std::vector<Piece>* out) const {
  size_t start_offset = 0;
  size_t search_from = 0;
  while (auto match = trie.FindFrom(sentence, search_from)) {
    search_from = match->end;
    const AddedToken& token = added[match->token_index];
    size_t start = match->start;
    size_t stop = match->end;
    if (token.single_word) {
      const bool start_space = start == 0 || !IsWordChar(sentence, PrevCharStart(sentence, start));
      const bool stop_space = stop == sentence.size() || !IsWordChar(sentence, stop);
      if (!start_space || !stop_space) continue;
    }
    if (token.lstrip) {
      size_t new_start = start;
      while (new_start > 0) {
        const size_t prev = PrevCharStart(sentence, new_start);
        if (!IsWhiteSpace(DecodeUtf8(sentence, prev).first)) break;
        new_start = prev;
      }
      // Spaces that an earlier match already took (by rstrip) stay with it.
      start = std::max(new_start, start_offset);
    }
    if (token.rstrip) {
      while (stop < sentence.size()) {
        const auto [cp, len] = DecodeUtf8(sentence, stop);
        if (!IsWhiteSpace(cp)) break;
        stop += len;
      }
    }
    if (start_offset < start) {
      out->push_back(Piece{sentence.substr(start_offset, start - start_offset)});
    }
    out->push_back(Piece{sentence.substr(start, stop - start), match->token_index});
    start_offset = stop;
  }
  if (start_offset < sentence.size()) out->push_back(Piece{sentence.substr(start_offset)});
}

void Tokenizer::Impl::SplitOnAddedTokens(const AddedTokenTrie& trie,
                                         std::vector<Piece>* pieces) const {
  if (trie.empty()) return;
  std::vector<Piece> out;
  out.reserve(pieces->size());
  for (const Piece& piece : *pieces) {
    if (piece.added_index >= 0) {
      out.push_back(piece);
    } else {
      FindAddedTokens(trie, piece.text, &out);
    }
  }
  *pieces = std::move(out);
}

// HF Split(behavior=Isolated): matches and the gaps between them become pieces; empty
// pieces are dropped.
absl::Status Tokenizer::Impl::SplitOnRegex(const Regex& regex, std::vector<Piece>* pieces) const {
  MatchData md = regex.NewMatchData();
  if (md == nullptr) return absl::ResourceExhaustedError("cannot allocate PCRE2 match data");
  std::vector<Piece> out;
  out.reserve(pieces->size() * 4);
  std::vector<std::pair<size_t, size_t>> matches;
  for (const Piece& piece : *pieces) {
    if (piece.added_index >= 0) {
      out.push_back(piece);
      continue;
    }
    matches.clear();
    LM_RETURN_IF_ERROR(regex.FindAll(piece.text, md.get(), &matches));
    size_t prev = 0;
    const auto emit = [&](size_t begin, size_t end) {
      if (end > begin) out.push_back(Piece{piece.text.substr(begin, end - begin)});
    };
    for (const auto& [start, end] : matches) {
      emit(prev, start);
      emit(start, end);
      prev = end;
    }
    emit(prev, piece.text.size());
  }
  *pieces = std::move(out);
  return absl::OkStatus();
}

// HF Word::merge_all, step for step (including how stale queue entries are recognised:
// by the id the pair would merge into), so that ties and odd merge tables agree.
void Tokenizer::Impl::MergeAll(std::vector<Symbol>* symbols_ptr) const {
  std::vector<Symbol>& symbols = *symbols_ptr;
  std::priority_queue<QueuedMerge, std::vector<QueuedMerge>, QueuedMergeAfter> queue;
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const MergeEntry* m = FindMerge(symbols[i].id, symbols[i + 1].id)) {
      queue.push(QueuedMerge{m->rank, static_cast<int32_t>(i), m->new_id});
    }
  }
  while (!queue.empty()) {
    const QueuedMerge top = queue.top();
    queue.pop();
    Symbol& current = symbols[top.pos];
    if (!current.alive || current.next < 0) continue;
    const int32_t right_pos = current.next;
    const Symbol right = symbols[right_pos];
    const MergeEntry* m = FindMerge(current.id, right.id);
    if (m == nullptr || m->new_id != top.new_id) continue;  // stale entry

    current.id = top.new_id;
    current.next = right.next;
    symbols[right_pos].alive = false;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (current.prev >= 0) {
      if (const MergeEntry* left = FindMerge(symbols[current.prev].id, current.id)) {
        queue.push(QueuedMerge{left->rank, current.prev, left->new_id});
      }
    }
    if (current.next >= 0) {
      if (const MergeEntry* next = FindMerge(current.id, symbols[current.next].id)) {
        queue.push(QueuedMerge{next->rank, top.pos, next->new_id});
      }
    }
  }
}

// HF BPE::tokenize on one pre-token (its raw bytes; the byte-level mapping is applied
// here).
void Tokenizer::Impl::AppendBpe(std::string_view piece, std::string* scratch,
                                std::vector<int64_t>* ids) const {
  if (ignore_merges) {
    scratch->clear();
    for (unsigned char b : piece) scratch->append(Alphabet().byte_to_char[b]);
    auto it = vocab.find(*scratch);
    if (it != vocab.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  std::vector<Symbol> symbols;
  symbols.reserve(piece.size());
  const auto add = [&symbols](int32_t id) {
    const int32_t pos = static_cast<int32_t>(symbols.size());
    if (pos > 0) symbols.back().next = pos;
    symbols.push_back(Symbol{id, pos - 1, -1, true});
  };
  // Bytes whose char is not in the vocabulary become unk (fused or not), or vanish when
  // there is no unk token, as in HF's merge_word.
  bool pending_unk = false;
  for (unsigned char b : piece) {
    const int32_t id = byte_ids[b];
    if (id >= 0) {
      if (pending_unk) add(*unk_id);
      pending_unk = false;
      add(id);
    } else if (unk_id) {
      if (pending_unk && !fuse_unk) add(*unk_id);
      pending_unk = true;
    }
  }
  if (pending_unk) add(*unk_id);
  MergeAll(&symbols);
  for (const Symbol& s : symbols) {
    if (s.alive) ids->push_back(s.id);
  }
}

absl::StatusOr<std::vector<int64_t>> Tokenizer::Encode(std::string_view text) const {
  const Impl& im = impl();
  if (auto bad = FirstInvalidUtf8(text)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Encode: input is not valid UTF-8 (malformed sequence at byte offset ", *bad, ", byte 0x",
        absl::Hex(static_cast<unsigned char>(text[*bad]), absl::kZeroPad2), ")"));
  }
  std::vector<Piece> pieces;
  if (!text.empty()) pieces.push_back(Piece{text});
  im.SplitOnAddedTokens(im.raw_trie, &pieces);
  im.SplitOnAddedTokens(im.normalized_trie, &pieces);  // the normalizer is null
  for (const Regex& regex : im.splits) LM_RETURN_IF_ERROR(im.SplitOnRegex(regex, &pieces));

  std::vector<int64_t> ids;
  ids.reserve(text.size() / 3 + 1);
  std::string scratch;
  for (const Piece& piece : pieces) {
    if (piece.added_index >= 0) {
      ids.push_back(im.added[piece.added_index].id);
    } else {
      im.AppendBpe(piece.text, &scratch, &ids);
    }
  }
  return ids;
}

// ---------------------------------------------------------------------------------------
// Decoding and lookups

absl::StatusOr<std::string> Tokenizer::Decode(const std::vector<int64_t>& ids) const {
  const Impl& im = impl();
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    const Impl::IdEntry* entry = im.Entry(ids[i]);
    if (entry == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("Decode: ids[", i, "] = ", ids[i],
                                                     " is not a token id of ", im.source,
                                                     " (vocab_size ", im.by_id.size(), ")"));
    }
    if (!im.byte_level_decoder && i > 0) out.push_back(' ');
    out.append(entry->decoded);
  }
  return im.byte_level_decoder ? Utf8Lossy(out) : out;
}

std::optional<int64_t> Tokenizer::TokenToId(std::string_view token) const {
  const Impl& im = impl();
  const std::string key(token);
  if (auto it = im.added_by_content.find(key); it != im.added_by_content.end()) {
    return im.added[it->second].id;
  }
  if (auto it = im.vocab.find(key); it != im.vocab.end()) return it->second;
  return std::nullopt;
}

std::optional<std::string> Tokenizer::IdToToken(int64_t id) const {
  const Impl::IdEntry* entry = impl().Entry(id);
  if (entry == nullptr) return std::nullopt;
  return entry->token;
}

int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl().by_id.size()); }

bool Tokenizer::IsSpecial(int64_t id) const {
  const Impl::IdEntry* entry = impl().Entry(id);
  return entry != nullptr && entry->special;
}

}  // namespace llava
