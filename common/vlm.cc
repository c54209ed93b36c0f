#include "common/vlm.h"

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
  return at::cat({embeds.narrow(1, 0, image_position),
                  image_embeds.to(model.device, model.dtype),
                  embeds.narrow(1, image_position + k, t - image_position - k)},
                 1);  // [B, T, D]
}

AnswerLossTerms AnswerLoss(const LlamaModel& model, const at::Tensor& inputs_embeds,
                           const at::Tensor& labels) {
  const int64_t b = labels.size(0), t = labels.size(1), d = model.config.hidden_size;
  at::Tensor hidden = DecoderForward(model, inputs_embeds);  // [B, T, D]
  // Position t predicts labels[t + 1]. The positions are found on the host, where the
  // labels were built, so that the device never waits for a nonzero() in the step.
  at::Tensor target = labels.to(at::kCPU).narrow(1, 1, t - 1).reshape({-1});  // [B*(T-1)]
  at::Tensor where = (target != -100).nonzero().squeeze(1);                     // [N]
  at::Tensor wanted = target.index_select(0, where).to(model.device, /*non_blocking=*/true);
  at::Tensor rows = hidden.narrow(1, 0, t - 1).reshape({b * (t - 1), d})
                        .index_select(0, where.to(model.device, /*non_blocking=*/true));
  // The loss in at least float32, as transformers upcasts (float64 stays float64).
  at::Tensor logits = LmHeadLogits(model, rows);  // [N, V]
  logits = logits.to(at::promote_types(logits.scalar_type(), at::kFloat));
  AnswerLossTerms out;
  out.tokens = where.size(0);
  out.sum = at::cross_entropy_loss(logits, wanted, {}, at::Reduction::Sum, -100);
  return out;
}

std::vector<std::vector<int64_t>> GenerateAnswers(const LlamaModel& model,
                                                  const GenerationPrompt& prompt,
                                                  const at::Tensor& image_embeds,
                                                  const GenerateParams& params) {
  at::NoGradGuard no_grad;
  const int64_t b = image_embeds.size(0);
  at::Tensor ids = prompt.ids.expand({b, prompt.ids.size(1)});
  at::Tensor embeds = SpliceImageEmbeds(model, ids, image_embeds, prompt.image_position);
  return GreedyGenerateFromEmbeds(model, embeds, params);
}

}  // namespace llava
