// CUDA activations: ReLU, exact (erf) GELU and GPT-2's tanh GELU, forward and backward
// (core/kernel_list.inc). Backward takes the forward input x.
#include <climits>

#include "core/cuda/launch.cuh"
#include "core/kernels.h"

namespace dtrain::cuda {
namespace {

constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;
constexpr float kSqrt2OverPi = 0.79788456080286535588f;
constexpr float kGeluCubic = 0.044715f;

__global__ void relu_forward_kernel(const float* x, float* y, int64_t n) {
  DTRAIN_GRID_STRIDE(i, n) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

__global__ void relu_backward_kernel(const float* x, const float* dy, float* dx, int64_t n) {
  DTRAIN_GRID_STRIDE(i, n) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

// y = 0.5 x (1 + erf(x / sqrt 2))
__global__ void gelu_forward_kernel(const float* x, float* y, int64_t n) {
  DTRAIN_GRID_STRIDE(i, n) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * kInvSqrt2));
}

// dy/dx = Phi(x) + x phi(x) = 0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi)
__global__ void gelu_backward_kernel(const float* x, const float* dy, float* dx, int64_t n) {
  DTRAIN_GRID_STRIDE(i, n) {
    const float v = x[i];
    const float cdf = 0.5f * (1.0f + erff(v * kInvSqrt2));
    const float pdf = kInvSqrt2Pi * expf(-0.5f * v * v);
    dx[i] = dy[i] * (cdf + v * pdf);
  }
}

// y = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)
template <typename Index>
__global__ void gelu_tanh_forward_kernel(const float* x, float* y, Index n) {
  DTRAIN_GRID_STRIDE_AS(Index, i, n) {
    const float v = x[i];
    y[i] = 0.5f * v * (1.0f + tanhf(kSqrt2OverPi * (v + kGeluCubic * v * v * v)));
  }
}

// dy/dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
template <typename Index>
__global__ void gelu_tanh_backward_kernel(const float* x, const float* dy, float* dx, Index n) {
  DTRAIN_GRID_STRIDE_AS(Index, i, n) {
    const float v = x[i];
    const float th = tanhf(kSqrt2OverPi * (v + kGeluCubic * v * v * v));
    const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * v * v);
    dx[i] = dy[i] * (0.5f * (1.0f + th) + 0.5f * v * (1.0f - th * th) * du);
  }
}

}  // namespace

void relu_forward(const float* x, float* y, int64_t n) {
  if (n <= 0) return;
  relu_forward_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(x, y, n);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void relu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  if (n <= 0) return;
  relu_backward_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(x, dy, dx, n);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void gelu_forward(const float* x, float* y, int64_t n) {
  if (n <= 0) return;
  gelu_forward_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(x, y, n);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void gelu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  if (n <= 0) return;
  gelu_backward_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(x, dy, dx, n);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void gelu_tanh_forward(const float* x, float* y, int64_t n) {
  if (n <= 0) return;
  if (fits_int32_grid(n))
    gelu_tanh_forward_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(x, y, static_cast<int32_t>(n));
  else
    gelu_tanh_forward_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(x, y, n);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

template <typename Index>
__global__ void tanh_forward_kernel(const float* x, float* y, Index n) {
  DTRAIN_GRID_STRIDE_AS(Index, i, n) { y[i] = tanhf(x[i]); }
}

void tanh_forward(const float* x, float* y, int64_t n) {
  if (n <= 0) return;
  with_index_type(n, [&](auto index) {
    using Index = decltype(index);
    tanh_forward_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(x, y, static_cast<Index>(n));
  });
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void gelu_tanh_backward(const float* x, const float* dy, float* dx, int64_t n) {
  if (n <= 0) return;
  if (fits_int32_grid(n))
    gelu_tanh_backward_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(x, dy, dx, static_cast<int32_t>(n));
  else
    gelu_tanh_backward_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(x, dy, dx, n);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

}  // namespace dtrain::cuda
