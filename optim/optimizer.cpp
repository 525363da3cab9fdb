#include "optim/optimizer.h"

#include <algorithm>
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

void Optimizer::shard(std::vector<ArenaSpan> spans) {
  DTRAIN_CHECK(!sharded_, "optimizer: shard() called twice without unshard()");
  int64_t total = 0;
  for (const ArenaSpan& s : spans) total += s.numel;
  for (auto& [name, full] : slots_) {
    Tensor packed = Tensor::zeros(Shape{total}, DType::f32, full.device());
    int64_t at = 0;
    for (const ArenaSpan& s : spans) {
      packed.flat_range(at, s.numel).copy_from(full.flat_range(s.offset, s.numel));
      at += s.numel;
    }
    full = packed;  // the whole-arena slot is freed here
  }
  spans_ = std::move(spans);
  sharded_ = true;
}

void Optimizer::unshard(std::vector<Tensor> full) {
  DTRAIN_CHECK(full.size() == slots_.size(), "optimizer: unshard() got ", full.size(), " slots, expected ",
               slots_.size());
  for (size_t i = 0; i < full.size(); ++i) slots_[i].second = std::move(full[i]);
  spans_.clear();
  sharded_ = false;
}

int64_t Optimizer::state_bytes() const {
  int64_t bytes = 0;
  for (const auto& [name, t] : slots_) bytes += t.nbytes();
  return bytes;
}

void Optimizer::for_each_run(const ParameterArena& a, float weight_decay,
                             const std::function<void(int64_t, int64_t, int64_t, float)>& fn) const {
  const auto decayed_runs = [&](int64_t offset, int64_t numel, int64_t slot_offset) {
    if (weight_decay == 0.0f) return fn(offset, slot_offset, numel, 0.0f);
    for (const DecayRange& r : a.decay_ranges()) {
      const int64_t lo = std::max(offset, r.offset), hi = std::min(offset + numel, r.offset + r.numel);
      if (lo < hi) fn(lo, slot_offset + (lo - offset), hi - lo, r.weight_decay ? weight_decay : 0.0f);
    }
  };
  if (!sharded_) return decayed_runs(0, a.numel(), 0);
  int64_t slot_offset = 0;
  for (const ArenaSpan& s : spans_) {
    decayed_runs(s.offset, s.numel, slot_offset);
    slot_offset += s.numel;
  }
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

std::string first_nonfinite_gradient(const ParameterArena& arena, const std::vector<ArenaSpan>* only) {
  const std::vector<float> grads = arena.grads().to_vector<float>();
  const auto inside = [&](int64_t at) {
    if (!only) return true;
    for (const ArenaSpan& s : *only)
      if (at >= s.offset && at < s.offset + s.numel) return true;
    return false;
  };
  for (const Parameter* p : arena.parameters())
    for (int64_t i = 0; i < p->shape.numel(); ++i) {
      const float g = grads[static_cast<size_t>(p->offset + i)];
      if (!inside(p->offset + i)) continue;
      if (!std::isfinite(g))
        return detail::concat("parameter '", p->name, "' (element ", i, " of its gradient is ", g, ")");
    }
  return "";
}

}  // namespace dtrain
