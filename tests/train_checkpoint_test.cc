// Training checkpoints: bit-exact round trips (file and bytes), the file layout Python's
// safetensors reads, resume giving the same parameters as an uninterrupted run, every
// malformed input's error, and saves that fail without harming the previous file.
#include "common/train_checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/log.h"
#include "tests/test_util.h"
#include "tests/status_matchers.h"

namespace llava {
namespace {

using ::llava::testing::StatusIs;

using ::testing::HasSubstr;

std::string Bytes(const at::Tensor& t) {
  at::Tensor c = t.detach().cpu().contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
}

ProjectorConfig MlpConfig() {
  ProjectorConfig c;
  c.type = ProjectorType::kMlp2xGelu;
  c.output_dim = 8;
  c.hidden_dim = 12;
  c.image_tokens = 2;
  return c;
}

ProjectorConfig LinearConfig() {
  ProjectorConfig c;
  c.output_dim = 8;
  c.image_tokens = 2;
  return c;
}

// A tiny regression through the projector: output [B, k, D] towards a fixed target,
// fresh pixels every step (the data order is a function of the step, as the trainer's).
struct TrainRun {
  Projector projector;
  std::unique_ptr<Optimizer> optimizer;
  OptimizerConfig opt_config;
  ScheduleConfig schedule;
  int64_t total_steps = 12;

  void TrainSteps(int64_t from, int64_t to) {
    const ProjectorConfig& c = projector->config();
    for (int64_t step = from; step < to; ++step) {
      at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1000 + step);
      at::Tensor pixels = at::rand({4, c.input_dim}, gen, at::kFloat);  // [B, 784]
      at::Tensor target =                                               // [B, k, D]
          at::randn({4, c.image_tokens, c.output_dim}, gen, at::kFloat);
      optimizer->ZeroGrad();
      (projector->forward(pixels) - target).pow(2).mean().backward();
      optimizer->Step(LearningRate(opt_config, schedule, step, total_steps));
    }
  }
};

TrainRun MakeRun(const ProjectorConfig& config, const OptimizerConfig& opt, uint64_t seed) {
  TrainRun run{Projector(config, seed), nullptr, opt, {}, 12};
  run.schedule.type = "cosine";
  run.schedule.warmup_steps = 3;
  auto made = Optimizer::Create(opt, run.projector->NamedParameters());
  LM_CHECK(made.ok()) << made.status();
  run.optimizer = *std::move(made);
  return run;
}

void ExpectSameParameters(Projector& a, Projector& b) {
  auto pa = a->NamedParameters(), pb = b->NamedParameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i].first, pb[i].first);
    EXPECT_EQ(Bytes(pa[i].second), Bytes(pb[i].second)) << pa[i].first;
  }
}

const char* kTrainState = R"({"step":5,"epoch":0,"position":20,"loss":[1.5,1.25],"seed":7})";
const char* kModel = "synthetic:tiny";

TEST(TrainCheckpointTest, RoundTripIsBitExact) {
  TrainRun run = MakeRun(MlpConfig(), OptimizerConfig(), 3);
  run.TrainSteps(0, 4);
  const std::string path = testing::MakeTempDir("ckpt") + "/ckpt.safetensors";
  ASSERT_TRUE(
      SaveTrainCheckpoint(path, run.projector, run.optimizer.get(), kTrainState, kModel).ok());
  auto loaded = LoadTrainCheckpoint(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->source, path);
  EXPECT_EQ(loaded->projector_config, MlpConfig());
  EXPECT_EQ(loaded->train_state_json, kTrainState);
  EXPECT_EQ(loaded->model_spec, kModel);
  auto params = run.projector->NamedParameters();
  ASSERT_EQ(loaded->projector_tensors.size(), params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_EQ(loaded->projector_tensors[i].name, params[i].first);
    EXPECT_EQ(loaded->projector_tensors[i].tensor.scalar_type(), at::kFloat);
    EXPECT_EQ(Bytes(loaded->projector_tensors[i].tensor), Bytes(params[i].second));
  }
  std::map<std::string, std::string> want_state, got_state;
  for (const NamedTensor& t : run.optimizer->StateTensors()) want_state[t.name] = Bytes(t.tensor);
  for (const NamedTensor& t : loaded->optimizer_state) got_state[t.name] = Bytes(t.tensor);
  EXPECT_EQ(got_state, want_state);
  EXPECT_EQ(got_state.size(), 4u * 2 + 1);

  // The bytes form is the same file.
  auto bytes = SerializeTrainCheckpoint(run.projector, run.optimizer.get(), kTrainState, kModel);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, *ReadFile(path));
  auto parsed = ParseTrainCheckpoint(*bytes, "rpc:worker-1");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->source, "rpc:worker-1");
  EXPECT_EQ(parsed->optimizer_state.size(), loaded->optimizer_state.size());

  // Restored projector computes what the original does.
  auto restored = RestoreProjector(*loaded, at::kCPU);
  ASSERT_TRUE(restored.ok()) << restored.status();
  ExpectSameParameters(*restored, run.projector);
  at::Tensor px = at::rand({3, 784});
  EXPECT_TRUE(at::equal(restored->get()->forward(px), run.projector->forward(px)));
}

