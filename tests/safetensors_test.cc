#include "common/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "tests/status_matchers.h"
#include "tests/test_util.h"

namespace llava {
namespace {

using ::llava::testing::StatusIs;
using ::testing::HasSubstr;

std::string Fixture(const std::string& rel) { return testing::FixturesDir() + "/" + rel; }

// A raw safetensors file: 8-byte little-endian header length, header, data.
std::string RawFile(const std::string& header, const std::string& data = "") {
  uint64_t n = header.size();
  std::string out(reinterpret_cast<const char*>(&n), 8);
  return out + header + data;
}

std::string Bytes(const void* p, size_t n) { return std::string(static_cast<const char*>(p), n); }

// Raw bytes of a tensor, for bit-exact comparison (0.0 == -0.0 and NaN != NaN in at::equal).
std::string TensorBytes(const at::Tensor& t) {
  at::Tensor c = t.cpu().contiguous();
  return Bytes(c.data_ptr(), c.numel() * c.element_size());
}

std::vector<int64_t> Shape(const at::Tensor& t) { return t.sizes().vec(); }

// ---------------------------------------------------------------------------- fixtures
// The expected values come from the fixture set under test, read independently of the
// reader under test (the header's JSON by nlohmann, values at the offsets it gives, the
// model's config.json), so the tests hold for any set of the README's layout.

// A safetensors file's raw parts, split by hand.
struct RawSafetensors {
  std::string bytes;
  uint64_t header_len = 0;
  nlohmann::json header;
  // The raw bytes of tensor `name`, at the offsets the header gives.
  std::string Data(const std::string& name) const {
    const auto& off = header.at(name).at("data_offsets");
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    return bytes.substr(8 + header_len + begin, end - begin);
  }
  size_t NumTensors() const { return header.size() - (header.contains("__metadata__") ? 1 : 0); }
};

RawSafetensors ReadRaw(const std::string& path) {
  RawSafetensors r;
  auto raw = ReadFile(path);
  EXPECT_TRUE(raw.ok()) << raw.status();
  if (!raw.ok() || raw->size() < 8) return r;
  r.bytes = std::move(*raw);
  std::memcpy(&r.header_len, r.bytes.data(), 8);
  r.header = nlohmann::json::parse(r.bytes.substr(8, r.header_len));
  return r;
}

nlohmann::json ModelConfig(const std::string& dir) {
  auto text = ReadFile(Fixture(dir + "/config.json"));
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? nlohmann::json::parse(*text) : nlohmann::json::object();
}

template <typename T>
T FirstValue(const std::string& data) {
  T v{};
  EXPECT_GE(data.size(), sizeof(T));
  if (data.size() >= sizeof(T)) std::memcpy(&v, data.data(), sizeof(T));
  return v;
}

TEST(SafetensorsTest, ReadsHuggingFaceFileMatchingItsRawBytes) {
  const std::string path = Fixture("tiny-llama3/model.safetensors");
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  const RawSafetensors raw = ReadRaw(path);
  const nlohmann::json config = ModelConfig("tiny-llama3");
  const std::vector<int64_t> embed_shape = {config.at("vocab_size").get<int64_t>(),
                                            config.at("hidden_size").get<int64_t>()};
  const nlohmann::json& embed = raw.header.at("model.embed_tokens.weight");
  ASSERT_EQ(embed.at("dtype"), "F32");
  EXPECT_EQ((*file)->tensors().size(), raw.NumTensors());
  std::map<std::string, std::string> metadata;
  const nlohmann::json raw_metadata = raw.header.value("__metadata__", nlohmann::json::object());
  for (const auto& [k, v] : raw_metadata.items()) {
    metadata[k] = v.get<std::string>();
  }
  EXPECT_EQ((*file)->metadata(), metadata);
  const StTensorInfo* info = (*file)->Find("model.embed_tokens.weight");
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->dtype, StDtype::kF32);
  EXPECT_EQ(info->shape, embed_shape);
  EXPECT_EQ(embed.at("shape").get<std::vector<int64_t>>(), embed_shape);
  EXPECT_EQ(info->begin, embed.at("data_offsets")[0].get<uint64_t>());
  EXPECT_EQ(info->end, embed.at("data_offsets")[1].get<uint64_t>());
  EXPECT_EQ((*file)->data_start(), 8u + raw.header_len);

  auto t = (*file)->Load("model.embed_tokens.weight");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->scalar_type(), at::kFloat);
  EXPECT_EQ(Shape(*t), embed_shape);
  EXPECT_EQ(TensorBytes(*t), raw.Data("model.embed_tokens.weight"));
  EXPECT_GT(t->abs().sum().item<double>(), 0.0);

  std::vector<std::string> names;
  for (const StTensorInfo& i : (*file)->tensors()) names.push_back(i.name);
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
}

