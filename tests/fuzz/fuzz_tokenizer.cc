// libFuzzer target: tokenizer.json text, and text and ids for a loaded tokenizer.
// An input starting with '{' is a tokenizer.json (parsed, then made to encode and decode
// a few strings); otherwise its first byte picks Encode (even) or Decode (odd) of the rest
// with the seed corpus's llama3_small.json, a cut of the real Llama 3.1 tokenizer.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/tokenizer.h"

namespace {

std::unique_ptr<llava::Tokenizer> g_llama;

void Exercise(const llava::Tokenizer& tok, std::string_view text) {
  auto ids = tok.Encode(text);
  if (!ids.ok()) return;
  auto decoded = tok.Decode(*ids);
  // Byte-level BPE loses nothing: whatever encodes decodes back (the Llama tokenizer
  // has no added token that strips whitespace).
  if (&tok == g_llama.get() && (!decoded.ok() || *decoded != text)) {
    std::fprintf(stderr, "Decode(Encode(text)) != text\n");
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const std::string path = LLAVA_FUZZ_CORPUS_DIR "/fuzz_tokenizer/llama3_small.json";
  auto tok = llava::Tokenizer::Load(path);
  if (!tok.ok()) {
    std::fprintf(stderr, "cannot load %s: %s\n", path.c_str(), tok.status().ToString().c_str());
    std::abort();
  }
  g_llama = std::make_unique<llava::Tokenizer>(*std::move(tok));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  if (!in.empty() && in[0] == '{') {
    auto tok = llava::Tokenizer::FromJson(in, "fuzz/tokenizer.json");
    if (!tok.ok()) return 0;
    for (std::string_view text : {"What digit is this?", " 123 <|eot_id|>\n\n", "a\u180Eb"}) {
      Exercise(*tok, text);
    }
    std::vector<int64_t> ids;
    for (int64_t id = -1; id <= tok->vocab_size() && id < 300; ++id) ids.push_back(id);
    (void)tok->Decode(ids);
    for (int64_t id : ids) {
      if (auto token = tok->IdToToken(id)) (void)tok->TokenToId(*token);
      (void)tok->IsSpecial(id);
    }
    return 0;
  }
  if (in.empty()) return 0;
  const std::string_view rest = in.substr(1);
  if ((in[0] & 1) == 0) {
    Exercise(*g_llama, rest);
  } else {
    // Ids as 3-byte little-endian numbers, past the vocabulary too.
    std::vector<int64_t> ids;
    for (size_t i = 0; i + 3 <= rest.size(); i += 3) {
      const auto b = [&](size_t k) {
        return static_cast<int64_t>(static_cast<uint8_t>(rest[i + k]));
      };
      ids.push_back((b(0) | b(1) << 8 | b(2) << 16) % (g_llama->vocab_size() + 16));
    }
    (void)g_llama->Decode(ids);
  }
  return 0;
}