TEST(TrainCheckpointTest, ProjectorOnlyCopyKeepsTheProjectorAndMetadataOnly) {
  TrainRun run = MakeRun(MlpConfig(), OptimizerConfig(), 3);
  run.TrainSteps(0, 2);
  auto full = SerializeTrainCheckpoint(run.projector, run.optimizer.get(), kTrainState, kModel);
  ASSERT_TRUE(full.ok()) << full.status();
  auto slim = ProjectorOnlyCheckpoint(*full, "ckpt-a");
  ASSERT_TRUE(slim.ok()) << slim.status();
  EXPECT_LT(slim->size() * 2, full->size());  // AdamW's two moments are gone
  // The same as saving without an optimizer, byte for byte.
  auto direct = SerializeTrainCheckpoint(run.projector, nullptr, kTrainState, kModel);
  ASSERT_TRUE(direct.ok());
  EXPECT_EQ(*slim, *direct);
  auto parsed = ParseTrainCheckpoint(*slim, "slim");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->optimizer_state.empty());
  EXPECT_EQ(parsed->train_state_json, kTrainState);
  auto restored = RestoreProjector(*parsed, at::kCPU);
  ASSERT_TRUE(restored.ok());
  ExpectSameParameters(*restored, run.projector);

  auto bad = ProjectorOnlyCheckpoint("not a checkpoint", "ckpt-b");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("ckpt-b"), std::string::npos) << bad.status();
}

TEST(TrainCheckpointTest, FileLayoutIsPlainSafetensors) {
  // What Python's safetensors.safe_open sees: an 8-byte length, a JSON header whose
  // __metadata__ is a string map, tensors with dtype/shape/data_offsets.
  TrainRun run = MakeRun(LinearConfig(), OptimizerConfig(), 3);
  run.TrainSteps(0, 1);
  auto bytes = SerializeTrainCheckpoint(run.projector, run.optimizer.get(), kTrainState, kModel);
  ASSERT_TRUE(bytes.ok());
  uint64_t n = 0;
  std::memcpy(&n, bytes->data(), 8);
  auto header = nlohmann::json::parse(bytes->substr(8, n));
  EXPECT_EQ(header["__metadata__"]["format"], "llava-mnist-projector");
  EXPECT_EQ(header["__metadata__"]["version"], "1");
  EXPECT_EQ(header["__metadata__"]["model"], kModel);
  EXPECT_EQ(header["__metadata__"]["train_state"], kTrainState);
  auto config =
      nlohmann::json::parse(header["__metadata__"]["projector_config"].get<std::string>());
  EXPECT_EQ(config["type"], "linear");
  EXPECT_EQ(config["output_dim"], 8);
  EXPECT_EQ(header["projector.fc1.weight"]["dtype"], "F32");
  EXPECT_EQ(header["projector.fc1.weight"]["shape"], nlohmann::json({16, 784}));
  EXPECT_EQ(header["optimizer.fc1.bias.exp_avg_sq"]["shape"], nlohmann::json({16}));
  EXPECT_EQ(header["optimizer.step"]["dtype"], "I64");
  EXPECT_EQ(header["optimizer.step"]["shape"], nlohmann::json::array());
  EXPECT_EQ(header.size(), 1u + 2 + 4 + 1);
}