TEST(SafetensorsTest, ShardedCheckpointEqualsSingleFile) {
  auto single = Checkpoint::Open(Fixture("tiny-llama3"));
  ASSERT_TRUE(single.ok()) << single.status();
  auto sharded = Checkpoint::Open(Fixture("tiny-llama3-sharded"));
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  auto index_text = ReadFile(Fixture("tiny-llama3-sharded/model.safetensors.index.json"));
  ASSERT_TRUE(index_text.ok()) << index_text.status();
  const nlohmann::json index = nlohmann::json::parse(*index_text);
  std::set<std::string> shard_files;
  for (const auto& [name, file] : index.at("weight_map").items())
    shard_files.insert(file.get<std::string>());
  EXPECT_EQ((*single)->files().size(), 1u);
  EXPECT_EQ((*sharded)->files().size(), shard_files.size());
  EXPECT_GT(shard_files.size(), 1u);
  EXPECT_EQ((*sharded)->metadata().at("format"), "pt");
  ASSERT_EQ((*single)->names(), (*sharded)->names());
  ASSERT_EQ((*single)->names().size(),
            ReadRaw(Fixture("tiny-llama3/model.safetensors")).NumTensors());
  ASSERT_EQ((*single)->names().size(), index.at("weight_map").size());
  for (const std::string& name : (*single)->names()) {
    SCOPED_TRACE(name);
    auto a = (*single)->Load(name);
    auto b = (*sharded)->Load(name);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(a->scalar_type(), b->scalar_type());
    EXPECT_EQ(Shape(*a), Shape(*b));
    EXPECT_EQ(TensorBytes(*a), TensorBytes(*b));
    EXPECT_EQ(*(*sharded)->Shape(name), Shape(*a));
  }
  // Addressing by the index file or by the single file works as well.
  auto by_index = Checkpoint::Open(Fixture("tiny-llama3-sharded/model.safetensors.index.json"));
  ASSERT_TRUE(by_index.ok()) << by_index.status();
  EXPECT_TRUE((*by_index)->Contains("model.norm.weight"));
  auto by_file = Checkpoint::Open(Fixture("tiny-llama3/model.safetensors"));
  ASSERT_TRUE(by_file.ok()) << by_file.status();
  EXPECT_TRUE((*by_file)->Contains("lm_head.weight"));
  EXPECT_FALSE((*by_file)->Contains("lm_head"));
}

TEST(SafetensorsTest, ReadsExpectedTensorsOfBothDtypes) {
  auto ckpt = Checkpoint::Open(Fixture("tiny-llama3/expected.safetensors"));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  const RawSafetensors raw = ReadRaw(Fixture("tiny-llama3/expected.safetensors"));
  ASSERT_EQ(raw.header.at("input_ids").at("dtype"), "I64");
  ASSERT_EQ(raw.header.at("loss").at("dtype"), "F32");
  auto ids = (*ckpt)->LoadWithShape("input_ids", {2, 12});
  auto labels = (*ckpt)->LoadWithShape("labels", {2, 12});
  auto loss = (*ckpt)->LoadWithShape("loss", {1});
  auto prompt = (*ckpt)->Load("gen_prompt");
  auto output = (*ckpt)->Load("gen_output");
  ASSERT_TRUE(ids.ok() && labels.ok() && loss.ok() && prompt.ok() && output.ok());
  EXPECT_EQ(ids->scalar_type(), at::kLong);
  EXPECT_EQ(loss->scalar_type(), at::kFloat);
  EXPECT_EQ(ids->index({0, 0}).item<int64_t>(), FirstValue<int64_t>(raw.Data("input_ids")));
  EXPECT_EQ(loss->item<float>(), FirstValue<float>(raw.Data("loss")));
  // README: labels are -100 except the last 4 positions, where they equal input_ids.
  using at::indexing::Slice;
  EXPECT_TRUE(
      at::equal(labels->index({Slice(), Slice(8, 12)}), ids->index({Slice(), Slice(8, 12)})));
  EXPECT_TRUE((labels->index({Slice(), Slice(0, 8)}) == -100).all().item<bool>());
  // generate() output starts with the prompt.
  EXPECT_TRUE(at::equal(output->index({Slice(), Slice(0, 7)}), *prompt));
  auto logits = (*ckpt)->Shape("logits");
  ASSERT_TRUE(logits.ok());
  EXPECT_EQ(*logits, (std::vector<int64_t>{
                         2, 12, ModelConfig("tiny-llama3").at("vocab_size").get<int64_t>()}));
}

// Python's save_file (Rust) wrote these fixtures: serializing what we read must give
// the very same bytes (dtype-then-name order, header padding, metadata).
TEST(SafetensorsTest, ReserializingFixturesReproducesThemByteForByte) {
  auto index_text = ReadFile(Fixture("tiny-llama3-sharded/model.safetensors.index.json"));
  ASSERT_TRUE(index_text.ok()) << index_text.status();
  const std::string a_shard =
      "tiny-llama3-sharded/" +
      nlohmann::json::parse(*index_text).at("weight_map").begin()->get<std::string>();
  for (const std::string& rel : {std::string("tiny-llama3/model.safetensors"),
                                 std::string("tiny-llama3/expected.safetensors"), a_shard,
                                 std::string("tiny-llama3-tied/model.safetensors")}) {
    SCOPED_TRACE(rel);
    auto file = SafetensorsFile::Open(Fixture(rel));
    ASSERT_TRUE(file.ok()) << file.status();
    auto all = (*file)->LoadAll();
    ASSERT_TRUE(all.ok()) << all.status();
    auto bytes = SerializeSafetensors(*all, (*file)->metadata());
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    auto raw = ReadFile(Fixture(rel));
    ASSERT_TRUE(raw.ok());
    EXPECT_TRUE(*bytes == *raw) << "sizes " << bytes->size() << " vs " << raw->size();
  }
}

