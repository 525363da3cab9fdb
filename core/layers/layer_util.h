#pragma once
// Checks and initialisers shared by the layers in core/layers/ (not part of the public API).
// Every message starts with the layer's description, e.g. "Linear(784->256): ...".
#include <string>

#include "core/arena.h"
#include "core/dispatch.h"
#include "core/tensor.h"

namespace dtrain::layers {

// Throws unless x is defined, contiguous and of `dtype`.
void check_input(const Tensor& x, const std::string& layer, DType dtype = DType::f32);
// Throws unless the layer's parameters are allocated on x's device.
void check_param(const Tensor& x, const Parameter* p, const std::string& layer);
// Throws unless dy has the shape of the last forward's output (and is contiguous f32).
void check_grad(const Tensor& dy, const Shape& expected, const std::string& layer);
// Throws unless every id of the i64 tensor `ids` is in [0, vocab), naming the first outside. Ids
// index memory, so they are checked on the host (a small copy for device tensors).
void check_ids(const Tensor& ids, int64_t vocab, const std::string& layer);
// Throws if backward comes before any training forward.
void check_forwarded(bool forwarded, const std::string& layer);

// A per-layer scratch buffer reused across steps: returns `buf` when it already has this shape,
// dtype and device and nothing else shares its storage, else replaces it with a new uninitialised
// tensor. Saves re-faulting tens of MiB of fresh host pages every step.
Tensor& workspace(Tensor& buf, const Shape& shape, Device device, DType dtype = DType::f32);

// PyTorch's default for Linear/Conv weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
std::function<void(Tensor&, Generator&)> fan_in_uniform_init(int64_t fan_in);
std::function<void(Tensor&, Generator&)> constant_init(float value);
std::function<void(Tensor&, Generator&)> normal_init(float mean, float stddev);

}  // namespace dtrain::layers