// Train N steps straight vs N/2, save, load into a fresh projector and optimizer, N/2
// more: the parameters must be bit-identical.
void CheckResume(const ProjectorConfig& config, const OptimizerConfig& opt) {
  TrainRun straight = MakeRun(config, opt, 21);
  straight.TrainSteps(0, 12);

  TrainRun first = MakeRun(config, opt, 21);
  first.TrainSteps(0, 6);
  const std::string path = testing::MakeTempDir("resume") + "/step6.safetensors";
  ASSERT_TRUE(
      SaveTrainCheckpoint(path, first.projector, first.optimizer.get(), kTrainState, kModel).ok());

  auto ckpt = LoadTrainCheckpoint(path);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  auto projector = RestoreProjector(*ckpt, at::kCPU);
  ASSERT_TRUE(projector.ok()) << projector.status();
  auto optimizer = Optimizer::Create(opt, (*projector)->NamedParameters());
  ASSERT_TRUE(optimizer.ok()) << optimizer.status();
  ASSERT_TRUE(RestoreOptimizer(*ckpt, **optimizer).ok());
  EXPECT_EQ((*optimizer)->step(), 6);
  TrainRun second{*projector, *std::move(optimizer), opt, first.schedule, 12};
  second.TrainSteps(6, 12);

  ExpectSameParameters(second.projector, straight.projector);
  // And the run did move the parameters (the comparison is not vacuous).
  TrainRun untouched = MakeRun(config, opt, 21);
  EXPECT_NE(Bytes(untouched.projector->NamedParameters()[0].second),
            Bytes(straight.projector->NamedParameters()[0].second));
}

TEST(TrainCheckpointTest, ResumeIsIdenticalAdamWMlp) {
  CheckResume(MlpConfig(), OptimizerConfig());
}

TEST(TrainCheckpointTest, ResumeIsIdenticalAdamWLinear) {
  CheckResume(LinearConfig(), OptimizerConfig());
}

TEST(TrainCheckpointTest, ResumeIsIdenticalSgdMomentum) {
  OptimizerConfig sgd;
  sgd.type = "sgd";
  sgd.momentum = 0.9;
  sgd.lr = 0.05;
  CheckResume(MlpConfig(), sgd);
}

TEST(TrainCheckpointTest, ProjectorOnlyCheckpointLoads) {
  Projector p(LinearConfig(), 4);
  const std::string path = testing::MakeTempDir("ponly") + "/final.safetensors";
  ASSERT_TRUE(SaveTrainCheckpoint(path, p, nullptr, "{}", kModel).ok());
  auto ckpt = LoadTrainCheckpoint(path);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_TRUE(ckpt->optimizer_state.empty());
  auto restored = RestoreProjector(*ckpt, at::kCPU);
  ASSERT_TRUE(restored.ok()) << restored.status();
  ExpectSameParameters(*restored, p);
  auto opt = Optimizer::Create(OptimizerConfig(), (*restored)->NamedParameters());
  absl::Status st = RestoreOptimizer(*ckpt, **opt);
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(path)));
  EXPECT_THAT(std::string(st.message()), HasSubstr("projector-only"));
}

TEST(TrainCheckpointTest, OptimizerMismatchOnResumeNamesFileAndTensor) {
  TrainRun run = MakeRun(LinearConfig(), OptimizerConfig(), 3);
  auto bytes = SerializeTrainCheckpoint(run.projector, run.optimizer.get(), "{}", kModel);
  auto ckpt = ParseTrainCheckpoint(*bytes, "adamw.safetensors");
  ASSERT_TRUE(ckpt.ok());
  OptimizerConfig sgd;
  sgd.type = "sgd";
  sgd.momentum = 0.9;
  auto opt = Optimizer::Create(sgd, run.projector->NamedParameters());
  absl::Status st = RestoreOptimizer(*ckpt, **opt);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr("adamw.safetensors"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("momentum_buffer"));
}

// ---------------------------------------------------------------------------- bad input

std::vector<NamedTensor> ProjectorTensors(const ProjectorConfig& config) {
  std::vector<NamedTensor> out;
  for (const auto& [name, shape] : ProjectorParameterShapes(config)) {
    out.push_back({"projector." + name, at::zeros(shape)});
  }
  return out;
}