// ---------------------------------------------------------------------------- writing

std::vector<NamedTensor> RoundTripTensors() {
  at::manual_seed(7);
  at::Tensor f32 = at::randn({3, 5});
  return {
      {"f32_transposed", f32.t()},  // non-contiguous
      {"bf16", at::randn({4, 3}).to(at::kBFloat16)},
      {"f16", at::randn({7}).to(at::kHalf)},  // odd byte count before aligned data
      {"i64", at::arange(-5, 7, at::kLong).reshape({3, 4})},
      {"scalar", at::scalar_tensor(2.5, at::kFloat)},  // 0-d
      {"empty", at::empty({0, 3}, at::kFloat)},
      {"f64", at::randn({2}, at::kDouble)},
      {"i32", at::arange(3, at::kInt)},
      {"i16", at::arange(5, at::kShort)},
      {"i8", at::arange(-3, 2, at::kChar)},
      {"u8", at::arange(250, 255, at::kByte)},
      {"bool", at::arange(4, at::kLong) % 2 == 0},
      {"strided_slice", at::arange(20, at::kFloat).reshape({4, 5}).narrow(1, 1, 3)},
      {"neg_zero_nan", at::tensor({-0.0f, std::nanf(""), 1.0f})},
  };
}

TEST(SafetensorsTest, RoundTripIsBitExactWithMetadataAndAlignment) {
  const std::string dir = testing::MakeTempDir("st");
  const std::string path = dir + "/round.safetensors";
  const std::vector<NamedTensor> in = RoundTripTensors();
  const std::map<std::string, std::string> meta = {
      {"step", "12"}, {"format", "pt"}, {"q\"uote", "é\n"}};
  ASSERT_TRUE(WriteSafetensors(path, in, meta).ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata(), meta);
  ASSERT_EQ((*file)->tensors().size(), in.size());
  for (const NamedTensor& nt : in) {
    SCOPED_TRACE(nt.name);
    auto got = (*file)->Load(nt.name);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->scalar_type(), nt.tensor.scalar_type());
    EXPECT_EQ(Shape(*got), Shape(nt.tensor));
    EXPECT_EQ(TensorBytes(*got), TensorBytes(nt.tensor));
    const StTensorInfo* info = (*file)->Find(nt.name);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->begin % StDtypeSize(info->dtype), 0u) << "misaligned";
  }
  // Spec layout: padded header, data offsets contiguous from 0 to the end of the file.
  auto raw = ReadFile(path);
  ASSERT_TRUE(raw.ok());
  uint64_t n = 0;
  std::memcpy(&n, raw->data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ((*file)->data_start(), 8 + n);
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const StTensorInfo& t : (*file)->tensors()) ranges.push_back({t.begin, t.end});
  std::sort(ranges.begin(), ranges.end());
  uint64_t at = 0;
  for (auto [b, e] : ranges) {
    EXPECT_EQ(b, at);
    at = e;
  }
  EXPECT_EQ(8 + n + at, raw->size());
  // Header order: __metadata__ first, then larger dtypes first, names ascending.
  std::string header = raw->substr(8, n);
  EXPECT_EQ(header.find("{\"__metadata__\":{"), 0u);
  EXPECT_LT(header.find("\"i64\""), header.find("\"f64\""));  // Rust ranks I64 above F64
  EXPECT_LT(header.find("\"f32_transposed\""), header.find("\"bf16\""));
  EXPECT_LT(header.find("\"bf16\""), header.find("\"f16\""));
  EXPECT_LT(header.find("\"u8\""), header.find("\"bool\""));
  EXPECT_EQ(header.find_last_not_of(' ') + 1, header.find_last_of('}') + 1);

  // In-memory form: the same bytes, and parseable back.
  auto bytes = SerializeSafetensors(in, meta);
  ASSERT_TRUE(bytes.ok());
  EXPECT_TRUE(*bytes == *raw);
  auto parsed = SafetensorsFile::FromBytes(*bytes, "rpc:projector");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  auto bf16 = (*parsed)->Load("bf16");
  ASSERT_TRUE(bf16.ok());
  EXPECT_EQ(TensorBytes(*bf16), TensorBytes(in[1].tensor));
}

// What the coordinator does to checkpoints (common/safetensors_format.h): tensors chosen
// by name and copied by their byte ranges, never decoded, give the file that writing those
// tensors anew gives, whatever their dtypes and order in the data section.
TEST(SafetensorsTest, SelectingByByteRangesEqualsWritingTheSubset) {
  const std::vector<NamedTensor> all = RoundTripTensors();
  const std::map<std::string, std::string> meta = {{"format", "pt"}};
  auto bytes = SerializeSafetensors(all, meta);
  ASSERT_TRUE(bytes.ok());
  auto header =
      ParseSafetensorsHeader(reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size(), "mem");
  ASSERT_TRUE(header.ok()) << header.status();
  const std::set<std::string> keep = {"bf16", "f16", "i64", "u8", "empty", "strided_slice"};
  auto selected = SelectSafetensors(
      *bytes, *header, [&](const StTensorInfo& info) { return keep.count(info.name) > 0; });
  ASSERT_TRUE(selected.ok()) << selected.status();
  std::vector<NamedTensor> subset;
  for (const NamedTensor& nt : all) {
    if (keep.count(nt.name) > 0) subset.push_back(nt);
  }
  auto written = SerializeSafetensors(subset, meta);
  ASSERT_TRUE(written.ok());
  EXPECT_TRUE(*selected == *written);
  // Nothing kept: a file of metadata alone, as writing no tensors gives.
  auto none = SelectSafetensors(*bytes, *header, [](const StTensorInfo&) { return false; });
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(*none == *SerializeSafetensors({}, meta));
}

