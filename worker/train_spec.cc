#include "worker/train_spec.h"

#include "common/job_spec.h"
#include "common/status_macros.h"

namespace llava {

absl::StatusOr<TrainConfig> TrainConfigFromSpec(const v1::TrainSpec& spec,
                                                const std::string& model_spec,
                                                int64_t hidden_size) {
  TrainConfig c;
  c.model_spec = model_spec;
  c.projector = ProjectorFromSpec(spec);
  c.projector.output_dim = hidden_size;
  c.optimizer = OptimizerFromSpec(spec);
  c.schedule = ScheduleFromSpec(spec);
  c.batch_size = spec.batch_size();
  c.grad_accum = spec.grad_accum();
  // The spec's world_size, not an attempt's group: it sets the global batch, which an
  // elastic job keeps on fewer ranks (each rank's share of a step then runs in more
  // forward passes of batch_size).
  c.world_size = spec.world_size();
  c.epochs = spec.epochs();
  c.max_steps = spec.max_steps();
  c.train_digits = spec.train_digits();
  c.seed = spec.seed();
  c.augment = AugmentFromSpec(spec);
  LM_RETURN_IF_ERROR(c.Validate());
  return c;
}

}  // namespace llava
