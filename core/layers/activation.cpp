// ReLU and exact GELU: elementwise, out of place; backward uses the saved input.
#include <cmath>

#include "core/layers/layer_util.h"
#include "core/layers/layers.h"

namespace dtrain {

// ---- its CPU kernels (declared in core/kernel_list.inc; core/cuda/activation.cu has the CUDA ones)
// Backward takes the forward input.
namespace cpu {

void relu_forward(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void relu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

namespace {
constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;
}  // namespace

// y = x Phi(x), Phi(x) = 0.5 (1 + erf(x / sqrt 2))
void gelu_forward(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * kInvSqrt2));
}

// dy/dx = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
void gelu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float cdf = 0.5f * (1.0f + std::erf(x[i] * kInvSqrt2));
    const float pdf = kInvSqrt2Pi * std::exp(-0.5f * x[i] * x[i]);
    dx[i] = dy[i] * (cdf + x[i] * pdf);
  }
}

}  // namespace cpu

// ---- the layer

// ReLU: y = max(x, 0); dx = dy [x > 0]
Tensor ReLU::forward(const Tensor& x, PassContext& ctx) {
  (void)ctx;
  layers::check_input(x, "ReLU");
  Tensor y = Tensor::empty(x.shape(), DType::f32, x.device());
  DTRAIN_DISPATCH(x.device(), relu_forward, x.data<float>(), y.data<float>(), x.numel());
  x_ = x;
  return y;
}

Tensor ReLU::backward(const Tensor& dy, PassContext& ctx) {
  (void)ctx;
  layers::check_forwarded(x_.defined(), "ReLU");
  layers::check_grad(dy, x_.shape(), "ReLU");
  Tensor dx = Tensor::empty(x_.shape(), DType::f32, x_.device());
  DTRAIN_DISPATCH(x_.device(), relu_backward, x_.data<float>(), dy.data<float>(), dx.data<float>(), x_.numel());
  return dx;
}

// GELU: y = x Phi(x); dx = dy (Phi(x) + x phi(x)), Phi/phi the standard normal cdf/pdf
Tensor GELU::forward(const Tensor& x, PassContext& ctx) {
  (void)ctx;
  layers::check_input(x, "GELU");
  Tensor y = Tensor::empty(x.shape(), DType::f32, x.device());
  DTRAIN_DISPATCH(x.device(), gelu_forward, x.data<float>(), y.data<float>(), x.numel());
  x_ = x;
  return y;
}

Tensor GELU::backward(const Tensor& dy, PassContext& ctx) {
  (void)ctx;
  layers::check_forwarded(x_.defined(), "GELU");
  layers::check_grad(dy, x_.shape(), "GELU");
  Tensor dx = Tensor::empty(x_.shape(), DType::f32, x_.device());
  DTRAIN_DISPATCH(x_.device(), gelu_backward, x_.data<float>(), dy.data<float>(), dx.data<float>(), x_.numel());
  return dx;
}

std::string ReLU::to_onnx(OnnxGraph& g, const std::string& x, const Shape& input, const std::string& path) const {
  (void)input;
  return g.node("Relu", path, {x});
}

// ONNX (opset 17 has no Gelu): 0.5 x (1 + erf(x / sqrt 2)), in the order the CPU kernel computes it.
std::string GELU::to_onnx(OnnxGraph& g, const std::string& x, const Shape& input, const std::string& path) const {
  (void)input;
  const std::string a = g.node("Mul", path, {x, g.scalar("gelu_inv_sqrt2", 0.70710678118654752440f)});
  const std::string one_plus = g.node("Add", path, {g.node("Erf", path, {a}), g.scalar("gelu_one", 1.0f)});
  const std::string half_x = g.node("Mul", path, {x, g.scalar("gelu_half", 0.5f)});
  return g.node("Mul", path, {half_x, one_plus});
}

}  // namespace dtrain