TEST(SafetensorsTest, RawSerializationRefusesBytesThatDoNotFitTheShape) {
  const std::string six(6, '\0');
  auto bad = SerializeSafetensorsBytes({{"w", StDtype::kF32, {2}, six}}, {});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("cannot serialize tensor 'w': 6 bytes for F32 [2]"));
  auto repeated =
      SerializeSafetensorsBytes({{"w", StDtype::kU8, {6}, six}, {"w", StDtype::kU8, {6}, six}}, {});
  ASSERT_FALSE(repeated.ok());
  EXPECT_THAT(std::string(repeated.status().message()), HasSubstr("'w': duplicate name"));
}

TEST(SafetensorsTest, LoadedTensorOutlivesTheFile) {
  auto bytes = SerializeSafetensors({{"w", at::arange(6, at::kFloat)}});
  ASSERT_TRUE(bytes.ok());
  at::Tensor t;
  {
    auto file = SafetensorsFile::FromBytes(*bytes, "mem");
    ASSERT_TRUE(file.ok());
    t = *(*file)->Load("w");
  }
  EXPECT_TRUE(at::equal(t, at::arange(6, at::kFloat)));
  t.add_(1);  // writable: owns its memory
  EXPECT_EQ(t[5].item<float>(), 6.0f);
}

// Byte vectors from the Rust implementation's own unit tests (safetensors/src/tensor.rs).
TEST(SafetensorsTest, MatchesRustReferenceBytes) {
  std::vector<float> v = {0, 1, 2, 3, 4, 5};
  at::Tensor attn = at::from_blob(v.data(), {1, 1, 2, 3}, at::kFloat).clone();
  auto out = SerializeSafetensors({{"attn0", attn}});
  ASSERT_TRUE(out.ok());
  const std::vector<uint8_t> rust_aligned = {
      72,  0,   0,   0,   0,   0,   0,   0,   123, 34, 97, 116, 116, 110, 48,  34,  58,  123,
      34,  100, 116, 121, 112, 101, 34,  58,  34,  70, 51, 50,  34,  44,  34,  115, 104, 97,
      112, 101, 34,  58,  91,  49,  44,  49,  44,  50, 44, 51,  93,  44,  34,  100, 97,  116,
      97,  95,  111, 102, 102, 115, 101, 116, 115, 34, 58, 91,  48,  44,  50,  52,  93,  125,
      125, 32,  32,  32,  32,  32,  32,  32,  0,   0,  0,  0,   0,   0,   128, 63,  0,   0,
      0,   64,  0,   0,   64,  64,  0,   0,   128, 64, 0,  0,   160, 64};
  EXPECT_EQ(*out, std::string(rust_aligned.begin(), rust_aligned.end()));

  auto empty = SerializeSafetensors({});
  ASSERT_TRUE(empty.ok());
  const std::vector<uint8_t> rust_empty = {8,   0,   0,  0,  0,  0,  0,  0,
                                           123, 125, 32, 32, 32, 32, 32, 32};
  EXPECT_EQ(*empty, std::string(rust_empty.begin(), rust_empty.end()));

  auto with_meta = SerializeSafetensors({}, {{"framework", "pt"}});
  ASSERT_TRUE(with_meta.ok());
  const std::vector<uint8_t> rust_meta = {
      40,  0,   0,   0,  0,  0,  0,   0,   123, 34,  95,  95,  109, 101, 116, 97,
      100, 97,  116, 97, 95, 95, 34,  58,  123, 34,  102, 114, 97,  109, 101, 119,
      111, 114, 107, 34, 58, 34, 112, 116, 34,  125, 125, 32,  32,  32,  32,  32};
  EXPECT_EQ(*with_meta, std::string(rust_meta.begin(), rust_meta.end()));
}

// A mixed-dtype file, checked byte by byte against the spec by hand.
TEST(SafetensorsTest, TinyMixedFileHasExactSpecBytes) {
  at::Tensor b = at::tensor({1.0f}).to(at::kBFloat16);  // bf16 1.0 = 0x3F80
  at::Tensor a = at::scalar_tensor(5, at::kLong);       // 0-d
  auto out = SerializeSafetensors({{"b", b}, {"a", a}}, {{"k", "v"}});
  ASSERT_TRUE(out.ok());
  const std::string json =
      R"({"__metadata__":{"k":"v"},"a":{"dtype":"I64","shape":[],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"BF16","shape":[1],"data_offsets":[8,10]}})";
  ASSERT_EQ(json.size(), 133u);  // padded with 3 spaces to 136 = 0x88
  std::string expected = std::string("\x88\0\0\0\0\0\0\0", 8) + json + "   " +
                         std::string("\x05\0\0\0\0\0\0\0", 8) + std::string("\x80\x3f", 2);
  EXPECT_EQ(*out, expected);
}

