// CPU kernels: fills, elementwise arithmetic, conversions and reductions (core/kernel_list.inc).
#include <cmath>
#include <cstring>

#include "core/kernels.h"
#include "core/types.h"

namespace dtrain::cpu {

void fill(float* x, int64_t n, float value) {
  for (int64_t i = 0; i < n; ++i) x[i] = value;
}

void uniform_fill(float* x, int64_t n, float low, float high, RngStream stream, uint64_t offset) {
  for (int64_t i = 0; i < n; ++i) x[i] = low + (high - low) * rng_uniform_at(stream, offset + i);
}

void normal_fill(float* x, int64_t n, float mean, float stddev, RngStream stream, uint64_t offset) {
  for (int64_t i = 0; i < n; ++i) x[i] = mean + stddev * rng_normal_at(stream, offset + i);
}

void scale(float* x, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; ++i) x[i] *= alpha;
}

void axpy(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void add(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

void f32_to_bf16(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = to_bf16(x[i]).bits;
}

void bf16_to_f32(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = from_bf16(bf16{x[i]});
}

void u8_to_f32(const uint8_t* x, float* y, int64_t n, float scale, float shift) {
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(x[i]) * scale + shift;
}

void mul(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}

void affine(const float* x, float* y, int64_t n, float scale, float shift) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale + shift;
}

void erf_forward(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::erf(x[i]);
}

// Reductions accumulate in double so the result does not depend on n's size much.
void sum(const float* x, int64_t n, float* out) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  *out = static_cast<float>(s);
}

void sum_squares(const float* x, int64_t n, float* out) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  *out = static_cast<float>(s);
}

void argmax_rows(const float* x, int64_t rows, int64_t cols, int64_t* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    int64_t best = 0;
    for (int64_t c = 1; c < cols; ++c)
      if (row[c] > row[best]) best = c;
    out[r] = best;
  }
}

}  // namespace dtrain::cpu
