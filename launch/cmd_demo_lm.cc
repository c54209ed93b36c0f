#include "launch/cmd_demo_lm.h"

#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "launch/flags_common.h"
#include "worker/demo_lm.h"

// Prefixed with demo_: flags are process-global, and other subcommands (train) are
// likely to define their own --steps, --lr, --batch_size, --out.
ABSL_FLAG(std::string, demo_out, "data/models/demo-lm",
          "make-demo-lm: output checkpoint directory");
ABSL_FLAG(int64_t, demo_steps, llava::DemoLmOptions().steps,
          "make-demo-lm: maximum training steps");
ABSL_FLAG(int64_t, demo_batch_size, llava::DemoLmOptions().batch_size,
          "make-demo-lm: dialogues per step");
ABSL_FLAG(double, demo_lr, llava::DemoLmOptions().lr, "make-demo-lm: AdamW learning rate");
ABSL_FLAG(int64_t, demo_hidden_size, llava::DemoLmOptions().hidden_size,
          "make-demo-lm: model width");
ABSL_FLAG(double, demo_image_noise, llava::DemoLmOptions().image_noise,
          "make-demo-lm: noise on the image-slot embedding, fraction of its RMS");
ABSL_FLAG(int32_t, demo_threads, 0, "make-demo-lm: libtorch threads (0 = all cores)");
ABSL_FLAG(bool, demo_force, false,
          "make-demo-lm: rebuild even if --demo_out already holds a demo LM");

namespace llava {

absl::Status RunMakeDemoLm(const std::vector<char*>& args) {
  if (args.size() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("make-demo-lm takes no positional arguments, got '", args[1], "'"));
  }
  DemoLmOptions o;
  o.tokenizer_path = absl::GetFlag(FLAGS_tokenizer);
  o.out_dir = absl::GetFlag(FLAGS_demo_out);
  o.steps = absl::GetFlag(FLAGS_demo_steps);
  o.batch_size = absl::GetFlag(FLAGS_demo_batch_size);
  o.lr = absl::GetFlag(FLAGS_demo_lr);
  o.hidden_size = absl::GetFlag(FLAGS_demo_hidden_size);
  o.image_noise = absl::GetFlag(FLAGS_demo_image_noise);
  o.num_threads = absl::GetFlag(FLAGS_demo_threads);
  o.seed = absl::GetFlag(FLAGS_seed);
  LM_RETURN_IF_ERROR(o.Validate());
  if (DemoLmExists(o.out_dir) && !absl::GetFlag(FLAGS_demo_force)) {
    std::cout << "demo LM already built in " << o.out_dir << " (--demo_force rebuilds)\n";
    return absl::OkStatus();
  }
  LM_ASSIGN_OR_RETURN(DemoLmResult r, BuildDemoLm(o));
  std::cout << "demo LM written to " << o.out_dir << ": " << r.steps << " steps, answer loss "
            << r.initial_answer_loss << " -> " << r.final_answer_loss
            << ", held-out phrasings answered exactly: " << r.digit_accuracy << ", " << r.seconds
            << " s\n";
  return absl::OkStatus();
}

}  // namespace llava