TEST(SafetensorsTest, SerializeRejectsBadInputs) {
  at::Tensor t = at::zeros({2});
  struct Case {
    std::vector<NamedTensor> tensors;
    std::string needle;
  };
  std::vector<Case> cases = {
      {{{"", t}}, "empty name"},
      {{{"__metadata__", t}}, "reserved"},
      {{{"x", t}, {"x", t}}, "duplicate"},
      {{{"undef", at::Tensor()}}, "undefined"},
      {{{"cplx", at::zeros({2}, at::kComplexFloat)}}, "cannot be stored"},
      {{{"sparse", at::zeros({2, 2}).to_sparse()}}, "dense"},
  };
  for (const Case& c : cases) {
    auto out = SerializeSafetensors(c.tensors);
    ASSERT_FALSE(out.ok()) << c.needle;
    EXPECT_THAT(out, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.needle)));
    EXPECT_THAT(std::string(out.status().message()), HasSubstr("'" + c.tensors.back().name + "'"));
  }
  auto bad_utf8 = SerializeSafetensors({{"x", t}}, {{"k", "\xff"}});
  EXPECT_THAT(bad_utf8, StatusIs(absl::StatusCode::kInvalidArgument));
  absl::Status st = WriteSafetensors("/nonexistent-dir/x.safetensors", {{"x", t}});
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr("/nonexistent-dir/x.safetensors"));
}

// ---------------------------------------------------------------------------- conversion

TEST(SafetensorsTest, ConvertsLikeTorch) {
  at::manual_seed(3);
  at::Tensor src = at::randn({16, 9});
  at::Tensor bf16 = src.to(at::kBFloat16);
  at::Tensor f16 = src.to(at::kHalf);
  auto bytes = SerializeSafetensors({{"bf16", bf16}, {"f16", f16}, {"f32", src}});
  ASSERT_TRUE(bytes.ok());
  auto file = SafetensorsFile::FromBytes(*bytes, "conv");
  ASSERT_TRUE(file.ok());
  LoadOptions to_f32;
  to_f32.dtype = at::kFloat;
  auto a = (*file)->Load("bf16", to_f32);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->scalar_type(), at::kFloat);
  EXPECT_EQ(TensorBytes(*a), TensorBytes(bf16.to(at::kFloat)));
  auto b = (*file)->Load("f16", to_f32);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(TensorBytes(*b), TensorBytes(f16.to(at::kFloat)));
  LoadOptions to_bf16;
  to_bf16.dtype = at::kBFloat16;
  auto c = (*file)->Load("f32", to_bf16);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(TensorBytes(*c), TensorBytes(bf16));
}

TEST(SafetensorsTest, MisalignedDataIsCopiedNotViewed) {
  // Header length 9: the data starts at byte 17, so a float* view would be misaligned
  // (UBSan checks this test).
  std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  header += std::string((8 - header.size() % 8) % 8 + 1, ' ');
  ASSERT_EQ((8 + header.size()) % 4, 1u);
  float v[2] = {1.5f, -2.25f};
  std::string dir = testing::MakeTempDir("st");
  ASSERT_TRUE(WriteFileAtomic(dir + "/odd.safetensors", RawFile(header, Bytes(v, 8))).ok());
  auto file = SafetensorsFile::Open(dir + "/odd.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  LoadOptions opts;
  opts.dtype = at::kDouble;
  for (const LoadOptions& o : {LoadOptions{}, opts}) {
    auto t = (*file)->Load("x", o);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->to(at::kFloat)[0].item<float>(), 1.5f);
    EXPECT_EQ(t->to(at::kFloat)[1].item<float>(), -2.25f);
  }
}

// Where CUDA is present the tensor lands on the GPU converted; where it is not, asking
// for it is a Status naming the file and the tensor, not a crash. One test, no skip.
TEST(SafetensorsTest, CudaTargetLoadsOrFailsCleanly) {
  if (at::hasCUDA()) {
    at::Tensor src = at::randn({5, 7}).to(at::kBFloat16);
    auto bytes = SerializeSafetensors({{"w", src}});
    ASSERT_TRUE(bytes.ok());
    auto file = SafetensorsFile::FromBytes(*bytes, "cuda");
    ASSERT_TRUE(file.ok());
    LoadOptions opts;
    opts.device = at::Device(at::kCUDA, 0);
    opts.dtype = at::kFloat;
    auto t = (*file)->Load("w", opts);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_TRUE(t->is_cuda());
    EXPECT_EQ(t->scalar_type(), at::kFloat);
    EXPECT_EQ(TensorBytes(*t), TensorBytes(src.to(at::kFloat)));
    return;
  }
  auto file = SafetensorsFile::Open(Fixture("tiny-llama3/model.safetensors"));
  ASSERT_TRUE(file.ok());
  LoadOptions opts;
  opts.device = at::Device(at::kCUDA, 0);
  auto t = (*file)->Load("model.norm.weight", opts);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("model.norm.weight"));
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("model.safetensors"));
}

