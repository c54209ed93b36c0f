// The vision-language model's forward functions: image embeddings spliced into the
// token embeddings at the prompt's image slots, the answer-only loss, and answer
// generation for a batch of images. Stateless free functions over a frozen LlamaModel,
// computing under the ForwardOptions given; the projector that makes the image
// embeddings is the caller's.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "common/forward_options.h"
#include "common/llama_forward.h"
#include "common/llama_generate.h"
#include "common/llama_weights.h"
#include "common/prompt.h"

namespace llava {

// ids [B, T] -> inputs_embeds [B, T, D] with image_embeds [B, k, D] (any float dtype,
// cast to the model's; gradients flow back to it) at positions pos .. pos+k-1.
at::Tensor SpliceImageEmbeds(const LlamaModel& model, const at::Tensor& ids,
                             const at::Tensor& image_embeds, int64_t image_position);

// Loss terms of the answer tokens: logits are computed only where a label predicts
// (labels[:, t+1] != -100), which is exactly transformers' shifted causal-LM loss
// without the lm_head over positions that carry no loss.
struct AnswerLossTerms {
  at::Tensor sum;      // 0-d float32: sum of the token losses
  int64_t tokens = 0;  // labelled tokens
};
AnswerLossTerms AnswerLoss(const LlamaModel& model, const ForwardOptions& options,
                           const at::Tensor& inputs_embeds, const at::Tensor& labels);

// The prompt's fixed part before the image: its token ids and their keys and values,
// computed once per job. It does not depend on the projector, and causal attention never
// lets it see the image, so running each batch from the image position on against it
// is exact (to float rounding: the prefix is computed at batch 1). It belongs to the
// options it was computed under: use it with those.
struct PromptPrefix {
  at::Tensor ids;  // [1, P] int64 on the CPU, P = the image position
  KvCache kv;      // batch 1, length P, on the model's device
};
// From the first row of ids [B, T] (every row shares its first image_position ids).
PromptPrefix ComputePromptPrefix(const LlamaModel& model, const ForwardOptions& options,
                                 const at::Tensor& ids, int64_t image_position);
// Whether every row of ids [B, T] (on the CPU) starts with prefix.ids before image_position.
bool PrefixMatches(const PromptPrefix& prefix, const at::Tensor& ids, int64_t image_position);

// The same terms as AnswerLoss(model, options, SpliceImageEmbeds(model, ids, image_embeds,
// image_position), labels), with less work: the decoder runs only from the image position (against
// `prefix`, which must match ids) up to the last position that predicts a label.
// ids and labels [B, T] on the CPU, image_embeds [B, k, D] (gradients flow back to it).
AnswerLossTerms AnswerLossFromPrefix(const LlamaModel& model, const ForwardOptions& options,
                                     const PromptPrefix& prefix, const at::Tensor& ids,
                                     const at::Tensor& image_embeds, int64_t image_position,
                                     const at::Tensor& labels);

// Greedy answers for a batch of images under one question: the prompt [1, T] is shared
// by every row; image_embeds [B, k, D]. Returns each row's new tokens.
// With `prefix` (which must match prompt.ids), decoding starts from the image position.
std::vector<std::vector<int64_t>> GenerateAnswers(const LlamaModel& model,
                                                  const ForwardOptions& options,
                                                  const GenerationPrompt& prompt,
                                                  const at::Tensor& image_embeds,
                                                  const GenerateParams& params,
                                                  const PromptPrefix* prefix = nullptr);

}  // namespace llava
