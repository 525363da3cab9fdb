// CPU optimizer updates: one pass over the flat arenas, written so the compiler vectorises them.
#include <cmath>

#include "core/kernels.h"

namespace dtrain::cpu {

// g' = g + wd p; buf = momentum buf + g'; step = nesterov ? g' + momentum buf : buf; p -= lr step
void sgd_step(float* p, const float* g, float* buf, int64_t n, float lr, float momentum, bool nesterov,
              float weight_decay) {
  for (int64_t i = 0; i < n; ++i) {
    float d = g[i] + weight_decay * p[i];
    if (buf) {
      buf[i] = momentum * buf[i] + d;
      d = nesterov ? d + momentum * buf[i] : buf[i];
    }
    p[i] -= lr * d;
  }
}

// m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr (m / bias1) / (sqrt(v / bias2) + eps)
void adam_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2, float eps,
               float weight_decay, bool decoupled, float bias1, float bias2) {
  const float decay = decoupled ? 1.0f - lr * weight_decay : 1.0f;
  const float l2 = decoupled ? 0.0f : weight_decay;
  const float inv_sqrt_bias2 = 1.0f / std::sqrt(bias2);
  const float step = lr / bias1;
  for (int64_t i = 0; i < n; ++i) {
    const float d = g[i] + l2 * p[i];
    m[i] = beta1 * m[i] + (1.0f - beta1) * d;
    v[i] = beta2 * v[i] + (1.0f - beta2) * d * d;
    p[i] = p[i] * decay - step * m[i] / (std::sqrt(v[i]) * inv_sqrt_bias2 + eps);
  }
}

// sq = a sq + (1-a) g^2; u = g / (sqrt(sq) + eps); buf = momentum buf + u (if momentum); p -= lr (buf or u)
void rmsprop_step(float* p, const float* g, float* sq, float* buf, int64_t n, float lr, float alpha, float eps,
                  float weight_decay, float momentum) {
  for (int64_t i = 0; i < n; ++i) {
    const float d = g[i] + weight_decay * p[i];
    sq[i] = alpha * sq[i] + (1.0f - alpha) * d * d;
    float u = d / (std::sqrt(sq[i]) + eps);
    if (buf) {
      buf[i] = momentum * buf[i] + u;
      u = buf[i];
    }
    p[i] -= lr * u;
  }
}

}  // namespace dtrain::cpu
