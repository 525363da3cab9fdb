#pragma once
// Optimizers step the flat parameter arena in one fused pass (one loop on the CPU, one kernel on
// the GPU). Their state slots are flat arenas with the parameters' layout, so a parameter's slot
// is the same flat_range as its value (what checkpoints store per parameter).
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/arena.h"

namespace dtrain {

struct OptimizerConfig {
  std::string type = "sgd";  // a registered optimizer (registered_optimizers())
  float lr = 0.1f;
  float momentum = 0.9f;      // sgd, rmsprop
  bool nesterov = false;      // sgd
  float weight_decay = 0.0f;  // L2 added to the gradient (sgd, adam, rmsprop); decoupled for adamw
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;  // adam, adamw (eps also rmsprop)
  float alpha = 0.99f;                              // rmsprop smoothing
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // Applies one update with learning rate `lr` from the gradient arena, each gradient multiplied by
  // grad_scale as it is read (ParamSync::grad_scale() times clip_coefficient(); 1: as they are), to
  // the value arena.
  virtual void step(ParameterArena& arena, float lr, float grad_scale = 1.0f) = 0;
  // Named state slots (e.g. "momentum", "exp_avg", "exp_avg_sq"), each a flat arena-shaped tensor.
  std::vector<std::pair<std::string, Tensor*>> slots();
  std::vector<std::pair<std::string, const Tensor*>> slots() const;
  int64_t steps() const { return steps_; }  // updates applied so far (Adam's bias correction)

  // ZeRO-1 (comm.zero = 1): from now on step() updates only `spans` of the arena (this rank's
  // shard, ParamSync::shard()) and the state slots hold those spans alone, packed in span order,
  // taken from the current whole-arena slots. No spans: this rank updates and holds nothing.
  void shard(std::vector<ArenaSpan> spans);
  // Back to whole-arena slots (`full`: one arena-shaped tensor per slot, e.g. every rank's shard
  // gathered for a checkpoint); step() updates the whole arena again.
  void unshard(std::vector<Tensor> full);
  const std::vector<ArenaSpan>& shard_spans() const { return spans_; }
  bool sharded() const { return sharded_; }
  // Bytes of optimizer state this rank holds.
  int64_t state_bytes() const;
  void set_steps(int64_t steps) { steps_ = steps; }
  const OptimizerConfig& config() const { return config_; }

 protected:
  Optimizer(OptimizerConfig config, const ParameterArena& arena, std::vector<std::string> slot_names);
  Tensor& slot(int i) { return slots_[i].second; }
  // Calls fn(arena_offset, slot_offset, count, weight_decay) for each run of the arena this
  // optimizer updates (all of it, or its shard) in one weight-decay group (Parameter::weight_decay:
  // biases, norms and embeddings are not decayed). The offsets are equal unless sharded.
  void for_each_run(const ParameterArena& a, float weight_decay,
                    const std::function<void(int64_t, int64_t, int64_t, float)>& fn) const;
  OptimizerConfig config_;
  int64_t steps_ = 0;

 private:
  std::vector<std::pair<std::string, Tensor>> slots_;
  std::vector<ArenaSpan> spans_;  // shard()'s runs (possibly none)
  bool sharded_ = false;          // false: the whole arena
};

// Builds the optimizer named by config.type (throws naming optim.type and the registered ones).
std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& config, const ParameterArena& arena);
// The registered optimizers (optim/optimizers.cpp's table), in table order: name and a one-line summary.
std::vector<std::pair<std::string, std::string>> registered_optimizers();

// The global L2 norm of the gradient arena. After the all-reduce every rank holds the same
// gradients, so every rank gets the same norm (and the same verdict on a non-finite one) without
// communicating.
float grad_norm(const ParameterArena& arena);
// Scales the gradient arena so its global L2 norm is at most max_norm (no-op when max_norm <= 0).
// Returns the norm before clipping. Run it after the all-reduce so every rank clips identically.
float clip_grad_norm(ParameterArena& arena, float max_norm);
// The same with the norm already known (grad_norm of the arena).
void clip_grad_norm(ParameterArena& arena, float max_norm, float norm);
// The factor clipping scales gradients of global L2 norm `norm` by (PyTorch's clip_grad_norm_:
// max_norm / (norm + 1e-6) when norm > max_norm > 0, else 1), for Optimizer::step's grad_scale.
float clip_coefficient(float max_norm, float norm);
// "parameter '1.weight' (element 17 of its gradient is nan)" for the first parameter, in
// registration order, whose gradient holds a NaN or an infinity; "" when every gradient is finite.
// only: look at these runs alone (ZeRO-1: the rest of the arena holds no reduced gradient).
std::string first_nonfinite_gradient(const ParameterArena& arena, const std::vector<ArenaSpan>* only = nullptr);

}  // namespace dtrain
