#include "optim/optimizer.h"

#include <cmath>

#include "core/dispatch.h"
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

namespace {

// PyTorch's SGD: g += wd p; buf = momentum buf + g; p -= lr (nesterov ? g + momentum buf : buf).
class Sgd : public Optimizer {
 public:
  Sgd(const OptimizerConfig& c, const ParameterArena& arena)
      : Optimizer(c, arena, c.momentum > 0 ? std::vector<std::string>{"momentum"} : std::vector<std::string>{}) {
    DTRAIN_CHECK(c.momentum >= 0 && c.momentum < 1, "optim.momentum must be in [0, 1), got ", c.momentum);
    DTRAIN_CHECK(!c.nesterov || c.momentum > 0, "optim.nesterov needs optim.momentum > 0");
  }
  void step(ParameterArena& a, float lr) override {
    float* buf = config_.momentum > 0 ? slot(0).data<float>() : nullptr;
    DTRAIN_DISPATCH(a.device(), sgd_step, a.values().data<float>(), a.grads().data<float>(), buf, a.numel(), lr,
                    config_.momentum, config_.nesterov, config_.weight_decay);
    ++steps_;
  }
};

// Adam (L2 in the gradient) and AdamW (decoupled decay), with bias correction.
class Adam : public Optimizer {
 public:
  Adam(const OptimizerConfig& c, const ParameterArena& arena, bool decoupled)
      : Optimizer(c, arena, {"exp_avg", "exp_avg_sq"}), decoupled_(decoupled) {
    DTRAIN_CHECK(c.beta1 >= 0 && c.beta1 < 1, "optim.beta1 must be in [0, 1), got ", c.beta1);
    DTRAIN_CHECK(c.beta2 >= 0 && c.beta2 < 1, "optim.beta2 must be in [0, 1), got ", c.beta2);
    DTRAIN_CHECK(c.eps > 0, "optim.eps must be positive, got ", c.eps);
  }
  void step(ParameterArena& a, float lr) override {
    const double t = static_cast<double>(steps_ + 1);
    const float bias1 = static_cast<float>(1.0 - std::pow(static_cast<double>(config_.beta1), t));
    const float bias2 = static_cast<float>(1.0 - std::pow(static_cast<double>(config_.beta2), t));
    DTRAIN_DISPATCH(a.device(), adam_step, a.values().data<float>(), a.grads().data<float>(), slot(0).data<float>(),
                    slot(1).data<float>(), a.numel(), lr, config_.beta1, config_.beta2, config_.eps,
                    config_.weight_decay, decoupled_, bias1, bias2);
    ++steps_;
  }

 private:
  bool decoupled_;
};

// PyTorch's RMSprop (not centered): sq = alpha sq + (1-alpha) g^2; p -= lr g / (sqrt(sq) + eps).
class RmsProp : public Optimizer {
 public:
  RmsProp(const OptimizerConfig& c, const ParameterArena& arena)
      : Optimizer(c, arena, c.momentum > 0 ? std::vector<std::string>{"square_avg", "momentum"}
                                           : std::vector<std::string>{"square_avg"}) {
    DTRAIN_CHECK(c.alpha >= 0 && c.alpha < 1, "optim.alpha must be in [0, 1), got ", c.alpha);
    DTRAIN_CHECK(c.momentum >= 0 && c.momentum < 1, "optim.momentum must be in [0, 1), got ", c.momentum);
    DTRAIN_CHECK(c.eps > 0, "optim.eps must be positive, got ", c.eps);
  }
  void step(ParameterArena& a, float lr) override {
    float* buf = config_.momentum > 0 ? slot(1).data<float>() : nullptr;
    DTRAIN_DISPATCH(a.device(), rmsprop_step, a.values().data<float>(), a.grads().data<float>(),
                    slot(0).data<float>(), buf, a.numel(), lr, config_.alpha, config_.eps, config_.weight_decay,
                    config_.momentum);
    ++steps_;
  }
};

}  // namespace

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& c, const ParameterArena& arena) {
  if (c.type == "sgd") return std::make_unique<Sgd>(c, arena);
  if (c.type == "adam") return std::make_unique<Adam>(c, arena, false);
  if (c.type == "adamw") return std::make_unique<Adam>(c, arena, true);
  if (c.type == "rmsprop") return std::make_unique<RmsProp>(c, arena);
  fail("optim.type: unknown optimizer '", c.type, "' (expected sgd, adam, adamw or rmsprop)");
}

float clip_grad_norm(ParameterArena& arena, float max_norm) {
  const float norm = std::sqrt(ops::sum_squares(arena.grads()));
  if (max_norm > 0 && norm > max_norm) ops::scale(arena.grads(), max_norm / (norm + 1e-6f));
  return norm;
}

}  // namespace dtrain
