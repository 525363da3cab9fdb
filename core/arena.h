#pragma once
// The parameter arena: all parameters in one allocation and all gradients in another, laid out
// in REVERSE registration order, so the gradients backward produces first are contiguous from
// offset 0 and a communication bucket is a zero-copy view of a range of the gradient arena.
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace dtrain {

struct Parameter {
  std::string name;  // "0.weight", "3.bias", ...
  Shape shape;
  int index = 0;       // registration index
  int64_t offset = 0;  // first element in the arenas
  Tensor value;        // view into the value arena
  Tensor grad;         // view into the gradient arena
  // Fills `value` once the arena is allocated.
  std::function<void(Tensor& value, Generator& gen)> init;
  // Whether optimizers apply weight decay to it (its group): off for biases, norms and embeddings.
  bool weight_decay = true;
};

// A run of parameters adjacent in the arenas that share a weight-decay group.
// A run of the flat arena: [offset, offset + numel) (e.g. a rank's ZeRO-1 shard).
struct ArenaSpan {
  int64_t offset = 0, numel = 0;
};

struct DecayRange {
  int64_t offset = 0, numel = 0;
  bool weight_decay = true;
};

class ParameterArena {
 public:
  // Registers a parameter (before allocate()). The returned reference stays valid.
  Parameter& add(std::string name, const Shape& shape, std::function<void(Tensor&, Generator&)> init,
                 bool weight_decay = true);
  // Lays out and allocates both arenas on `device`, then runs each init in registration order.
  void allocate(Device device, Generator& gen);
  bool allocated() const { return values_.defined(); }

  const std::vector<Parameter*>& parameters() const { return ordered_; }  // registration order
  Parameter& find(const std::string& name);                               // throws naming the parameter
  Tensor& values() { return values_; }                                    // flat 1-D
  Tensor& grads() { return grads_; }                                      // flat 1-D
  const Tensor& grads() const { return grads_; }
  int64_t numel() const { return numel_; }
  // The arenas as maximal runs of one weight-decay group, in arena order (after allocate()).
  std::vector<DecayRange> decay_ranges() const;
  Device device() const { return values_.device(); }
  void zero_grad();

  // Called by each layer's backward once a parameter's gradient is final for this pass.
  void grad_ready(const Parameter& p) const {
    if (grad_ready_hook_) grad_ready_hook_(p);
  }
  void set_grad_ready_hook(std::function<void(const Parameter&)> hook) { grad_ready_hook_ = std::move(hook); }
  // Called by Sequential before a child's forward reads the parameter (ZeRO-1: its all-gather from
  // the previous step may still be in flight).
  void value_needed(const Parameter& p) const {
    if (value_needed_hook_) value_needed_hook_(p);
  }
  void set_value_needed_hook(std::function<void(const Parameter&)> hook) { value_needed_hook_ = std::move(hook); }
  bool has_value_needed_hook() const { return static_cast<bool>(value_needed_hook_); }

 private:
  std::deque<Parameter> storage_;  // stable addresses
  std::vector<Parameter*> ordered_;
  Tensor values_, grads_;
  int64_t numel_ = 0;
  std::function<void(const Parameter&)> grad_ready_hook_, value_needed_hook_;
};

}  // namespace dtrain
