// The vision-language model's forward functions: image embeddings spliced into the
// token embeddings at the prompt's image slots, the answer-only loss, and answer
// generation for a batch of images. Stateless free functions over a frozen LlamaModel;
// the projector that makes the image embeddings is the caller's.
#pragma once

#include <ATen/ATen.h>

#include <vector>

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
AnswerLossTerms AnswerLoss(const LlamaModel& model, const at::Tensor& inputs_embeds,
                           const at::Tensor& labels);

// Greedy answers for a batch of images under one question: the prompt [1, T] is shared
// by every row; image_embeds [B, k, D]. Returns each row's new tokens.
std::vector<std::vector<int64_t>> GenerateAnswers(const LlamaModel& model,
                                                  const GenerationPrompt& prompt,
                                                  const at::Tensor& image_embeds,
                                                  const GenerateParams& params);

}  // namespace llava