std::map<std::string, std::string> Metadata(const ProjectorConfig& config) {
  return {{"format", "llava-mnist-projector"},
          {"version", "1"},
          {"projector_config", config.ToJson()},
          {"train_state", "{}"},
          {"model", kModel}};
}

absl::Status ParseError(const std::vector<NamedTensor>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  auto bytes = SerializeSafetensors(tensors, metadata);
  LM_CHECK(bytes.ok()) << bytes.status();
  return ParseTrainCheckpoint(*bytes, "bad.safetensors").status();
}

TEST(TrainCheckpointTest, BuiltByHandFromPlainSafetensorsLoads) {
  // The reference layout written by the generic writer is accepted: the format is the
  // file, not this module's writer.
  auto bytes = SerializeSafetensors(ProjectorTensors(LinearConfig()), Metadata(LinearConfig()));
  auto ckpt = ParseTrainCheckpoint(*bytes, "hand.safetensors");
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ(ckpt->projector_tensors.size(), 2u);
}

TEST(TrainCheckpointTest, MalformedMetadataErrorsNameFileAndField) {
  const ProjectorConfig c = LinearConfig();
  struct Case {
    std::function<void(std::map<std::string, std::string>&)> edit;
    const char* want;
  };
  const Case cases[] = {
      {[](auto& m) { m.erase("format"); }, "metadata field 'format' is missing"},
      {[](auto& m) { m["format"] = "pt"; },
       "metadata field 'format' is 'pt', expected 'llava-mnist-projector'"},
      {[](auto& m) { m.erase("version"); }, "metadata field 'version' is missing"},
      {[](auto& m) { m["version"] = "2"; }, "metadata field 'version' is '2'"},
      {[](auto& m) { m.erase("projector_config"); }, "'projector_config' is missing"},
      {[](auto& m) { m["projector_config"] = "{oops"; },
       "'projector_config': projector config is not valid JSON"},
      {[](auto& m) { m["projector_config"] = R"({"type":"linear"})"; },
       "'projector_config': projector config field 'output_dim' is missing"},
  };
  for (const Case& k : cases) {
    auto metadata = Metadata(c);
    k.edit(metadata);
    absl::Status st = ParseError(ProjectorTensors(c), metadata);
    ASSERT_FALSE(st.ok()) << k.want;
    EXPECT_THAT(std::string(st.message()), HasSubstr("bad.safetensors")) << k.want;
    EXPECT_THAT(std::string(st.message()), HasSubstr(k.want));
  }
  // No metadata at all (a plain model file).
  absl::Status none = ParseError(ProjectorTensors(c), {});
  EXPECT_THAT(std::string(none.message()), HasSubstr("'format' is missing"));
}

TEST(TrainCheckpointTest, MalformedTensorsErrorsNameFileAndTensor) {
  const ProjectorConfig c = MlpConfig();
  auto tensors = ProjectorTensors(c);

  auto missing = tensors;
  missing.erase(missing.begin() + 3);  // projector.fc2.bias
  absl::Status st = ParseError(missing, Metadata(c));
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("bad.safetensors: tensor 'projector.fc2.bias' is missing"));

  auto wrong_shape = tensors;
  wrong_shape[0].tensor = at::zeros({12, 783});
  st = ParseError(wrong_shape, Metadata(c));
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("tensor 'projector.fc1.weight' has shape [12, 783], expected [12, 784]"));

  // The config says linear, the tensors are an MLP's.
  st = ParseError(tensors, Metadata(LinearConfig()));
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("'projector.fc1.bias' has shape [12], expected [16]"));

  auto extra = tensors;
  extra.push_back({"vision_tower.weight", at::zeros({2})});
  st = ParseError(extra, Metadata(c));
  EXPECT_THAT(std::string(st.message()), HasSubstr("tensor 'vision_tower.weight' is not part"));

  auto int_weights = tensors;
  int_weights[1].tensor = at::zeros({12}, at::kInt);
  st = ParseError(int_weights, Metadata(c));
  EXPECT_THAT(std::string(st.message()), HasSubstr("'projector.fc1.bias' has dtype I32"));

  // Half-precision weights (e.g. written from Python) load as float32.
  auto bf16 = tensors;
  bf16[0].tensor = at::ones({12, 784}, at::kBFloat16);
  auto bytes = SerializeSafetensors(bf16, Metadata(c));
  auto ckpt = ParseTrainCheckpoint(*bytes, "bf16.safetensors");
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ(ckpt->projector_tensors[0].tensor.scalar_type(), at::kFloat);
  EXPECT_EQ(ckpt->projector_tensors[0].tensor.sum().item<double>(), 12.0 * 784);
}

