#pragma once
// Learning-rate schedules: a pure function of the step, so resuming needs only the step count.
#include <cstdint>
#include <string>

namespace dtrain {

struct ScheduleConfig {
  std::string type = "constant";  // constant | step | cosine
  int64_t warmup_steps = 0;       // linear warmup from 0 (all types)
  int64_t step_size = 1000;       // step: multiply by gamma every step_size steps
  float gamma = 0.1f;
  int64_t total_steps = 0;  // cosine: decay from base lr to min_lr over total_steps
  float min_lr = 0.0f;
};

// The learning rate for update number `step` (0-based). Throws naming optim.schedule on bad config.
float learning_rate(const ScheduleConfig& config, float base_lr, int64_t step);

}  // namespace dtrain
