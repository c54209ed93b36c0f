#include "launch/cmd_vlm.h"

#include <chrono>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/augment.h"
#include "common/elapsed.h"
#include "common/eval_report.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/loss_curve.h"
#include "common/job_spec.h"
#include "common/png_image.h"
#include "common/run_scalars.h"
#include "common/tensorboard_events.h"
#include "common/status_macros.h"
#include "common/train_checkpoint.h"
#include "launch/flags_common.h"
#include "launch/job_flags.h"
#include "launch/progress.h"
#include "launch/recipe.h"
#include "launch/vlm_setup.h"
#include "worker/evaluator.h"
#include "worker/trainer.h"

ABSL_FLAG(bool, eval_after, true, "train: evaluate on the test digits when training ends");
ABSL_FLAG(std::string, eval_questions, "What digit is this?|What is this number?",
          "train: questions for the evaluation after training, separated by '|'");
ABSL_FLAG(std::string, out_dir, llava::GetEnvOr("LLAVA_OUT_DIR", "runs/latest"),
          "train: directory for checkpoints, loss.csv and loss.svg");
ABSL_FLAG(std::string, resume, "", "train: continue from this checkpoint");
ABSL_FLAG(std::string, images, "", "eval/ask: IDX images file instead of --data_dir's test split");
ABSL_FLAG(std::string, labels, "", "eval: IDX labels file to go with --images");
ABSL_FLAG(std::string, report, "",
          "eval: write the report as JSON here (default: next to the checkpoint)");
ABSL_FLAG(std::string, image, "", "ask: a PNG of a digit (any size; converted as MNIST)");
ABSL_FLAG(int64_t, index, -1,
          "ask: instead of --image, this index into --images (or the test split)");
ABSL_FLAG(std::string, question, "What digit is this?", "ask: the question");
ABSL_FLAG(bool, robustness, false,
          "eval (and train's eval after training): also evaluate on the test digits shifted by "
          "2 pixels and rotated by 10 degrees (the report's robustness views)");

