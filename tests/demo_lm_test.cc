// The demo LM builder: a short build into a temp dir gives a Hugging Face checkpoint that
// LoadLlama loads and that answers far better than chance, builds are bitwise
// reproducible for a seed, and bad options or inputs give clear errors.
// The full default build is `llava-mnist make-demo-lm` (minutes; not run here).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/llama_forward.h"
#include "common/llama_weights.h"
#include "common/prompt.h"
#include "common/safetensors.h"
#include "common/tokenizer.h"
#include "tests/status_matchers.h"
#include "tests/test_util.h"
#include "worker/demo_lm.h"

namespace llava {
namespace {

namespace fs = std::filesystem;
using ::llava::testing::StatusIs;
using ::testing::HasSubstr;

// 60 steps of 8 dialogues: enough to learn the answer's template (the answer loss then
// nears ln(10)/7, the digit still a guess), short enough for the suite.
DemoLmOptions ShortOptions(const std::string& out_dir) {
  DemoLmOptions o;
  o.tokenizer_path = testing::TokenizerPath();
  o.out_dir = out_dir;
  o.steps = 60;
  o.batch_size = 8;
  o.log_every = 20;
  // One thread: bitwise reproducibility holds for a fixed thread count, and CI machines
  // differ in cores.
  o.num_threads = 1;
  return o;
}

std::string Normalized(const std::string& q) {
  std::string out;
  for (char c : q) {
    if (std::isalnum(static_cast<unsigned char>(c)))
      out += std::tolower(static_cast<unsigned char>(c));
  }
  return out;
}

TEST(DemoLmQuestionsTest, ManyVariedAndDisjointFromHeldOut) {
  const auto& train = DemoLmQuestions();
  const auto& held = HeldOutQuestions();
  EXPECT_GE(train.size(), 30u);
  EXPECT_GE(held.size(), 10u);
  std::set<std::string> seen;
  for (const std::string& q : train) {
    EXPECT_FALSE(q.empty());
    EXPECT_TRUE(seen.insert(Normalized(q)).second) << "duplicate training question: " << q;
  }
  for (const std::string& q : held) {
    EXPECT_EQ(seen.count(Normalized(q)), 0u) << "held-out question used in training: " << q;
    seen.insert(Normalized(q));
  }
}

TEST(DemoLmOptionsTest, DefaultsAreValid) { EXPECT_TRUE(DemoLmOptions().Validate().ok()); }

TEST(DemoLmOptionsTest, EachBadFieldNamed) {
  struct Bad {
    const char* field;
    void (*mutate)(DemoLmOptions*);
  };
  const Bad cases[] = {
      {"hidden_size", [](DemoLmOptions* o) { o->hidden_size = 0; }},
      {"hidden_size", [](DemoLmOptions* o) { o->hidden_size = 130; }},  // 130/4 not whole
      {"num_layers", [](DemoLmOptions* o) { o->num_layers = 0; }},
      {"num_heads", [](DemoLmOptions* o) { o->num_heads = -1; }},
      {"num_kv_heads", [](DemoLmOptions* o) { o->num_kv_heads = 3; }},
      {"intermediate_size", [](DemoLmOptions* o) { o->intermediate_size = 0; }},
      {"steps", [](DemoLmOptions* o) { o->steps = 0; }},
      {"batch_size", [](DemoLmOptions* o) { o->batch_size = -4; }},
      {"lr", [](DemoLmOptions* o) { o->lr = 0; }},
      {"lr", [](DemoLmOptions* o) { o->lr = std::nan(""); }},
      {"image_noise", [](DemoLmOptions* o) { o->image_noise = -0.1; }},
      {"log_every", [](DemoLmOptions* o) { o->log_every = 0; }},
      {"stop_window", [](DemoLmOptions* o) { o->stop_window = 0; }},
      {"num_threads", [](DemoLmOptions* o) { o->num_threads = -2; }},
      {"out_dir", [](DemoLmOptions* o) { o->out_dir = ""; }},
      {"tokenizer_path", [](DemoLmOptions* o) { o->tokenizer_path = ""; }},
  };
  for (const Bad& c : cases) {
    DemoLmOptions o;
    c.mutate(&o);
    absl::Status s = o.Validate();
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)));
    // BuildDemoLm refuses the same options before touching anything.
    absl::StatusOr<DemoLmResult> r = BuildDemoLm(o);
    EXPECT_THAT(r.status(), StatusIs(absl::StatusCode::kInvalidArgument)) << c.field;
  }
}

