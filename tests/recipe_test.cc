// Recipes (recipes/*.json): each parses and validates; `train --recipe` gives the
// TrainConfig of the equivalent flags, and flags given override the recipe; launch's
// built-in recipe is recipes/main.json.
#include "launch/recipe.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "common/file_util.h"
#include "common/job_spec.h"
#include "launch/cluster_flags.h"
#include "launch/flags_common.h"
#include "launch/main_recipe.h"
#include "launch/vlm_setup.h"
#include "tests/test_util.h"

ABSL_DECLARE_FLAG(std::string, projector);
ABSL_DECLARE_FLAG(int64_t, projector_hidden);
ABSL_DECLARE_FLAG(double, lr);
ABSL_DECLARE_FLAG(double, weight_decay);
ABSL_DECLARE_FLAG(std::string, schedule);
ABSL_DECLARE_FLAG(int64_t, batch_size);
ABSL_DECLARE_FLAG(int64_t, epochs);
ABSL_DECLARE_FLAG(int64_t, train_digits);
ABSL_DECLARE_FLAG(int64_t, checkpoint_every);

namespace llava {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const char* kFivePhrasings =
    "What digit is this?|Which digit is shown?|Name the digit.|What number is shown here?|Identify "
    "the digit.";

class RecipeTest : public ::testing::Test {
 protected:
  // Every flag back at its default after each test.
  absl::FlagSaver saver_;
  static std::string Recipe(const std::string& name) {
    return testing::SourceDir() + "/recipes/" + name;
  }
};

// Every field that decides how a run trains.
void ExpectSameConfig(const TrainConfig& a, const TrainConfig& b) {
  EXPECT_EQ(a.projector.ToJson(), b.projector.ToJson());
  EXPECT_EQ(a.optimizer.type, b.optimizer.type);
  EXPECT_EQ(a.optimizer.lr, b.optimizer.lr);
  EXPECT_EQ(a.optimizer.weight_decay, b.optimizer.weight_decay);
  EXPECT_EQ(a.schedule.type, b.schedule.type);
  EXPECT_EQ(a.schedule.warmup_ratio, b.schedule.warmup_ratio);
  EXPECT_EQ(TrainState().ToJson(a), TrainState().ToJson(b));  // batch, epochs, digits, seed, ...
}

TEST_F(RecipeTest, EveryRecipeParsesAndValidates) {
  for (const char* name : {"seed.json", "quick.json", "main.json", "best.json"}) {
    absl::SetFlag(&FLAGS_recipe, Recipe(name));
    auto spec = TrainRunSpecFromFlags();
    ASSERT_TRUE(spec.ok()) << name << ": " << spec.status();
    auto config = OneProcessTrainConfig(*spec, "synthetic:tiny", 64);
    EXPECT_TRUE(config.ok()) << name << ": " << config.status();
    EXPECT_TRUE(PromptFromSpec(*spec).ok()) << name;
  }
}

TEST_F(RecipeTest, SeedIsThePublishedExperiment) {
  absl::SetFlag(&FLAGS_recipe, Recipe("seed.json"));
  auto spec = TrainRunSpecFromFlags();
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->projector(), "linear");
  EXPECT_EQ(spec->train_digits(), 1000);
  EXPECT_EQ(spec->batch_size(), 1);
  EXPECT_EQ(spec->lr(), 1e-3);
  EXPECT_EQ(spec->epochs(), 1);
  // The experiment's settings are also `train`'s defaults: no recipe, the same config.
  auto with = OneProcessTrainConfig(*spec, "m", 64);
  absl::SetFlag(&FLAGS_recipe, "");
  auto defaults = TrainRunSpecFromFlags();
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  auto without = OneProcessTrainConfig(*defaults, "m", 64);
  ASSERT_TRUE(with.ok() && without.ok());
  ExpectSameConfig(*with, *without);
}

TEST_F(RecipeTest, BestRecipeEqualsItsFlags) {
  absl::SetFlag(&FLAGS_recipe, Recipe("best.json"));
  auto from_recipe = TrainRunSpecFromFlags();
  ASSERT_TRUE(from_recipe.ok()) << from_recipe.status();

  absl::SetFlag(&FLAGS_recipe, "");
  absl::SetFlag(&FLAGS_projector, "conv_mlp");
  absl::SetFlag(&FLAGS_projector_hidden, 1024);
  absl::SetFlag(&FLAGS_lr, 2e-3);
  absl::SetFlag(&FLAGS_weight_decay, 0.1);
  absl::SetFlag(&FLAGS_schedule, "cosine");
  absl::SetFlag(&FLAGS_batch_size, 32);
  absl::SetFlag(&FLAGS_epochs, 15);
  absl::SetFlag(&FLAGS_train_digits, -1);
  absl::SetFlag(&FLAGS_augment_shift, 2.0);
  absl::SetFlag(&FLAGS_augment_rotate, 10.0);
  absl::SetFlag(&FLAGS_augment_scale, 0.1);
  absl::SetFlag(&FLAGS_questions, kFivePhrasings);
  auto from_flags = TrainRunSpecFromFlags();
  ASSERT_TRUE(from_flags.ok()) << from_flags.status();

  auto a = OneProcessTrainConfig(*from_recipe, "m", 64);
  auto b = OneProcessTrainConfig(*from_flags, "m", 64);
  ASSERT_TRUE(a.ok() && b.ok());
  ExpectSameConfig(*a, *b);
  EXPECT_EQ(a->batch_size, 32);
  EXPECT_EQ(a->projector.hidden_dim, 1024);
  EXPECT_EQ(a->projector.type, ProjectorType::kConvMlp);
  EXPECT_EQ(a->augment.shift_px, 2.0);
  auto pa = PromptFromSpec(*from_recipe);
  auto pb = PromptFromSpec(*from_flags);
  ASSERT_TRUE(pa.ok() && pb.ok());
  EXPECT_EQ(pa->questions, pb->questions);
  EXPECT_EQ(pa->questions.size(), 5u);
  EXPECT_EQ(pa->answer_templates, pb->answer_templates);
}

