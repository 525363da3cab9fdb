#pragma once
// Module: a layer with explicit forward and backward (no autograd graph). forward caches what
// backward needs; backward returns dL/dx, ADDS into its parameters' gradients, then calls
// ctx.grad_ready(p) for each of its parameters so ParamSync can launch a full bucket at once.
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/arena.h"
#include "core/onnx_graph.h"
#include "core/tensor.h"

namespace dtrain {

struct PassContext {
  bool training = true;
  Generator* dropout_rng = nullptr;       // stream (seed, rank, RngPurpose::dropout); needed when training
  const ParameterArena* arena = nullptr;  // receives grad_ready; may be null in unit tests
  // false: the caller drops the gradient with respect to the input (a model's input is data), so
  // the first Linear/Conv2d skips computing it and returns an undefined tensor, and Sequential
  // skips the backward of parameter-free layers before it.
  bool input_grad = true;
  // false: every layer runs on its own, no epilogue fusion (Module::fuse); tests compare both.
  bool fuse = true;
  void grad_ready(const Parameter& p) const {
    if (arena) arena->grad_ready(p);
  }
};

class Module {
 public:
  virtual ~Module() = default;
  virtual std::string type() const = 0;  // "Linear", "Conv2d", ...
  // Registers this module's parameters as `prefix` + local name ("3.weight").
  virtual void register_parameters(ParameterArena& arena, const std::string& prefix) {
    (void)arena;
    (void)prefix;
  }
  // Output shape for an input shape; dim 0 is the batch. Throws naming the layer on a mismatch.
  virtual Shape output_shape(const Shape& input) const = 0;
  virtual Tensor forward(const Tensor& x, PassContext& ctx) = 0;
  virtual Tensor backward(const Tensor& dy, PassContext& ctx) = 0;
  // This module's own parameters, in registration order (empty before registration).
  virtual std::vector<Parameter*> parameters() const { return {}; }
  // Maps the inference forward onto ONNX nodes reading value `x` of shape `input` (dim 0 is the
  // batch) and returns the output value; `path` names the layer ("3", "2.1"; "" for the root).
  // The default throws naming the layer and its type: a layer is exportable once it says how.
  virtual std::string to_onnx(OnnxGraph& graph, const std::string& x, const Shape& input,
                              const std::string& path) const;
  // Epilogue fusion: before each forward, a Sequential offers a child the siblings after it
  // (`next`) and the input it is about to get; the child returns how many of those siblings its
  // next forward (and that forward's backward) computes as part of its own, bitwise as they
  // would, and Sequential skips them. Only parameter-free siblings may be taken. Default: none.
  virtual size_t fuse(std::span<const std::unique_ptr<Module>> next, const Tensor& x, const PassContext& ctx) {
    (void)next;
    (void)x;
    (void)ctx;
    return 0;
  }
};

}  // namespace dtrain
