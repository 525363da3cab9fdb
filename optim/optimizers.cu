// CUDA optimizer updates: one grid-stride kernel per optimizer over the flat arenas; the math
// mirrors the CPU loops in optim/optimizers.cpp line for line.
#include "core/cuda/launch.cuh"
#include "optim/kernels.h"

namespace dtrain::cuda {
namespace {

__global__ void sgd_kernel(float* p, const float* g, float* buf, int64_t n, float lr, float momentum, bool nesterov,
                           float weight_decay, float grad_scale) {
  DTRAIN_GRID_STRIDE(i, n) {
    float d = g[i] * grad_scale + weight_decay * p[i];
    if (buf) {
      buf[i] = momentum * buf[i] + d;
      d = nesterov ? d + momentum * buf[i] : buf[i];
    }
    p[i] -= lr * d;
  }
}

__global__ void adam_kernel(float* p, const float* g, float* m, float* v, int64_t n, float beta1, float beta2,
                            float eps, float decay, float l2, float step, float inv_sqrt_bias2, float grad_scale) {
  DTRAIN_GRID_STRIDE(i, n) {
    const float d = g[i] * grad_scale + l2 * p[i];
    m[i] = beta1 * m[i] + (1.0f - beta1) * d;
    v[i] = beta2 * v[i] + (1.0f - beta2) * d * d;
    p[i] = p[i] * decay - step * m[i] / (sqrtf(v[i]) * inv_sqrt_bias2 + eps);
  }
}

__global__ void rmsprop_kernel(float* p, const float* g, float* sq, float* buf, int64_t n, float lr, float alpha,
                               float eps, float weight_decay, float momentum, float grad_scale) {
  DTRAIN_GRID_STRIDE(i, n) {
    const float d = g[i] * grad_scale + weight_decay * p[i];
    sq[i] = alpha * sq[i] + (1.0f - alpha) * d * d;
    float u = d / (sqrtf(sq[i]) + eps);
    if (buf) {
      buf[i] = momentum * buf[i] + u;
      u = buf[i];
    }
    p[i] -= lr * u;
  }
}

}  // namespace

void sgd_step(float* p, const float* g, float* buf, int64_t n, float lr, float momentum, bool nesterov,
              float weight_decay, float grad_scale) {
  if (n == 0) return;
  sgd_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(p, g, buf, n, lr, momentum, nesterov, weight_decay,
                                                               grad_scale);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void adam_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2, float eps,
               float weight_decay, bool decoupled, float bias1, float bias2, float grad_scale) {
  if (n == 0) return;
  const float decay = decoupled ? 1.0f - lr * weight_decay : 1.0f;
  const float l2 = decoupled ? 0.0f : weight_decay;
  adam_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(p, g, m, v, n, beta1, beta2, eps, decay, l2, lr / bias1,
                                                                1.0f / sqrtf(bias2), grad_scale);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void rmsprop_step(float* p, const float* g, float* sq, float* buf, int64_t n, float lr, float alpha, float eps,
                  float weight_decay, float momentum, float grad_scale) {
  if (n == 0) return;
  rmsprop_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(p, g, sq, buf, n, lr, alpha, eps, weight_decay,
                                                                   momentum, grad_scale);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

}  // namespace dtrain::cuda