TEST(SafetensorsTest, ConcurrentLoadsAgree) {
  auto ckpt = Checkpoint::Open(Fixture("tiny-llama3-sharded"));
  ASSERT_TRUE(ckpt.ok());
  const std::vector<std::string> names = (*ckpt)->names();
  std::vector<std::string> want;
  for (const auto& n : names) want.push_back(TensorBytes(*(*ckpt)->Load(n)));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int rep = 0; rep < 3; ++rep) {
        for (size_t i = 0; i < names.size(); ++i) {
          auto t = (*ckpt)->Load(names[(i + k) % names.size()]);
          if (!t.ok() || TensorBytes(*t) != want[(i + k) % names.size()]) ++mismatches[k];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

// ---------------------------------------------------------------------------- errors

struct BadFile {
  std::string file;  // written in the temp dir
  std::string content;
  absl::StatusCode code;
  std::string tensor;  // must appear in the message ("" if none)
  std::string needle;  // also must appear
};

std::string Entry(const std::string& name, const std::string& body) {
  return "\"" + name + "\":{" + body + "}";
}

std::vector<BadFile> BadFiles() {
  const auto DL = absl::StatusCode::kDataLoss;
  std::string f8(8, '\0');
  std::string f16(16, '\0');
  uint64_t huge = 200'000'000;
  uint64_t past = 1000;
  return {
      {"short.safetensors", "abcde", DL, "", "shorter than the 8-byte"},
      {"huge_header.safetensors", Bytes(&huge, 8) + "{}", DL, "", "exceeds the limit"},
      {"past_end.safetensors", Bytes(&past, 8) + "{}", DL, "", "runs past the end"},
      {"not_json.safetensors", RawFile("{\"a\": nope}"), DL, "", "not valid JSON"},
      {"array.safetensors", RawFile("[1, 2]"), DL, "", "not a JSON object"},
      {"entry_not_object.safetensors", RawFile("{\"w1\": 3}"), DL, "w1", "not a JSON object"},
      {"no_dtype.safetensors",
       RawFile("{" + Entry("w2", R"("shape":[2],"data_offsets":[0,8])") + "}", f8), DL, "w2",
       "missing \"dtype\""},
      {"dtype_type.safetensors",
       RawFile("{" + Entry("w3", R"("dtype":4,"shape":[2],"data_offsets":[0,8])") + "}", f8), DL,
       "w3", "\"dtype\" is not a string"},
      {"no_shape.safetensors",
       RawFile("{" + Entry("w4", R"("dtype":"F32","data_offsets":[0,8])") + "}", f8), DL, "w4",
       "missing \"shape\""},
      {"shape_type.safetensors",
       RawFile("{" + Entry("w5", R"("dtype":"F32","shape":"2","data_offsets":[0,8])") + "}", f8),
       DL, "w5", "not an array"},
      {"shape_float.safetensors",
       RawFile("{" + Entry("w6", R"("dtype":"F32","shape":[2.5],"data_offsets":[0,8])") + "}", f8),
       DL, "w6", "not an integer"},
      {"no_offsets.safetensors",
       RawFile("{" + Entry("w7", R"("dtype":"F32","shape":[2])") + "}", f8), DL, "w7",
       "missing \"data_offsets\""},
      {"offsets_len.safetensors",
       RawFile("{" + Entry("w8", R"("dtype":"F32","shape":[2],"data_offsets":[0])") + "}", f8), DL,
       "w8", "data_offsets"},
      {"offsets_neg.safetensors",
       RawFile("{" + Entry("w9", R"("dtype":"F32","shape":[2],"data_offsets":[-8,0])") + "}", f8),
       DL, "w9", "non-negative"},
      {"unknown_dtype.safetensors",
       RawFile("{" + Entry("w10", R"("dtype":"Q4","shape":[2],"data_offsets":[0,2])") + "}", f8),
       DL, "w10", "unknown or unsupported dtype \"Q4\""},
      {"neg_dim.safetensors",
       RawFile("{" + Entry("w11", R"("dtype":"F32","shape":[-2],"data_offsets":[0,8])") + "}", f8),
       DL, "w11", "negative dimension -2"},
      {"out_of_range.safetensors",
       RawFile("{" + Entry("w12", R"("dtype":"F32","shape":[4],"data_offsets":[0,16])") + "}", f8),
       DL, "w12", "run past the data section of 8 bytes"},
      {"begin_gt_end.safetensors",
       RawFile("{" + Entry("w13", R"("dtype":"F32","shape":[0],"data_offsets":[8,0])") + "}", f8),
       DL, "w13", "begin 8 > end 0"},
      {"size_mismatch.safetensors",
       RawFile("{" + Entry("w14", R"("dtype":"F32","shape":[3],"data_offsets":[0,8])") + "}", f16),
       DL, "w14", "needs 12"},
      {"overflow.safetensors",
       RawFile("{" +
                   Entry("w15",
                         R"("dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8])") +
                   "}",
               f8),
       DL, "w15", "overflows"},
      {"byte_overflow.safetensors",
       RawFile(
           "{" +
               Entry("w16", R"("dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8])") +
               "}",
           f8),
       DL, "w16", "overflows the byte count"},
      {"overlap.safetensors",
       RawFile("{" + Entry("w17a", R"("dtype":"F32","shape":[2],"data_offsets":[0,8])") + "," +
                   Entry("w17b", R"("dtype":"F32","shape":[2],"data_offsets":[4,12])") + "}",
               f16),
       DL, "w17b", "overlap tensor 'w17a'"},
      {"dup_tensor.safetensors",
       RawFile("{" + Entry("w18", R"("dtype":"F32","shape":[2],"data_offsets":[0,8])") + "," +
                   Entry("w18", R"("dtype":"F32","shape":[2],"data_offsets":[8,16])") + "}",
               f16),
       DL, "w18", "duplicate key"},
      {"dup_field.safetensors",
       RawFile("{" +
                   Entry("w19", R"("dtype":"F32","dtype":"I32","shape":[2],"data_offsets":[0,8])") +
                   "}",
               f8),
       DL, "w19", "duplicate key 'dtype' inside entry"},
      {"bad_metadata.safetensors", RawFile(R"({"__metadata__":{"step":3}})"), DL, "step",
       "not a string"},
  };
}

