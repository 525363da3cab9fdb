// ReLU and GELU (exact, or the tanh approximation): elementwise, out of place; backward uses the saved input.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

#include "core/cpu/parallel.h"
#include "core/layers/layer_util.h"
#include "core/layers/layers.h"

namespace dtrain {

// ---- its CPU kernels (declared in core/kernel_list.inc; core/cuda/activation.cu has the CUDA ones)
// Backward takes the forward input.
namespace cpu {

void relu_forward(const float* x, float* y, int64_t n) {
  parallel_for(n, kElementGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
  });
}

// dy is read unconditionally so the select vectorises (a load under the condition kept it a
// branch, mispredicted on every other element: 5x slower than the forward).
void relu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  parallel_for(n, kElementGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float g = dy[i];
      dx[i] = x[i] > 0.0f ? g : 0.0f;
    }
  });
}

namespace {
constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;
}  // namespace

// y = x Phi(x), Phi(x) = 0.5 (1 + erf(x / sqrt 2))
void gelu_forward(const float* x, float* y, int64_t n) {
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * kInvSqrt2));
  });
}

// dy/dx = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
void gelu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float cdf = 0.5f * (1.0f + std::erf(x[i] * kInvSqrt2));
      const float pdf = kInvSqrt2Pi * std::exp(-0.5f * x[i] * x[i]);
      dx[i] = dy[i] * (cdf + x[i] * pdf);
    }
  });
}

namespace {
constexpr float kSqrt2OverPi = 0.79788456080286535588f;
constexpr float kGeluCubic = 0.044715f;

// exp(x) for x <= 0, relative error below 3e-7, branch-free so the loops below vectorise
// (std::tanh and std::exp are library calls per element, which cost 40 % of a gpt step):
// x = n ln2 + r with |r| <= ln2 / 2, exp(r) by its Taylor polynomial of degree 6, 2^n through the
// exponent bits. Only non-positive arguments: with both signs allowed (clamped to [-87, 88]) the
// vectorised loop ran 7x slower on Intel (SSE: 20 ms per 1M elements against 3 ms).
inline float exp_nonpositive(float x) {
  x = std::max(x, -87.0f);
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  const float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
  const float p =
      1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
  return p * std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
}

// 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3); with e = exp(-2|u|):
// 1 / (1 + e) for u >= 0, e / (1 + e) below.
inline float gelu_tanh_gate(float x) {
  const float u = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
  const float e = exp_nonpositive(-2.0f * std::abs(u));
  const float inv = 1.0f / (1.0f + e);
  return u >= 0.0f ? inv : e * inv;
}
}  // namespace

// y = 0.5 x (1 + tanh(u)) = x s, s = 1 / (1 + exp(-2u))
void gelu_tanh_forward(const float* x, float* y, int64_t n) {
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = x[i] * gelu_tanh_gate(x[i]);
  });
}

// tanh(x) = sign(x) (1 - e) / (1 + e), e = exp(-2|x|); below |x| = 1/16, where 1 - e loses
// relative precision, its Taylor polynomial to x^7 (error below 1e-10 there).
void tanh_forward(const float* x, float* y, int64_t n) {
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float v = x[i], a = std::abs(v), e = exp_nonpositive(-2.0f * a);
      const float t = std::copysign((1.0f - e) / (1.0f + e), v);
      const float v2 = v * v;
      const float small = v * (1.0f + v2 * (-1.0f / 3 + v2 * (2.0f / 15 + v2 * (-17.0f / 315))));
      y[i] = a < 0.0625f ? small : t;
    }
  });
}

// dy/dx = s + x 2 s (1 - s) du/dx, du/dx = sqrt(2/pi) (1 + 3 0.044715 x^2)
// (0.5 (1 - tanh^2 u) = 2 s (1 - s))
void gelu_tanh_backward(const float* x, const float* dy, float* dx, int64_t n) {
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float s = gelu_tanh_gate(x[i]);
      const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x[i] * x[i]);
      dx[i] = dy[i] * (s + x[i] * 2.0f * s * (1.0f - s) * du);
    }
  });
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

// GELU: y = x Phi(x); dx = dy (Phi(x) + x phi(x)), Phi/phi the standard normal cdf/pdf (or
// the tanh approximation of Phi)
Tensor GELU::forward(const Tensor& x, PassContext& ctx) {
  (void)ctx;
  layers::check_input(x, "GELU");
  Tensor y = Tensor::empty(x.shape(), DType::f32, x.device());
  if (tanh_)
    DTRAIN_DISPATCH(x.device(), gelu_tanh_forward, x.data<float>(), y.data<float>(), x.numel());
  else
    DTRAIN_DISPATCH(x.device(), gelu_forward, x.data<float>(), y.data<float>(), x.numel());
  x_ = x;
  return y;
}

Tensor GELU::backward(const Tensor& dy, PassContext& ctx) {
  (void)ctx;
  layers::check_forwarded(x_.defined(), "GELU");
  layers::check_grad(dy, x_.shape(), "GELU");
  Tensor dx = Tensor::empty(x_.shape(), DType::f32, x_.device());
  if (tanh_)
    DTRAIN_DISPATCH(x_.device(), gelu_tanh_backward, x_.data<float>(), dy.data<float>(), dx.data<float>(), x_.numel());
  else
    DTRAIN_DISPATCH(x_.device(), gelu_backward, x_.data<float>(), dy.data<float>(), dx.data<float>(), x_.numel());
  return dx;
}

std::string ReLU::to_onnx(OnnxGraph& g, const std::string& x, const Shape& input, const std::string& path) const {
  (void)input;
  return g.node("Relu", path, {x});
}

// ONNX (opset 17 has no Gelu): 0.5 x (1 + erf(x / sqrt 2)), in the order the CPU kernel computes it;
// tanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
std::string GELU::to_onnx(OnnxGraph& g, const std::string& x, const Shape& input, const std::string& path) const {
  (void)input;
  if (tanh_) {
    const std::string x3 = g.node("Mul", path, {g.node("Mul", path, {x, x}), x});
    const std::string inner = g.node("Add", path, {x, g.node("Mul", path, {x3, g.scalar("gelu_cubic", 0.044715f)})});
    const std::string u = g.node("Mul", path, {inner, g.scalar("gelu_sqrt_2_over_pi", 0.79788456080286535588f)});
    const std::string one_plus = g.node("Add", path, {g.node("Tanh", path, {u}), g.scalar("gelu_one", 1.0f)});
    const std::string half_x = g.node("Mul", path, {x, g.scalar("gelu_half", 0.5f)});
    return g.node("Mul", path, {half_x, one_plus});
  }
  const std::string a = g.node("Mul", path, {x, g.scalar("gelu_inv_sqrt2", 0.70710678118654752440f)});
  const std::string one_plus = g.node("Add", path, {g.node("Erf", path, {a}), g.scalar("gelu_one", 1.0f)});
  const std::string half_x = g.node("Mul", path, {x, g.scalar("gelu_half", 0.5f)});
  return g.node("Mul", path, {half_x, one_plus});
}

}  // namespace dtrain
