// The dynamic loss scale: backing off on overflow, growing after clean steps, failing
// instead of skipping forever, and its state surviving a checkpoint.
#include "worker/loss_scaler.h"

#include <gtest/gtest.h>

namespace llava {
namespace {

LossScaleConfig On() {
  LossScaleConfig c;
  c.enabled = true;
  c.initial_scale = 1024;
  c.growth_interval = 3;
  c.min_scale = 64;
  return c;
}

TEST(LossScalerTest, DisabledScalesByOneAndNeverFails) {
  LossScaler s(LossScaleConfig{});
  EXPECT_FALSE(s.enabled());
  EXPECT_EQ(s.scale(), 1.0);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(s.Update(false).ok());
  EXPECT_EQ(s.scale(), 1.0);
  EXPECT_EQ(s.skipped_steps(), 0);
}

TEST(LossScalerTest, BacksOffOnOverflowAndGrowsAfterCleanSteps) {
  LossScaler s(On());
  EXPECT_EQ(s.scale(), 1024);
  ASSERT_TRUE(s.Update(false).ok());
  EXPECT_EQ(s.scale(), 512);
  EXPECT_EQ(s.skipped_steps(), 1);
  ASSERT_TRUE(s.Update(true).ok());
  ASSERT_TRUE(s.Update(true).ok());
  EXPECT_EQ(s.scale(), 512);  // two clean steps: not yet
  ASSERT_TRUE(s.Update(true).ok());
  EXPECT_EQ(s.scale(), 1024);
  // An overflow restarts the count of clean steps.
  ASSERT_TRUE(s.Update(true).ok());
  ASSERT_TRUE(s.Update(true).ok());
  ASSERT_TRUE(s.Update(false).ok());
  EXPECT_EQ(s.scale(), 512);
  ASSERT_TRUE(s.Update(true).ok());
  ASSERT_TRUE(s.Update(true).ok());
  EXPECT_EQ(s.scale(), 512);
}

TEST(LossScalerTest, FailsOnceTheScaleWouldFallBelowTheMinimum) {
  LossScaler s(On());  // 1024 -> 512 -> 256 -> 128 -> 64, then under min_scale 64
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(s.Update(false).ok()) << i;
  EXPECT_EQ(s.scale(), 64);
  absl::Status st = s.Update(false);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("bfloat16"), std::string::npos) << st;
  EXPECT_NE(st.message().find("5 steps skipped"), std::string::npos) << st;
}

TEST(LossScalerTest, StateRoundTripsAndBadStateIsNamed) {
  LossScaler a(On());
  ASSERT_TRUE(a.Update(false).ok());
  ASSERT_TRUE(a.Update(true).ok());
  LossScaler b(On());
  ASSERT_TRUE(b.Restore(a.ToJson(), "ckpt.safetensors").ok());
  EXPECT_EQ(b.scale(), 512);
  // Both continue alike: one more clean step each leaves 512, the next grows to 1024.
  for (LossScaler* s : {&a, &b}) {
    ASSERT_TRUE(s->Update(true).ok());
    EXPECT_EQ(s->scale(), 512);
    ASSERT_TRUE(s->Update(true).ok());
    EXPECT_EQ(s->scale(), 1024);
  }
  for (const char* bad : {R"({"scale": -1, "good_steps": 0})", R"({"scale": 8})",
                          R"({"scale": "8", "good_steps": 0})", R"([1, 2])"}) {
    absl::Status st = b.Restore(nlohmann::json::parse(bad), "ckpt.safetensors");
    ASSERT_FALSE(st.ok()) << bad;
    EXPECT_NE(st.message().find("ckpt.safetensors"), std::string::npos) << st;
    EXPECT_NE(st.message().find("loss_scale"), std::string::npos) << st;
  }
  EXPECT_EQ(b.scale(), 1024);  // a refused state changes nothing
}

TEST(LossScalerTest, ConfigIsValidated) {
  EXPECT_TRUE(LossScaleConfig{}.Validate().ok());
  auto with = [](auto set) {
    LossScaleConfig c;
    set(c);
    return c.Validate();
  };
  EXPECT_FALSE(with([](LossScaleConfig& c) { c.initial_scale = 0; }).ok());
  EXPECT_FALSE(with([](LossScaleConfig& c) { c.growth_factor = 1; }).ok());
  EXPECT_FALSE(with([](LossScaleConfig& c) { c.backoff_factor = 1; }).ok());
  EXPECT_FALSE(with([](LossScaleConfig& c) { c.growth_interval = 0; }).ok());
  EXPECT_FALSE(with([](LossScaleConfig& c) { c.min_scale = 1e9; }).ok());
  absl::Status st = with([](LossScaleConfig& c) { c.backoff_factor = 2; });
  EXPECT_NE(st.message().find("backoff_factor"), std::string::npos) << st;
}

}  // namespace
}  // namespace llava
