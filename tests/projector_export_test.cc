// Export (llava-mnist export): every format and projector kind read back with our
// safetensors reader (names, F32, shapes and values equal to the checkpoint's), the hf
// format refusing what transformers' projector cannot hold, and an independent Python
// parser (tests/python/export_check.py, standard library only) recomputing the projector's
// output for real test digits from the exported files to within 1e-6 of the C++
// projector's -- and failing when one weight is changed.
#include "common/projector_export.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/mnist_idx.h"
#include "tests/test_util.h"
#include "tests/status_matchers.h"

namespace llava {
namespace {

using ::llava::testing::StatusIs;

using ::testing::HasSubstr;

ProjectorConfig Config(ProjectorType type, int64_t hidden, int64_t tokens) {
  ProjectorConfig c;
  c.type = type;
  c.output_dim = 16;
  c.hidden_dim = hidden;
  c.image_tokens = tokens;
  return c;
}

// A checkpoint file of a seeded projector, loaded back as the exporter sees it.
TrainCheckpoint MakeCheckpoint(const ProjectorConfig& config, const std::string& tag) {
  Projector projector(config, /*seed=*/7);
  const std::string path = testing::MakeTempDir(tag) + "/ckpt.safetensors";
  EXPECT_TRUE(SaveTrainCheckpoint(path, projector, nullptr, "{\"step\":0}", "test-llm").ok());
  auto loaded = LoadTrainCheckpoint(path);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  return *loaded;
}

// Exported name -> our parameter name, per format and kind.
std::map<std::string, std::string> ExpectedNames(ExportFormat format, ProjectorType type) {
  if (format == ExportFormat::kHf) {
    std::map<std::string, std::string> m = {{"multi_modal_projector.linear_1.weight", "fc1.weight"},
                                            {"multi_modal_projector.linear_1.bias", "fc1.bias"}};
    if (type == ProjectorType::kMlp2xGelu) {
      m["multi_modal_projector.linear_2.weight"] = "fc2.weight";
      m["multi_modal_projector.linear_2.bias"] = "fc2.bias";
    }
    return m;
  }
  if (type == ProjectorType::kLinear) {
    return {{"model.mm_projector.weight", "fc1.weight"}, {"model.mm_projector.bias", "fc1.bias"}};
  }
  return {{"model.mm_projector.0.weight", "fc1.weight"},
          {"model.mm_projector.0.bias", "fc1.bias"},
          {"model.mm_projector.2.weight", "fc2.weight"},
          {"model.mm_projector.2.bias", "fc2.bias"}};
}

struct Case {
  ExportFormat format;
  ProjectorConfig config;
  std::string name;
};

std::vector<Case> Cases() {
  return {
      {ExportFormat::kHf, Config(ProjectorType::kLinear, 0, 1), "hf_linear"},
      {ExportFormat::kHf, Config(ProjectorType::kLinear, 0, 2), "hf_linear_k2"},
      {ExportFormat::kHf, Config(ProjectorType::kMlp2xGelu, 0, 1), "hf_mlp"},
      {ExportFormat::kLlava, Config(ProjectorType::kLinear, 0, 1), "llava_linear"},
      {ExportFormat::kLlava, Config(ProjectorType::kMlp2xGelu, 24, 2), "llava_mlp_h24_k2"},
  };
}

// Writes the export of `c` with reference embeddings of the first 5 test digits.
std::string ExportWithReference(const Case& c, const TrainCheckpoint& checkpoint) {
  const std::string dir = testing::MakeTempDir("export_" + c.name);
  auto exported = ExportProjector(checkpoint, c.format);
  EXPECT_TRUE(exported.ok()) << exported.status();
  EXPECT_TRUE(WriteProjectorExport(*exported, dir).ok());
  auto test = LoadMnistSplit(testing::SourceDir() + "/data/mnist", "test", 5);
  EXPECT_TRUE(test.ok()) << test.status();
  EXPECT_TRUE(WriteReferenceEmbeddings(checkpoint, ImagesToTensor(*test, 0, 5),
                                       LabelsToTensor(*test, 0, 5), dir + "/" + kReferenceFile)
                  .ok());
  return dir;
}

int RunPythonCheck(const std::string& dir) {
  const std::string command =
      "/usr/bin/python3 " + testing::SourceDir() + "/tests/python/export_check.py " + dir;
  const int rc = std::system(command.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

TEST(ProjectorExportTest, RoundTripKeepsNamesShapesAndValues) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    const TrainCheckpoint checkpoint = MakeCheckpoint(c.config, c.name);
    auto exported = ExportProjector(checkpoint, c.format);
    ASSERT_TRUE(exported.ok()) << exported.status();
    const std::string dir = testing::MakeTempDir("roundtrip_" + c.name);
    ASSERT_TRUE(WriteProjectorExport(*exported, dir).ok());
    auto file = SafetensorsFile::Open(dir + "/" + exported->weights_file);
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_EQ((*file)->metadata().at("format"), "pt");
    const auto names = ExpectedNames(c.format, c.config.type);
    ASSERT_EQ((*file)->tensors().size(), names.size());
    std::map<std::string, at::Tensor> ours;
    for (const NamedTensor& t : checkpoint.projector_tensors) ours[t.name] = t.tensor;
    for (const auto& [exported_name, our_name] : names) {
      SCOPED_TRACE(exported_name);
      const StTensorInfo* info = (*file)->Find(exported_name);
      ASSERT_NE(info, nullptr);
      EXPECT_EQ(info->dtype, StDtype::kF32);
      auto t = (*file)->Load(exported_name);
      ASSERT_TRUE(t.ok());
      EXPECT_EQ(t->sizes(), ours.at(our_name).sizes());
      EXPECT_TRUE(at::equal(*t, ours.at(our_name)));
    }
    auto config = nlohmann::json::parse(*ReadFile(dir + "/config.json"));
    EXPECT_EQ(config["llava_mnist"]["image_mean"], c.config.input_mean);
    EXPECT_EQ(config["llava_mnist"]["image_std"], c.config.input_std);
    EXPECT_THAT(config["llava_mnist"]["input"].get<std::string>(), HasSubstr("784 raw pixels"));
    if (c.format == ExportFormat::kHf) {
      EXPECT_EQ(config["vision_config"]["hidden_size"], 784);
      EXPECT_EQ(config["projector_hidden_act"], "gelu");
    } else {
      EXPECT_EQ(config["mm_hidden_size"], 784);
      EXPECT_EQ(config["mm_projector_type"], ProjectorTypeName(c.config.type));
    }
    EXPECT_THAT(*ReadFile(dir + "/README.md"), HasSubstr("load_file(\"" + exported->weights_file));
  }
}

TEST(ProjectorExportTest, HfRefusesWhatLlavaMultiModalProjectorCannotHold) {
  for (const ProjectorConfig& config :
       {Config(ProjectorType::kMlp2xGelu, 24, 1), Config(ProjectorType::kMlp2xGelu, 0, 2)}) {
    const TrainCheckpoint checkpoint = MakeCheckpoint(config, "hf_refused");
    auto exported = ExportProjector(checkpoint, ExportFormat::kHf);
    ASSERT_FALSE(exported.ok());
    EXPECT_THAT(exported,
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--format llava")));
    EXPECT_TRUE(ExportProjector(checkpoint, ExportFormat::kLlava).ok());
  }
  EXPECT_FALSE(ParseExportFormat("onnx").ok());
}

TEST(ProjectorExportTest, IndependentPythonParserRecomputesTheEmbeddings) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    const TrainCheckpoint checkpoint = MakeCheckpoint(c.config, c.name);
    const std::string dir = ExportWithReference(c, checkpoint);
    EXPECT_EQ(RunPythonCheck(dir), 0);
  }
}

TEST(ProjectorExportTest, PythonCheckFailsWhenOneWeightDiffers) {
  const Case c = Cases()[2];  // hf mlp2x_gelu
  TrainCheckpoint checkpoint = MakeCheckpoint(c.config, "tampered");
  const std::string dir = ExportWithReference(c, checkpoint);
  auto exported = ExportProjector(checkpoint, c.format);
  ASSERT_TRUE(exported.ok());
  exported->tensors[0].tensor[0][0] += 0.01;  // linear_1.weight, while the reference stays
  ASSERT_TRUE(WriteProjectorExport(*exported, dir).ok());
  EXPECT_EQ(RunPythonCheck(dir), 1);
}

}  // namespace
}  // namespace llava