TEST(SafetensorsTest, MalformedFilesGetClearErrors) {
  const std::string dir = testing::MakeTempDir("st-bad");
  for (const BadFile& c : BadFiles()) {
    SCOPED_TRACE(c.file);
    const std::string path = dir + "/" + c.file;
    ASSERT_TRUE(WriteFileAtomic(path, c.content).ok());
    auto file = SafetensorsFile::Open(path);
    ASSERT_FALSE(file.ok());
    const std::string msg(file.status().message());
    EXPECT_THAT(file.status(), StatusIs(c.code, HasSubstr(path)));
    if (!c.tensor.empty()) {
      EXPECT_THAT(msg, HasSubstr("'" + c.tensor + "'"));
    }
    EXPECT_THAT(msg, HasSubstr(c.needle));
    // The in-memory parser says the same, naming its source.
    auto mem = SafetensorsFile::FromBytes(c.content, "bytes:" + c.file);
    ASSERT_FALSE(mem.ok());
    EXPECT_THAT(std::string(mem.status().message()), HasSubstr("bytes:" + c.file));
    // And a checkpoint addressed by that file fails the same way.
    auto ckpt = Checkpoint::Open(path);
    ASSERT_FALSE(ckpt.ok());
    EXPECT_THAT(std::string(ckpt.status().message()), HasSubstr(c.needle));
  }
}

// Found by fuzz_safetensors: a shape nested a million levels deep overflowed the stack
// while its error message was built (nlohmann's dump() recurses). Now refused by depth.
TEST(SafetensorsTest, DeeplyNestedHeaderIsRefused) {
  const auto header = [](int extra_levels) {
    return R"({"a":{"dtype":"F32","shape":[)" + std::string(extra_levels, '[') +
           std::string(extra_levels, ']') + R"(],"data_offsets":[0,0]}})";
  };
  auto deep = SafetensorsFile::FromBytes(RawFile(header(1000000)), "rpc:deep");
  ASSERT_FALSE(deep.ok());
  EXPECT_THAT(deep, StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(std::string(deep.status().message()),
              HasSubstr("safetensors file rpc:deep: header: JSON nested deeper than 64 levels"));
  // 64 levels (the object, the entry, the shape and 61 more) are parsed, and refused for
  // what they hold.
  auto at_limit = SafetensorsFile::FromBytes(RawFile(header(61)), "rpc:64");
  ASSERT_FALSE(at_limit.ok());
  EXPECT_THAT(std::string(at_limit.status().message()), HasSubstr("is not an integer"));
  auto over = SafetensorsFile::FromBytes(RawFile(header(62)), "rpc:65");
  ASSERT_FALSE(over.ok());
  EXPECT_THAT(std::string(over.status().message()), HasSubstr("nested deeper than 64"));
}

TEST(SafetensorsTest, LoadErrorsNameFileAndTensor) {
  const std::string dir = testing::MakeTempDir("st-bad");
  const std::string path = dir + "/bool.safetensors";
  ASSERT_TRUE(
      WriteFileAtomic(
          path,
          RawFile(
              std::string(R"({"flags":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})") + "   ",
              std::string("\x01\x02\x00", 3)))
          .ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  auto flags = (*file)->Load("flags");
  ASSERT_FALSE(flags.ok());
  EXPECT_THAT(flags, StatusIs(absl::StatusCode::kDataLoss, HasSubstr(path)));
  EXPECT_THAT(std::string(flags.status().message()), HasSubstr("'flags'"));

  auto missing = (*file)->Load("nope");
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound, HasSubstr(path)));
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("'nope'"));

  auto ckpt = Checkpoint::Open(Fixture("tiny-llama3"));
  ASSERT_TRUE(ckpt.ok());
  auto absent = (*ckpt)->Load("model.layers.9.mlp.up_proj.weight");
  EXPECT_THAT(absent, StatusIs(absl::StatusCode::kNotFound, HasSubstr(Fixture("tiny-llama3"))));
  EXPECT_THAT(std::string(absent.status().message()),
              HasSubstr("model.layers.9.mlp.up_proj.weight"));
  EXPECT_THAT((*ckpt)->Shape("nope"), StatusIs(absl::StatusCode::kNotFound));

  const nlohmann::json config = ModelConfig("tiny-llama3");
  const int64_t vocab = config.at("vocab_size").get<int64_t>(),
                hidden = config.at("hidden_size").get<int64_t>();
  auto wrong = (*ckpt)->LoadWithShape("lm_head.weight", {vocab + 1, hidden});
  ASSERT_FALSE(wrong.ok());
  EXPECT_THAT(wrong, StatusIs(absl::StatusCode::kInvalidArgument));
  const std::string msg(wrong.status().message());
  EXPECT_THAT(msg, HasSubstr("tiny-llama3/model.safetensors"));
  EXPECT_THAT(msg, HasSubstr("'lm_head.weight'"));
  EXPECT_THAT(msg, HasSubstr(absl::StrCat("[", vocab, ", ", hidden, "]")));
  EXPECT_THAT(msg, HasSubstr(absl::StrCat("[", vocab + 1, ", ", hidden, "]")));

  auto nothing = Checkpoint::Open(testing::MakeTempDir("st-empty"));
  EXPECT_THAT(nothing, StatusIs(absl::StatusCode::kNotFound, HasSubstr("model.safetensors")));
  auto no_path = Checkpoint::Open(dir + "/does-not-exist");
  EXPECT_THAT(no_path, StatusIs(absl::StatusCode::kNotFound, HasSubstr("does-not-exist")));
}

