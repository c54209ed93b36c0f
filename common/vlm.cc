#include "common/vlm.h"

#include <algorithm>

#include "common/llama_forward.h"
#include "common/log.h"

namespace llava {

at::Tensor SpliceImageEmbeds(const LlamaModel& model, const at::Tensor& ids,
                             const at::Tensor& image_embeds, int64_t image_position) {
  LM_CHECK_EQ(ids.dim(), 2);
  LM_CHECK_EQ(image_embeds.dim(), 3);
  LM_CHECK_EQ(image_embeds.size(0), ids.size(0));
  LM_CHECK_EQ(image_embeds.size(2), model.config.hidden_size);
  const int64_t t = ids.size(1), k = image_embeds.size(1);
  LM_CHECK_LE(image_position + k, t);
  at::Tensor embeds = EmbedTokens(model, ids.to(model.device));  // [B, T, D]
  return at::cat({embeds.narrow(1, 0, image_position), image_embeds.to(model.device, model.dtype),
                  embeds.narrow(1, image_position + k, t - image_position - k)},
                 1);  // [B, T, D]
}

namespace {

// Loss terms from hidden [B, S, D] at absolute positions start .. start+S-1: position j
// predicts labels[:, j + 1] ([B, T]); positions whose next label is -100 cost nothing.
AnswerLossTerms LossFromHidden(const LlamaModel& model, const at::Tensor& hidden, int64_t start,
                               const at::Tensor& labels) {
  const int64_t b = labels.size(0), t = labels.size(1), d = model.config.hidden_size;
  const int64_t s = std::min<int64_t>(hidden.size(1), t - 1 - start);
  // The positions are found on the host, where the labels were built, so that the device
  // never waits for a nonzero() in the step.
  at::Tensor target = labels.to(at::kCPU).narrow(1, start + 1, s).reshape({-1});  // [B*s]
  at::Tensor where = (target != -100).nonzero().squeeze(1);                       // [N]
  at::Tensor wanted = target.index_select(0, where).to(model.device, /*non_blocking=*/true);
  at::Tensor rows = hidden.narrow(1, 0, s)
                        .reshape({b * s, d})
                        .index_select(0, where.to(model.device, /*non_blocking=*/true));
  // The loss in at least float32, as transformers upcasts (float64 stays float64).
  at::Tensor logits = LmHeadLogits(model, rows);  // [N, V]
  logits = logits.to(at::promote_types(logits.scalar_type(), at::kFloat));
  AnswerLossTerms out;
  out.tokens = where.size(0);
  out.sum = at::cross_entropy_loss(logits, wanted, {}, at::Reduction::Sum, -100);
  return out;
}

}  // namespace

AnswerLossTerms AnswerLoss(const LlamaModel& model, const ForwardOptions& options,
                           const at::Tensor& inputs_embeds, const at::Tensor& labels) {
  at::Tensor hidden = DecoderForward(model, options, inputs_embeds);  // [B, T, D]
  return LossFromHidden(model, hidden, 0, labels);
}

PromptPrefix ComputePromptPrefix(const LlamaModel& model, const ForwardOptions& options,
                                 const at::Tensor& ids, int64_t image_position) {
  LM_CHECK_EQ(ids.dim(), 2);
  LM_CHECK_GT(image_position, 0);
  LM_CHECK_LE(image_position, ids.size(1));
  PromptPrefix p;
  p.ids = ids.narrow(0, 0, 1).narrow(1, 0, image_position).to(at::kCPU).clone();  // [1, P]
  p.kv = ComputePrefixKv(model, options, p.ids);
  return p;
}

bool PrefixMatches(const PromptPrefix& prefix, const at::Tensor& ids, int64_t image_position) {
  if (!prefix.ids.defined() || prefix.ids.size(1) != image_position ||
      ids.size(1) < image_position) {
    return false;
  }
  return ids.to(at::kCPU).narrow(1, 0, image_position).eq(prefix.ids).all().item<bool>();
}

AnswerLossTerms AnswerLossFromPrefix(const LlamaModel& model, const ForwardOptions& options,
                                     const PromptPrefix& prefix, const at::Tensor& ids,
                                     const at::Tensor& image_embeds, int64_t image_position,
                                     const at::Tensor& labels) {
  LM_CHECK(PrefixMatches(prefix, ids, image_position)) << "the prompt prefix differs";
  const int64_t k = image_embeds.size(1);
  // The last labelled position: hidden states are needed only before it (causal
  // attention: what follows never changes them).
  at::Tensor labelled = labels.to(at::kCPU).ne(-100).any(0).nonzero();  // [n, 1]
  LM_CHECK_GT(labelled.size(0), 0) << "no labelled position";
  const int64_t last = labelled[-1][0].item<int64_t>();
  const int64_t end = std::max(last, image_position + k);  // the image itself is always run
  at::Tensor suffix = ids.narrow(1, image_position, end - image_position);          // [B, S]
  at::Tensor embeds = SpliceImageEmbeds(model, suffix, image_embeds, 0);            // [B, S, D]
  at::Tensor hidden = DecoderForward(model, options, embeds, nullptr, &prefix.kv);  // [B, S, D]
  return LossFromHidden(model, hidden, image_position, labels);
}

std::vector<std::vector<int64_t>> GenerateAnswers(
    const LlamaModel& model, const ForwardOptions& options, const GenerationPrompt& prompt,
    const at::Tensor& image_embeds, const GenerateParams& params, const PromptPrefix* prefix) {
  at::NoGradGuard no_grad;
  const int64_t b = image_embeds.size(0);
  if (prefix != nullptr) {
    LM_CHECK(PrefixMatches(*prefix, prompt.ids, prompt.image_position))
        << "the prompt prefix differs";
    const int64_t p = prompt.image_position, t = prompt.ids.size(1);
    at::Tensor suffix = prompt.ids.narrow(1, p, t - p).expand({b, t - p});  // [B, T-P]
    return GreedyGenerateFromEmbeds(
        model, options, SpliceImageEmbeds(model, suffix, image_embeds, 0), params, &prefix->kv);
  }
  at::Tensor ids = prompt.ids.expand({b, prompt.ids.size(1)});
  at::Tensor embeds = SpliceImageEmbeds(model, ids, image_embeds, prompt.image_position);
  return GreedyGenerateFromEmbeds(model, options, embeds, params);
}

}  // namespace llava