TEST(DemoLmBuildTest, MissingTokenizerNamesTheFile) {
  const std::string dir = testing::MakeTempDir("demo-lm-notok");
  DemoLmOptions o = ShortOptions(dir + "/lm");
  o.tokenizer_path = dir + "/no-such-tokenizer.json";
  absl::StatusOr<DemoLmResult> r = BuildDemoLm(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no-such-tokenizer.json"), std::string::npos) << r.status();
  EXPECT_FALSE(fs::exists(dir + "/lm"));
  EXPECT_FALSE(DemoLmExists(dir + "/lm"));
}

TEST(DemoLmBuildTest, MalformedTokenizerNamesTheFile) {
  const std::string dir = testing::MakeTempDir("demo-lm-badtok");
  ASSERT_TRUE(WriteFileAtomic(dir + "/tokenizer.json", "{\"model\": 3").ok());
  DemoLmOptions o = ShortOptions(dir + "/lm");
  o.tokenizer_path = dir + "/tokenizer.json";
  absl::StatusOr<DemoLmResult> r = BuildDemoLm(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(o.tokenizer_path), std::string::npos) << r.status();
  EXPECT_FALSE(DemoLmExists(dir + "/lm"));
}

// One short build shared by the checks below (building is the slow part).
class ShortBuildTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(testing::MakeTempDir("demo-lm"));
    auto r = BuildDemoLm(ShortOptions(*dir_ + "/lm"));
    status_ = new absl::Status(r.status());
    if (r.ok()) result_ = *r;
  }
  static void TearDownTestSuite() {
    EXPECT_TRUE(RemoveTree(*dir_).ok());
    delete dir_;
    delete status_;
  }
  void SetUp() override { ASSERT_TRUE(status_->ok()) << *status_; }
  static std::string Dir() { return *dir_ + "/lm"; }

  static std::string* dir_;
  static absl::Status* status_;
  static DemoLmResult result_;
};
std::string* ShortBuildTest::dir_ = nullptr;
absl::Status* ShortBuildTest::status_ = nullptr;
DemoLmResult ShortBuildTest::result_;

TEST_F(ShortBuildTest, WritesHuggingFaceLayoutAndNothingElse) {
  EXPECT_TRUE(DemoLmExists(Dir()));
  std::set<std::string> files;
  for (const auto& e : fs::directory_iterator(Dir())) files.insert(e.path().filename());
  EXPECT_EQ(files, (std::set<std::string>{"config.json", "generation_config.json",
                                          "model.safetensors", "tokenizer.json", "demo_lm.json"}));
  // The directory was renamed into place: no staging directories are left behind.
  EXPECT_FALSE(fs::exists(Dir() + ".tmp"));
  EXPECT_FALSE(fs::exists(Dir() + ".old"));
  auto copied = ReadFile(Dir() + "/tokenizer.json");
  auto original = ReadFile(testing::TokenizerPath());
  ASSERT_TRUE(copied.ok() && original.ok());
  EXPECT_TRUE(*copied == *original);
}

