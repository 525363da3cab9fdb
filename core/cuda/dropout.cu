// CUDA dropout (core/kernel_list.inc). Element i is kept when rng_uniform_at(stream, offset + i)
// >= p (probability 1 - p). The CPU kernel makes the same test on the same counters, so masks
// agree bit for bit on any device; kept values are scaled by 1 / (1 - p), dropped ones are 0.
#include "core/cuda/launch.cuh"
#include "core/kernels.h"

namespace dtrain::cuda {
namespace {

__global__ void dropout_forward_kernel(const float* x, float* y, uint8_t* mask, int64_t n, float p, float keep_scale,
                                       RngStream stream, uint64_t offset) {
  DTRAIN_GRID_STRIDE(i, n) {
    const bool keep = rng_uniform_at(stream, offset + static_cast<uint64_t>(i)) >= p;
    mask[i] = keep ? 1 : 0;
    y[i] = keep ? x[i] * keep_scale : 0.0f;
  }
}

__global__ void dropout_backward_kernel(const float* dy, const uint8_t* mask, float* dx, int64_t n, float keep_scale) {
  DTRAIN_GRID_STRIDE(i, n) dx[i] = mask[i] ? dy[i] * keep_scale : 0.0f;
}

// 1 / (1 - p); p == 1 drops everything, so the scale is never applied (0 avoids an inf).
float keep_scale_for(float p) { return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f; }

}  // namespace

void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, float p, RngStream stream, uint64_t offset) {
  if (n <= 0) return;
  dropout_forward_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(x, y, mask, n, p, keep_scale_for(p), stream,
                                                                           offset);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void dropout_backward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float p) {
  if (n <= 0) return;
  dropout_backward_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(dy, mask, dx, n, keep_scale_for(p));
  DTRAIN_CUDA_CHECK_LAUNCH();
}

}  // namespace dtrain::cuda
