// CPU kernels for softmax, softmax cross-entropy and squared error, split over rows (or elements)
// by cpu::parallel_for.
#include <cmath>

#include "core/cpu/parallel.h"
#include "core/kernels.h"

namespace dtrain::cpu {
namespace {

struct RowMaxSum {
  float max, sum;
};

// The numerically stable part of a softmax over one row: m = max_j z_j, p_j = exp(z_j - m),
// s = sum_j p_j; the caller normalises p.
RowMaxSum exp_shifted_row(const float* z, float* p, int64_t cols) {
  float m = z[0];
  for (int64_t j = 1; j < cols; ++j) m = z[j] > m ? z[j] : m;
  float s = 0.0f;
  for (int64_t j = 0; j < cols; ++j) {
    p[j] = std::exp(z[j] - m);
    s += p[j];
  }
  return {m, s};
}

}  // namespace

// y_j = exp(x_j - m) / s
void softmax_rows(const float* x, float* y, int64_t rows, int64_t cols) {
  parallel_for(rows, row_grain(cols), [=](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* p = y + r * cols;
      const float s = exp_shifted_row(x + r * cols, p, cols).sum;
      for (int64_t j = 0; j < cols; ++j) p[j] /= s;
    }
  });
}

// p_j = exp(z_j - m) / s, loss = log s + m - z_label
void softmax_xent_forward(const float* logits, const int64_t* labels, float* probs, float* losses, int64_t rows,
                          int64_t classes) {
  parallel_for(rows, row_grain(classes), [=](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* z = logits + r * classes;
      float* p = probs + r * classes;
      const auto [m, s] = exp_shifted_row(z, p, classes);
      const float inv = 1.0f / s;
      for (int64_t j = 0; j < classes; ++j) p[j] *= inv;
      losses[r] = std::log(s) + m - z[labels[r]];
    }
  });
}

void softmax_xent_backward(const float* probs, const int64_t* labels, float* dlogits, int64_t rows, int64_t classes,
                           float scale) {
  parallel_for(rows, row_grain(classes), [=](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* p = probs + r * classes;
      float* d = dlogits + r * classes;
      for (int64_t j = 0; j < classes; ++j) d[j] = p[j] * scale;
      d[labels[r]] -= scale;
    }
  });
}

void mse_forward(const float* pred, const float* target, float* sq, int64_t n) {
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) sq[i] = (pred[i] - target[i]) * (pred[i] - target[i]);
  });
}

void mse_backward(const float* pred, const float* target, float* dpred, int64_t n, float scale) {
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dpred[i] = 2.0f * (pred[i] - target[i]) * scale;
  });
}

}  // namespace dtrain::cpu