TEST_F(ShortBuildTest, ConfigIsLlama31Shaped) {
  auto text = ReadFile(Dir() + "/config.json");
  ASSERT_TRUE(text.ok());
  auto j = nlohmann::json::parse(*text);
  EXPECT_EQ(j["model_type"], "llama");
  EXPECT_EQ(j["architectures"], nlohmann::json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(j["torch_dtype"], "float32");
  EXPECT_EQ(j["rope_scaling"]["rope_type"], "llama3");
  auto config = LoadLlamaConfig(Dir());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->vocab_size, 128256);
  EXPECT_EQ(config->hidden_size, 128);
  EXPECT_EQ(config->num_hidden_layers, 2);
  EXPECT_EQ(config->num_attention_heads, 4);
  EXPECT_EQ(config->num_key_value_heads, 2);
  EXPECT_EQ(config->head_dim, 32);
  EXPECT_TRUE(config->tie_word_embeddings);
  EXPECT_EQ(config->bos_token_id, 128000);
  EXPECT_EQ(config->eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_EQ(config->rope.type, RopeType::kLlama3);
  EXPECT_DOUBLE_EQ(config->rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(config->rope.factor, 8.0);
  auto gen = ReadFile(Dir() + "/generation_config.json");
  ASSERT_TRUE(gen.ok());
  EXPECT_EQ(nlohmann::json::parse(*gen)["bos_token_id"], 128000);
}

TEST_F(ShortBuildTest, SafetensorsHoldExactlyTheHfKeysInFloat32) {
  auto file = SafetensorsFile::Open(Dir() + "/model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  std::set<std::string> expected = {"model.embed_tokens.weight", "model.norm.weight"};
  for (int layer = 0; layer < 2; ++layer) {
    for (const char* k : {"input_layernorm", "self_attn.q_proj", "self_attn.k_proj",
                          "self_attn.v_proj", "self_attn.o_proj", "post_attention_layernorm",
                          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}) {
      expected.insert("model.layers." + std::to_string(layer) + "." + k + ".weight");
    }
  }
  std::set<std::string> names;
  for (const StTensorInfo& t : (*file)->tensors()) {
    names.insert(t.name);
    EXPECT_EQ(t.dtype, StDtype::kF32) << t.name;
  }
  EXPECT_EQ(names, expected);  // no lm_head.weight: tied
  EXPECT_EQ((*file)->metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  const StTensorInfo* embed = (*file)->Find("model.embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  EXPECT_EQ(embed->shape, (std::vector<int64_t>{128256, 128}));
  const StTensorInfo* gate = (*file)->Find("model.layers.1.mlp.gate_proj.weight");
  ASSERT_NE(gate, nullptr);
  EXPECT_EQ(gate->shape, (std::vector<int64_t>{448, 128}));
}

TEST_F(ShortBuildTest, LossFellFarBelowChance) {
  // A random LM predicts each of the 128,256 tokens about equally: ln(128256) = 11.76.
  EXPECT_GT(result_.initial_answer_loss, 10.5);
  EXPECT_LT(result_.initial_answer_loss, 12.5);
  EXPECT_LT(result_.final_answer_loss, 1.0);
  EXPECT_EQ(result_.steps, 60);
  EXPECT_GE(result_.digit_accuracy, 0.0);
  EXPECT_LE(result_.digit_accuracy, 1.0);
  auto text = ReadFile(Dir() + "/demo_lm.json");
  ASSERT_TRUE(text.ok());
  auto j = nlohmann::json::parse(*text);
  EXPECT_EQ(j["steps_run"], 60);
  EXPECT_EQ(j["seed"], 0);
  EXPECT_DOUBLE_EQ(j["final_answer_loss"].get<double>(), result_.final_answer_loss);
}

// The saved checkpoint, loaded like any Llama and run through the full-sequence
// CausalLmLoss (logits at every position), reproduces the low answer loss that training
// measured from the answer positions only.
TEST_F(ShortBuildTest, LoadedCheckpointAnswersWithLowLoss) {
  auto model = LoadLlama(Dir(), ModelOptions{});
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_FALSE((*model)->weights.embed_tokens.requires_grad());
  auto tok = Tokenizer::Load(Dir() + "/tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  PromptConfig pc;
  pc.questions = DemoLmQuestions();
  auto builder = PromptBuilder::Create(*tok, pc);
  ASSERT_TRUE(builder.ok()) << builder.status();
  std::vector<PromptSample> samples;
  // Full-vocabulary logits at every position are costly: 10 dialogues, varied questions.
  for (int64_t i = 0; i < 10; ++i) samples.push_back({i * 3, 0, i});
  PromptBatch batch = builder->Build(samples);
  for (int64_t r = 0; r < 10; ++r) {
    batch.ids[r][batch.image_position].fill_(*tok->TokenToId(std::to_string(r % 10)));
  }
  at::Tensor loss = CausalLmLoss(ForwardLogits(**model, ForwardOptions(), batch.ids), batch.labels);
  EXPECT_LT(loss.item<double>(), 1.0);
  EXPECT_NEAR(loss.item<double>(), result_.final_answer_loss, 0.3);
  // The same dialogues with a random token at the image slot: the LM must depend on it.
  PromptBatch wrong = builder->Build(samples);
  wrong.ids.select(1, wrong.image_position).fill_(*tok->TokenToId("cat"));
  at::Tensor wrong_loss =
      CausalLmLoss(ForwardLogits(**model, ForwardOptions(), wrong.ids), wrong.labels);
  EXPECT_GT(wrong_loss.item<double>(), loss.item<double>());
}

TEST(DemoLmDeterminismTest, SameSeedSameBytesDifferentSeedDifferent) {
  const std::string dir = testing::MakeTempDir("demo-lm-det");
  DemoLmOptions o = ShortOptions(dir + "/a");
  o.steps = 10;
  o.batch_size = 4;
  o.evaluate = false;
  ASSERT_TRUE(BuildDemoLm(o).ok());
  auto first = ReadFile(dir + "/a/model.safetensors");
  ASSERT_TRUE(first.ok());
  // Rebuilding over the existing directory replaces it.
  ASSERT_TRUE(BuildDemoLm(o).ok());
  auto second = ReadFile(dir + "/a/model.safetensors");
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(*first == *second) << "two builds with seed 0 differ";
  EXPECT_FALSE(fs::exists(dir + "/a.old"));

  o.seed = 1;
  o.out_dir = dir + "/b";
  ASSERT_TRUE(BuildDemoLm(o).ok());
  auto other = ReadFile(dir + "/b/model.safetensors");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->size(), first->size());
  EXPECT_FALSE(*other == *first) << "seeds 0 and 1 gave the same model";
  EXPECT_TRUE(RemoveTree(dir).ok());
}

TEST(DemoLmExistsTest, IncompleteDirectoryIsNotADemoLm) {
  const std::string dir = testing::MakeTempDir("demo-lm-exists");
  EXPECT_FALSE(DemoLmExists(dir));
  EXPECT_FALSE(DemoLmExists(dir + "/missing"));
  for (const char* f :
       {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"}) {
    ASSERT_TRUE(WriteFileAtomic(dir + "/" + f, "x").ok());
  }
  EXPECT_FALSE(DemoLmExists(dir));  // demo_lm.json missing
  ASSERT_TRUE(WriteFileAtomic(dir + "/demo_lm.json", "{}").ok());
  EXPECT_TRUE(DemoLmExists(dir + "/"));
}

}  // namespace
}  // namespace llava