TEST_F(RecipeTest, FlagsGivenOverrideTheRecipe) {
  absl::SetFlag(&FLAGS_recipe, Recipe("best.json"));
  absl::SetFlag(&FLAGS_lr, 5e-4);
  absl::SetFlag(&FLAGS_epochs, 2);
  absl::SetFlag(&FLAGS_checkpoint_every, 25);
  auto spec = TrainRunSpecFromFlags();
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->lr(), 5e-4);
  EXPECT_EQ(spec->epochs(), 2);
  EXPECT_EQ(spec->checkpoint_every_steps(), 25);
  EXPECT_EQ(spec->weight_decay(), 0.1);  // the recipe's, not the flag's default
  EXPECT_EQ(spec->batch_size(), 32);
  EXPECT_EQ(spec->augment_shift(), 2.0);  // the recipe's, no flag given
}

TEST_F(RecipeTest, AugmentAndConvProjectorFlagsReachTheTrainer) {
  absl::SetFlag(&FLAGS_recipe, Recipe("quick.json"));
  {
    auto plain = TrainRunSpecFromFlags();
    ASSERT_TRUE(plain.ok()) << plain.status();
    EXPECT_FALSE(plain->has_augment_shift());  // off unless a recipe or flag asks for it
  }
  absl::SetFlag(&FLAGS_projector, "conv_mlp");
  absl::SetFlag(&FLAGS_projector_hidden, 256);
  absl::SetFlag(&FLAGS_augment_shift, 2.0);
  absl::SetFlag(&FLAGS_augment_rotate, 10.0);
  absl::SetFlag(&FLAGS_augment_scale, 0.1);
  auto spec = TrainRunSpecFromFlags();
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->projector(), "conv_mlp");
  EXPECT_EQ(spec->augment_shift(), 2.0);
  EXPECT_EQ(spec->projector_hidden(), 256);
  auto config = OneProcessTrainConfig(*spec, "m", 64);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->projector.type, ProjectorType::kConvMlp);
  EXPECT_EQ(config->projector.hidden_dim, 256);
  EXPECT_EQ(config->augment.shift_px, 2.0);
  EXPECT_EQ(config->augment.rotate_deg, 10.0);
  EXPECT_EQ(config->augment.scale, 0.1);
  absl::SetFlag(&FLAGS_augment_rotate, 200.0);
  auto bad = TrainRunSpecFromFlags();
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("augment rotate"), std::string::npos);
}

TEST_F(RecipeTest, SeveralRanksRunAsMoreForwardPassesPerStep) {
  absl::SetFlag(&FLAGS_recipe, Recipe("main.json"));
  auto spec = TrainRunSpecFromFlags();
  ASSERT_TRUE(spec.ok()) << spec.status();
  spec->set_world_size(2);  // launch --workers 2
  auto c = OneProcessTrainConfig(*spec, "m", 64);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->world_size, 1);
  EXPECT_EQ(c->batch_size, 16);
  EXPECT_EQ(c->global_batch(), 32);
}

TEST_F(RecipeTest, LaunchBuiltInIsMainJson) {
  auto file = ReadFile(Recipe("main.json"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(std::string(kMainRecipeJson), *file) << "rebuild: the compiled-in recipe is stale";
  absl::SetFlag(&FLAGS_recipe, "");
  auto json = RecipeJsonFromFlags(kMainRecipeJson);
  ASSERT_TRUE(json.ok());
  auto spec = TrainSpecFromFlags(*json);
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_TRUE(ResolveTrainSpec(&*spec).ok());
  EXPECT_EQ(spec->projector(), "conv_mlp");
  EXPECT_EQ(spec->projector_hidden(), 1024);
  EXPECT_EQ(spec->batch_size(), 16);
  EXPECT_EQ(spec->epochs(), 3);
  EXPECT_EQ(spec->augment_shift(), 2.0);
  EXPECT_EQ(spec->train_digits(), 9000);
  EXPECT_EQ(spec->checkpoint_every_steps(), 50);
  EXPECT_EQ(spec->questions_size(), 5);
}

TEST_F(RecipeTest, BadRecipesNameTheFile) {
  const std::string dir = testing::MakeTempDir("recipes");
  ASSERT_TRUE(WriteFileAtomic(dir + "/typo.json", R"({"projektor": "linear"})").ok());
  absl::SetFlag(&FLAGS_recipe, dir + "/typo.json");
  auto spec = TrainRunSpecFromFlags();
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr(dir + "/typo.json"));

  ASSERT_TRUE(WriteFileAtomic(dir + "/bad.json", R"({"batchSize": 0})").ok());
  absl::SetFlag(&FLAGS_recipe, dir + "/bad.json");
  spec = TrainRunSpecFromFlags();
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr("batch_size"));

  absl::SetFlag(&FLAGS_recipe, dir + "/missing.json");
  spec = TrainRunSpecFromFlags();
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr("missing.json"));
}

}  // namespace
}  // namespace llava
