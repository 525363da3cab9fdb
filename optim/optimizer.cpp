#include "optim/optimizer.h"

#include <cmath>

#include "core/ops.h"

namespace dtrain {

Optimizer::Optimizer(OptimizerConfig config, const ParameterArena& arena, std::vector<std::string> slot_names)
    : config_(std::move(config)) {
  DTRAIN_CHECK(arena.allocated(), "optimizer created before the model's parameters were allocated");
  DTRAIN_CHECK(config_.lr >= 0 && std::isfinite(config_.lr), "optim.lr must be a finite value >= 0, got ", config_.lr);
  DTRAIN_CHECK(config_.weight_decay >= 0, "optim.weight_decay must be >= 0, got ", config_.weight_decay);
  for (auto& name : slot_names)
    slots_.emplace_back(std::move(name), Tensor::zeros(Shape{arena.numel()}, DType::f32, arena.device()));
}

std::vector<std::pair<std::string, Tensor*>> Optimizer::slots() {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (auto& [name, t] : slots_) out.emplace_back(name, &t);
  return out;
}

std::vector<std::pair<std::string, const Tensor*>> Optimizer::slots() const {
  std::vector<std::pair<std::string, const Tensor*>> out;
  for (const auto& [name, t] : slots_) out.emplace_back(name, &t);
  return out;
}

float grad_norm(const ParameterArena& arena) { return std::sqrt(ops::sum_squares(arena.grads())); }

float clip_coefficient(float max_norm, float norm) {
  return max_norm > 0 && norm > max_norm ? max_norm / (norm + 1e-6f) : 1.0f;
}

void clip_grad_norm(ParameterArena& arena, float max_norm, float norm) {
  const float coefficient = clip_coefficient(max_norm, norm);
  if (coefficient != 1.0f) ops::scale(arena.grads(), coefficient);
}

float clip_grad_norm(ParameterArena& arena, float max_norm) {
  const float norm = grad_norm(arena);
  clip_grad_norm(arena, max_norm, norm);
  return norm;
}

std::string first_nonfinite_gradient(const ParameterArena& arena) {
  const std::vector<float> grads = arena.grads().to_vector<float>();
  for (const Parameter* p : arena.parameters())
    for (int64_t i = 0; i < p->shape.numel(); ++i) {
      const float g = grads[static_cast<size_t>(p->offset + i)];
      if (!std::isfinite(g))
        return detail::concat("parameter '", p->name, "' (element ", i, " of its gradient is ", g, ")");
    }
  return "";
}

}  // namespace dtrain
