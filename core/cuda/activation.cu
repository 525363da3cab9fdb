// CUDA activations: ReLU and exact (erf) GELU, forward and backward (core/kernel_list.inc).
// Backward takes the forward input x.
#include "core/cuda/launch.cuh"
#include "core/kernels.h"

namespace dtrain::cuda {
namespace {

constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;

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

}  // namespace dtrain::cuda
