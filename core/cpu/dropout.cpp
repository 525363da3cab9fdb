// CPU kernels for inverted dropout. The mask depends only on (stream, offset + i), so the CPU
// and CUDA kernels draw identical masks.
#include "core/kernels.h"

namespace dtrain::cpu {

namespace {
float keep_scale(float p) { return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f; }
}  // namespace

void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, float p, RngStream stream,
                     uint64_t offset) {
  const float s = keep_scale(p);
  for (int64_t i = 0; i < n; ++i) {
    const bool keep = rng_uniform_at(stream, offset + static_cast<uint64_t>(i)) >= p;
    mask[i] = keep ? 1 : 0;
    y[i] = keep ? x[i] * s : 0.0f;
  }
}

void dropout_backward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float p) {
  const float s = keep_scale(p);
  for (int64_t i = 0; i < n; ++i) dx[i] = mask[i] ? dy[i] * s : 0.0f;
}

}  // namespace dtrain::cpu