namespace llava {
absl::StatusOr<EvalReport> EvaluateAndReport(const VlmRuntime& rt, Projector& projector,
                                             const ProjectorConfig& projector_config,
                                             PromptConfig prompt_config,
                                             const std::string& ckpt_path);

absl::Status RunTrain(const std::vector<char*>&) {
  // The recipe (--recipe; without one, the flags' defaults) with the flags given laid over
  // it, mapped to the trainer's config as a distributed worker maps a job's spec.
  LM_ASSIGN_OR_RETURN(v1::TrainSpec spec, TrainRunSpecFromFlags());
  LM_ASSIGN_OR_RETURN(PromptConfig prompt_config, PromptFromSpec(spec));
  LM_ASSIGN_OR_RETURN(VlmRuntime rt, LoadRuntimeFromFlags());
  LM_ASSIGN_OR_RETURN(PromptBuilder prompts, PromptBuilder::Create(*rt.tokenizer, prompt_config));
  LM_ASSIGN_OR_RETURN(TrainConfig config, OneProcessTrainConfig(spec, absl::GetFlag(FLAGS_model),
                                                                rt.model->config.hidden_size));
  LM_ASSIGN_OR_RETURN(MnistSet train, LoadMnistFromFlags("train", "", "", config.train_digits));
  const std::string out_dir = absl::GetFlag(FLAGS_out_dir);
  LM_RETURN_IF_ERROR(MakeDirs(out_dir));
  LM_ASSIGN_OR_RETURN(
      std::unique_ptr<Trainer> trainer,
      Trainer::Create(*rt.model, rt.forward, prompts, train, config, absl::GetFlag(FLAGS_resume)));
  LM_LOG(INFO) << "training " << spec.projector() << " projector on "
               << trainer->plan().total_steps() << " steps of " << config.global_batch()
               << " samples (" << prompt_config.questions.size()
               << " question phrasings), from step " << trainer->step();
  LM_ASSIGN_OR_RETURN(std::unique_ptr<TbEventWriter> tb, TbEventWriter::Create(out_dir + "/tb"));
  if (trainer->step() > 0) {
    // A resumed run: the steps after its checkpoint that an earlier run wrote are redone.
    LM_RETURN_IF_ERROR(
        tb->WriteRestart(trainer->step() + 1, WallTimeNow(), absl::GetFlag(FLAGS_resume)));
  }

  LossCurve curve;
  ProgressOptions progress_options;
  progress_options.initial = trainer->step();  // a resumed run's rate counts new steps only
  Progress progress("train", trainer->total_steps(), progress_options);
  const int64_t every = spec.checkpoint_every_steps();
  const auto start = std::chrono::steady_clock::now();
  int64_t samples = 0;
  const std::string final_path = out_dir + "/projector.safetensors";
  while (!trainer->done()) {
    LM_ASSIGN_OR_RETURN(StepStats s, trainer->TrainStep());
    samples += s.samples;
    const double secs = SecondsSince(start);
    LossPoint point;
    point.step = s.step + 1;
    point.epoch = trainer->plan().EpochOfStep(s.step);
    point.loss = s.loss();
    point.lr = s.lr;
    point.samples_per_s = samples / std::max(secs, 1e-9);
    point.seconds = secs;
    curve.Add(point);
    TrainStepScalars scalars;
    scalars.loss = point.loss;
    scalars.lr = point.lr;
    scalars.samples_per_s = point.samples_per_s;
    scalars.grad_norm = s.grad_norm;
    scalars.loss_scale = trainer->loss_scaler().enabled() ? s.loss_scale : 0.0;
    LM_RETURN_IF_ERROR(tb->WriteScalars(point.step, WallTimeNow(), TrainScalars(scalars)));
    progress.Update(s.step + 1,
                    {{"loss", s.loss()}, {"lr", s.lr}, {"samples/s", point.samples_per_s}});
    if (every > 0 && trainer->step() % every == 0 && !trainer->done()) {
      LM_RETURN_IF_ERROR(trainer->SaveCheckpoint(
          absl::StrCat(out_dir, "/checkpoint-", trainer->step(), ".safetensors")));
    }
  }
  progress.Finish();
  LM_RETURN_IF_ERROR(trainer->SaveCheckpoint(final_path));
  LM_RETURN_IF_ERROR(curve.WriteCsv(out_dir + "/loss.csv"));
  LM_RETURN_IF_ERROR(curve.WriteSvg(out_dir + "/loss.svg", "llava-mnist projector training"));
  std::cout << "trained " << trainer->step() << " steps (" << samples << " samples) in "
            << SecondsSince(start) << " s; checkpoint " << final_path << ", loss curve " << out_dir
            << "/loss.{csv,svg}, TensorBoard: tensorboard --logdir " << out_dir << "/tb\n";
  if (!absl::GetFlag(FLAGS_eval_after)) return absl::OkStatus();
  prompt_config.questions = SplitPhrasings(absl::GetFlag(FLAGS_eval_questions));
  LM_ASSIGN_OR_RETURN(
      EvalReport report,
      EvaluateAndReport(rt, trainer->projector(), config.projector, prompt_config, final_path));
  return tb->WriteScalars(trainer->step(), WallTimeNow(), EvalScalars(report));
}

// Evaluates `projector` on the test digits under `prompt_config`'s questions (--questions,
// or --eval_questions after training), prints the table and writes the JSON report.
absl::StatusOr<EvalReport> EvaluateAndReport(const VlmRuntime& rt, Projector& projector,
                                             const ProjectorConfig& projector_config,
                                             PromptConfig prompt_config,
                                             const std::string& ckpt_path) {
  prompt_config.image_tokens = projector_config.image_tokens;
  LM_RETURN_IF_ERROR(prompt_config.Validate());
  LM_ASSIGN_OR_RETURN(PromptBuilder prompts, PromptBuilder::Create(*rt.tokenizer, prompt_config));
  LM_ASSIGN_OR_RETURN(MnistSet test, LoadMnistFromFlags("test", absl::GetFlag(FLAGS_images),
                                                        absl::GetFlag(FLAGS_labels),
                                                        absl::GetFlag(FLAGS_eval_digits)));
  if (test.rows * test.cols != projector_config.input_dim) {
    return absl::InvalidArgumentError(absl::StrCat("the images are ", test.rows, "x", test.cols,
                                                   " but the projector takes ",
                                                   projector_config.input_dim, " pixels"));
  }
  EvalConfig config;
  config.batch_size = absl::GetFlag(FLAGS_eval_batch_size);
  config.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  EvalReport report(prompt_config.questions);
  EvalInputs inputs{rt.model.get(), &projector, &prompts, rt.tokenizer.get(), &test, rt.forward};
  Progress progress("eval", test.size() * static_cast<int64_t>(prompt_config.questions.size()),
                    ProgressOptions());
  const auto start = std::chrono::steady_clock::now();
  LM_RETURN_IF_ERROR(EvaluateRange(inputs, 0, test.size(), config, &report,
                                   [&](int64_t done, int64_t) { progress.Update(done, {}); }));
  progress.Finish();
  const double secs = SecondsSince(start);
  if (absl::GetFlag(FLAGS_robustness)) {
    const auto views_start = std::chrono::steady_clock::now();
    for (const RobustnessView& view : StandardRobustnessViews()) {
      const MnistSet moved = TransformSet(test, view);
      EvalInputs view_inputs = inputs;
      view_inputs.images = &moved;
      EvalReport view_report(prompt_config.questions);
      Progress view_progress(absl::StrCat("eval (", view.name, ")"),
                             moved.size() * static_cast<int64_t>(prompt_config.questions.size()),
                             ProgressOptions());
      LM_RETURN_IF_ERROR(
          EvaluateRange(view_inputs, 0, moved.size(), config, &view_report,
                        [&](int64_t done, int64_t) { view_progress.Update(done, {}); }));
      view_progress.Finish();
      LM_RETURN_IF_ERROR(report.AddView(view.name, view_report));
    }
    report.metadata()["robustness_seconds"] = absl::StrFormat("%.2f", SecondsSince(views_start));
  }
  report.metadata()["checkpoint"] = ckpt_path;
  report.metadata()["model"] = absl::GetFlag(FLAGS_model);
  report.metadata()["images"] = std::to_string(test.size());
  report.metadata()["seconds"] = absl::StrFormat("%.2f", secs);
  report.metadata()["answers_per_second"] =
      absl::StrFormat("%.1f", test.size() * prompt_config.questions.size() / std::max(secs, 1e-9));
  std::string report_path = absl::GetFlag(FLAGS_report);
  if (report_path.empty()) {
    const size_t slash = ckpt_path.find_last_of('/');
    report_path = (slash == std::string::npos ? std::string(".") : ckpt_path.substr(0, slash)) +
                  "/eval_report.json";
  }
  LM_RETURN_IF_ERROR(WriteFileAtomic(report_path, report.ToJson()));
  std::cout << report.ToTable() << "\nreport: " << report_path << "\n";
  return report;
}

absl::Status RunEval(const std::vector<char*>&) {
  const std::string ckpt_path = absl::GetFlag(FLAGS_checkpoint);
  LM_ASSIGN_OR_RETURN(TrainCheckpoint ckpt, LoadTrainCheckpoint(ckpt_path));
  LM_ASSIGN_OR_RETURN(VlmRuntime rt, LoadRuntimeFromFlags());
  LM_ASSIGN_OR_RETURN(
      Projector projector,
      RestoreProjectorForModel(ckpt, rt.model->config.hidden_size, rt.model->device));
  LM_ASSIGN_OR_RETURN(PromptConfig prompt_config, PromptConfigFromFlags());  // --questions
  return EvaluateAndReport(rt, projector, ckpt.projector_config, prompt_config, ckpt_path).status();
}

absl::Status RunAsk(const std::vector<char*>&) {
  const std::string ckpt_path = absl::GetFlag(FLAGS_checkpoint);
  LM_ASSIGN_OR_RETURN(TrainCheckpoint ckpt, LoadTrainCheckpoint(ckpt_path));
  at::Tensor pixels;  // [784] float in [0, 1]
  const std::string image_path = absl::GetFlag(FLAGS_image);
  if (!image_path.empty()) {
    LM_ASSIGN_OR_RETURN(GrayImage image, ReadPngGray(image_path));
    GrayImage mnist = ToMnistStyle(image);
    pixels = at::tensor(std::vector<float>(mnist.pixels.begin(), mnist.pixels.end())) / 255.0;
  } else if (absl::GetFlag(FLAGS_index) >= 0) {
    const int64_t index = absl::GetFlag(FLAGS_index);
    LM_ASSIGN_OR_RETURN(MnistSet set, LoadMnistFromFlags("test", absl::GetFlag(FLAGS_images),
                                                         absl::GetFlag(FLAGS_labels), -1));
    if (index >= set.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--index ", index, " is past the ", set.size(), " images"));
    }
    pixels = ImagesToTensor(set, index, index + 1)[0];
    std::cout << "(image " << index << ", label " << int(set.labels[index]) << ")\n";
  } else {
    return absl::InvalidArgumentError("give --image FILE.png or --index N");
  }
  LM_ASSIGN_OR_RETURN(VlmRuntime rt, LoadRuntimeFromFlags());
  LM_ASSIGN_OR_RETURN(
      Projector projector,
      RestoreProjectorForModel(ckpt, rt.model->config.hidden_size, rt.model->device));
  PromptConfig prompt_config;
  LM_ASSIGN_OR_RETURN(prompt_config.style, ParsePromptStyle(absl::GetFlag(FLAGS_prompt_style)));
  prompt_config.questions = {absl::GetFlag(FLAGS_question)};
  prompt_config.image_tokens = ckpt.projector_config.image_tokens;
  LM_ASSIGN_OR_RETURN(PromptBuilder prompts, PromptBuilder::Create(*rt.tokenizer, prompt_config));
  EvalConfig config;
  config.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  EvalInputs inputs{rt.model.get(), &projector, &prompts, rt.tokenizer.get(), nullptr, rt.forward};
  LM_ASSIGN_OR_RETURN(std::string answer, AnswerOne(inputs, pixels, 0, config));
  std::cout << "user: [image] " << absl::GetFlag(FLAGS_question) << "\nassistant: " << answer
            << "\n";
  return absl::OkStatus();
}

}  // namespace llava