TEST(TrainCheckpointTest, MissingTruncatedAndGarbageFiles) {
  const std::string dir = testing::MakeTempDir("badfile");
  auto missing = LoadTrainCheckpoint(dir + "/nope.safetensors");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr(dir + "/nope.safetensors"));

  TrainRun run = MakeRun(LinearConfig(), OptimizerConfig(), 3);
  auto bytes = SerializeTrainCheckpoint(run.projector, run.optimizer.get(), "{}", kModel);
  ASSERT_TRUE(bytes.ok());
  for (size_t keep : {size_t{0}, size_t{5}, size_t{100}, bytes->size() - 1}) {
    const std::string path = dir + "/truncated.safetensors";
    ASSERT_TRUE(WriteFileAtomic(path, bytes->substr(0, keep)).ok());
    auto r = LoadTrainCheckpoint(path);
    ASSERT_FALSE(r.ok()) << keep;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(path)) << keep;
  }
  const std::string garbage = dir + "/garbage.safetensors";
  ASSERT_TRUE(WriteFileAtomic(garbage, std::string(4096, '\x7f')).ok());
  auto r = LoadTrainCheckpoint(garbage);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(garbage));
  auto text = ParseTrainCheckpoint("{\"not\": \"safetensors\"}", "rpc:peer");
  ASSERT_FALSE(text.ok());
  EXPECT_THAT(std::string(text.status().message()), HasSubstr("rpc:peer"));
  // A directory is not a checkpoint.
  auto d = LoadTrainCheckpoint(dir);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()), HasSubstr(dir));
}

TEST(TrainCheckpointTest, RestoreProjectorChecksHandMadeCheckpoints) {
  TrainCheckpoint ckpt;
  ckpt.projector_config = LinearConfig();
  ckpt.source = "made.safetensors";
  ckpt.projector_tensors = {{"fc1.weight", at::zeros({16, 784})}, {"fc1.bias", at::zeros({15})}};
  auto r = RestoreProjector(ckpt, at::kCPU);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("made.safetensors: tensor 'fc1.bias' has shape [15], expected [16]"));
  ckpt.projector_tensors.pop_back();
  EXPECT_THAT(std::string(RestoreProjector(ckpt, at::kCPU).status().message()),
              HasSubstr("1 projector tensors, the config needs 2"));
  ckpt.projector_tensors = {{"fc1.bias", at::zeros({16})}, {"fc1.weight", at::zeros({16, 784})}};
  EXPECT_THAT(std::string(RestoreProjector(ckpt, at::kCPU).status().message()),
              HasSubstr("'fc1.bias' found where 'fc1.weight' belongs"));
}

TEST(TrainCheckpointTest, ProjectorMustFitTheModel) {
  EXPECT_TRUE(CheckProjectorFitsModel(LinearConfig(), 8, "a.safetensors").ok());
  absl::Status st = CheckProjectorFitsModel(LinearConfig(), 4096, "a.safetensors");
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("a.safetensors: projector output_dim 8 does not match the model's "
                        "hidden_size 4096"));
  // RestoreProjectorForModel checks the same, naming the checkpoint's source.
  TrainCheckpoint ckpt;
  ckpt.projector_config = LinearConfig();
  ckpt.source = "b.safetensors";
  ckpt.projector_tensors = {{"fc1.weight", at::ones({16, 784})}, {"fc1.bias", at::zeros({16})}};
  auto wrong = RestoreProjectorForModel(ckpt, 4096, at::kCPU);
  ASSERT_FALSE(wrong.ok());
  EXPECT_THAT(std::string(wrong.status().message()),
              HasSubstr("b.safetensors: projector output_dim 8 does not match"));
  auto right = RestoreProjectorForModel(ckpt, 8, at::kCPU);
  ASSERT_TRUE(right.ok()) << right.status();
}

// ---------------------------------------------------------------------------- failed saves

class FailedSaveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("failsave");
    path_ = dir_ + "/ckpt.safetensors";
    run_ = std::make_unique<TrainRun>(MakeRun(MlpConfig(), OptimizerConfig(), 5));
    ASSERT_TRUE(SaveTrainCheckpoint(path_, run_->projector, nullptr, "{\"step\":1}", kModel).ok());
    before_ = *ReadFile(path_);
    run_->TrainSteps(0, 2);  // the next save holds other values and optimizer state
  }
  void ExpectPreviousIntact() {
    auto now = ReadFile(path_);
    ASSERT_TRUE(now.ok()) << now.status();
    EXPECT_EQ(*now, before_);
    EXPECT_TRUE(LoadTrainCheckpoint(path_).ok());
    // No temp files left behind either.
    int entries = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      (void)e;
      ++entries;
    }
    EXPECT_EQ(entries, 1);
  }
  std::string dir_, path_, before_;
  std::unique_ptr<TrainRun> run_;
};

TEST_F(FailedSaveTest, WriteFailingMidwayKeepsPreviousFile) {
  // A file-size limit below the new checkpoint makes write() fail part-way (EFBIG), as
  // a full disk would; it binds root too.
  struct rlimit old_limit;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  auto old_handler = signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old_limit;
  small.rlim_cur = before_.size() / 2;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  absl::Status st =
      SaveTrainCheckpoint(path_, run_->projector, run_->optimizer.get(), "{\"step\":3}", kModel);
  setrlimit(RLIMIT_FSIZE, &old_limit);
  signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr(path_));
  EXPECT_THAT(std::string(st.message()), HasSubstr("File too large"));  // EFBIG from write
  ExpectPreviousIntact();
}

TEST_F(FailedSaveTest, UnserializableMetadataKeepsPreviousFile) {
  // train_state that is not UTF-8 cannot go into the JSON header.
  absl::Status st = SaveTrainCheckpoint(path_, run_->projector, run_->optimizer.get(),
                                        std::string("{\"x\":\"\xff\xfe\"}"), kModel);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr(path_));
  ExpectPreviousIntact();
}

TEST(TrainCheckpointTest, SavingOntoADirectoryFailsAndKeepsIt) {
  const std::string dir = testing::MakeTempDir("ontodir");
  const std::string target = dir + "/ckpt.safetensors";
  ASSERT_TRUE(MakeDirs(target).ok());
  ASSERT_TRUE(WriteFileAtomic(target + "/keep.txt", "precious").ok());
  Projector p(LinearConfig(), 1);
  absl::Status st = SaveTrainCheckpoint(target, p, nullptr, "{}", kModel);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr(target));
  EXPECT_EQ(*ReadFile(target + "/keep.txt"), "precious");
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);  // no temp file left next to it
}

// The whole trip through a GPU where there is one: restore onto CUDA, load the optimizer
// state there, save again: the file is byte-identical. Without CUDA, asking for it is a
// Status, not a crash.
TEST(TrainCheckpointTest, RoundTripThroughCudaOrCleanError) {
  TrainRun run = MakeRun(MlpConfig(), OptimizerConfig(), 3);
  run.TrainSteps(0, 3);
  auto bytes = SerializeTrainCheckpoint(run.projector, run.optimizer.get(), kTrainState, kModel);
  ASSERT_TRUE(bytes.ok());
  auto ckpt = ParseTrainCheckpoint(*bytes, "cpu.safetensors");
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  auto projector = RestoreProjector(*ckpt, at::Device(at::kCUDA, 0));
  if (!at::hasCUDA()) {
    EXPECT_FALSE(projector.ok());
    return;
  }
  ASSERT_TRUE(projector.ok()) << projector.status();
  EXPECT_TRUE((*projector)->NamedParameters()[0].second.is_cuda());
  auto opt = Optimizer::Create(OptimizerConfig(), (*projector)->NamedParameters());
  ASSERT_TRUE(RestoreOptimizer(*ckpt, **opt).ok());
  EXPECT_TRUE((*opt)->StateTensors()[0].tensor.is_cuda());
  auto again = SerializeTrainCheckpoint(*projector, opt->get(), kTrainState, kModel);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *bytes);
}

}  // namespace
}  // namespace llava
