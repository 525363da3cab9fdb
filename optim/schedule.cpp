#include "optim/schedule.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace dtrain {

float learning_rate(const ScheduleConfig& c, float base_lr, int64_t step) {
  DTRAIN_CHECK(c.warmup_steps >= 0, "optim.warmup_steps must be >= 0, got ", c.warmup_steps);
  if (step < c.warmup_steps) return base_lr * static_cast<float>(step + 1) / static_cast<float>(c.warmup_steps);
  if (c.type == "constant") return base_lr;
  if (c.type == "step") {
    DTRAIN_CHECK(c.step_size > 0, "optim.step_size must be positive, got ", c.step_size);
    return base_lr * std::pow(c.gamma, static_cast<float>((step - c.warmup_steps) / c.step_size));
  }
  if (c.type == "cosine") {
    DTRAIN_CHECK(c.total_steps > c.warmup_steps, "optim.total_steps (", c.total_steps,
                 ") must exceed optim.warmup_steps (", c.warmup_steps, ") for the cosine schedule");
    const double t =
        std::min(1.0, static_cast<double>(step - c.warmup_steps) / static_cast<double>(c.total_steps - c.warmup_steps));
    return static_cast<float>(c.min_lr + (base_lr - c.min_lr) * 0.5 * (1.0 + std::cos(M_PI * t)));
  }
  fail("optim.schedule: unknown schedule '", c.type, "' (expected constant, step or cosine)");
}

}  // namespace dtrain
