#include "common/llama_generate.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>

#include "common/llama_forward.h"
#include "common/log.h"

namespace llava {

std::vector<std::vector<int64_t>> GreedyGenerateFromEmbeds(const LlamaModel& model,
                                                           const ForwardOptions& options,
                                                           const at::Tensor& inputs_embeds,
                                                           const GenerateParams& params,
                                                           const KvCache* prefix) {
  at::NoGradGuard no_grad;
  LM_CHECK_EQ(inputs_embeds.dim(), 3);
  const int64_t b = inputs_embeds.size(0), t = inputs_embeds.size(1);
  const std::vector<int64_t>& eos =
      params.eos_token_ids.empty() ? model.config.eos_token_ids : params.eos_token_ids;
  at::Tensor eos_ids = at::tensor(eos, at::kLong).to(model.device);
  const int64_t capacity = t + std::max<int64_t>(params.max_new_tokens, 1);
  KvCache cache = prefix == nullptr ? MakeKvCache(model, options, b, capacity)
                                    : MakeKvCacheFromPrefix(model, options, *prefix, b,
                                                            prefix->length + capacity);

  std::vector<at::Tensor> steps;  // each [B] int64, on the device
  at::Tensor finished = at::zeros({b}, at::TensorOptions().dtype(at::kBool).device(model.device));
  at::Tensor hidden = DecoderForward(model, options, inputs_embeds, &cache);  // [B, T, D]
  for (int64_t step = 0; step < params.max_new_tokens; ++step) {
    at::Tensor logits = LmHeadLogits(model, hidden.select(1, hidden.size(1) - 1));  // [B, V]
    at::Tensor next = logits.argmax(-1);                                            // [B]
    steps.push_back(next);
    if (eos.size() > 0) finished = finished.logical_or(at::isin(next, eos_ids));
    if (step + 1 == params.max_new_tokens) break;
    // The one host synchronization per step: stop once every row has ended.
    if (params.stop_at_eos && eos.size() > 0 && finished.all().item<bool>()) break;
    hidden = DecoderForward(model, options, EmbedTokens(model, next.unsqueeze(1)), &cache);
  }

  std::vector<std::vector<int64_t>> out(b);
  if (steps.empty()) return out;
  at::Tensor all = at::stack(steps, 1).to(at::kCPU).contiguous();  // [B, N]
  const int64_t n = all.size(1);
  const int64_t* p = all.data_ptr<int64_t>();
  for (int64_t r = 0; r < b; ++r) {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t tok = p[r * n + i];
      out[r].push_back(tok);
      if (params.stop_at_eos && std::find(eos.begin(), eos.end(), tok) != eos.end()) break;
    }
  }
  return out;
}

std::vector<std::vector<int64_t>> GreedyGenerate(const LlamaModel& model,
                                                 const ForwardOptions& options,
                                                 const at::Tensor& ids,
                                                 const GenerateParams& params) {
  at::NoGradGuard no_grad;
  return GreedyGenerateFromEmbeds(model, options, EmbedTokens(model, ids.to(model.device)), params);
}

}  // namespace llava