// A sharded checkpoint with two good shards, then `index` written over its index.
struct ShardedCase {
  std::string name;
  std::string index;
  absl::StatusCode code;
  std::vector<std::string> needles;
};

TEST(SafetensorsTest, MalformedShardedCheckpointsGetClearErrors) {
  const std::vector<ShardedCase> cases = {
      {"not_json", "{\"weight_map\": ", absl::StatusCode::kDataLoss, {"not valid JSON"}},
      {"not_object", "[]", absl::StatusCode::kDataLoss, {"not a JSON object"}},
      {"no_weight_map", R"({"metadata": {}})", absl::StatusCode::kDataLoss, {"weight_map"}},
      {"weight_map_type", R"({"weight_map": []})", absl::StatusCode::kDataLoss, {"weight_map"}},
      {"value_type", R"({"weight_map": {"a": 3}})", absl::StatusCode::kDataLoss, {"'a'"}},
      {"escape",
       R"({"weight_map": {"a": "../x.safetensors"}})",
       absl::StatusCode::kDataLoss,
       {"'a'", "../x.safetensors"}},
      {"dup",
       R"({"weight_map": {"a": "s1.safetensors", "a": "s2.safetensors"}})",
       absl::StatusCode::kDataLoss,
       {"duplicate key 'a'"}},
      {"missing_shard",
       R"({"weight_map": {"a": "s1.safetensors", "b": "gone.safetensors"}})",
       absl::StatusCode::kNotFound,
       {"gone.safetensors"}},
      {"absent_tensor",
       R"({"weight_map": {"a": "s1.safetensors", "c": "s2.safetensors"}})",
       absl::StatusCode::kDataLoss,
       {"'c'", "s2.safetensors"}},
  };
  for (const ShardedCase& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string dir = testing::MakeTempDir("st-shard");
    ASSERT_TRUE(WriteSafetensors(dir + "/s1.safetensors", {{"a", at::ones({2})}}).ok());
    ASSERT_TRUE(WriteSafetensors(dir + "/s2.safetensors", {{"b", at::ones({3})}}).ok());
    const std::string index = dir + "/model.safetensors.index.json";
    ASSERT_TRUE(WriteFileAtomic(index, c.index).ok());
    auto ckpt = Checkpoint::Open(dir);
    ASSERT_FALSE(ckpt.ok());
    const std::string msg(ckpt.status().message());
    EXPECT_THAT(ckpt.status(), StatusIs(c.code, HasSubstr(index)));
    for (const std::string& needle : c.needles) EXPECT_THAT(msg, HasSubstr(needle));
  }
  // The same two shards with a good index load.
  const std::string dir = testing::MakeTempDir("st-shard");
  ASSERT_TRUE(WriteSafetensors(dir + "/s1.safetensors", {{"a", at::ones({2})}}, {{"m", "1"}}).ok());
  ASSERT_TRUE(WriteSafetensors(dir + "/s2.safetensors", {{"b", at::ones({3})}}, {{"m", "2"}}).ok());
  ASSERT_TRUE(
      WriteFileAtomic(
          dir + "/model.safetensors.index.json",
          R"({"metadata": {"total_size": 20}, "weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}})")
          .ok());
  auto ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ((*ckpt)->metadata().at("m"), "1");  // first shard by name wins
  auto b = (*ckpt)->LoadWithShape("b", {3});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(at::equal(*b, at::ones({3})));
}

TEST(SafetensorsTest, DtypeNamesRoundTrip) {
  for (StDtype d : {StDtype::kF64, StDtype::kF32, StDtype::kF16, StDtype::kBF16, StDtype::kI64,
                    StDtype::kI32, StDtype::kI16, StDtype::kI8, StDtype::kU8, StDtype::kBool}) {
    EXPECT_EQ(StDtypeFromName(StDtypeName(d)), d);
    EXPECT_EQ(*StDtypeFromScalarType(StDtypeToScalarType(d)), d);
    EXPECT_EQ(StDtypeSize(d), at::elementSize(StDtypeToScalarType(d)));
  }
  EXPECT_EQ(std::string(StDtypeName(StDtype::kBF16)), "BF16");
  EXPECT_FALSE(StDtypeFromName("bf16").has_value());
}

}  // namespace
}  // namespace llava
