// CPU kernels: fills, elementwise arithmetic, conversions and reductions (core/kernel_list.inc).
// Each splits its elements (or rows) over cpu::parallel_for; each range runs the serial loop.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/cpu/parallel.h"
#include "core/kernels.h"
#include "core/types.h"

namespace dtrain::cpu {

namespace {

// Reductions add fixed blocks of this many elements, each in 4 interleaved double lanes (one
// chain of dependent adds ran at a quarter of the speed: the mlp's gradient norm every step) combined
// as (l0 + l1) + (l2 + l3), then the block sums in order on the caller: the same bits at any thread
// count.
constexpr int64_t kSumBlock = 8192;

template <class Term>
float blocked_sum(int64_t n, Term term) {
  const int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
  std::vector<double> block_sums(static_cast<size_t>(blocks));
  parallel_for(blocks, kElementGrain / kSumBlock, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      double lane[4] = {0, 0, 0, 0};
      const int64_t stop = std::min(n, (k + 1) * kSumBlock);
      int64_t i = k * kSumBlock;
      for (; i + 4 <= stop; i += 4)
        for (int j = 0; j < 4; ++j) lane[j] += term(i + j);
      for (int j = 0; i + j < stop; ++j) lane[j] += term(i + j);
      block_sums[static_cast<size_t>(k)] = (lane[0] + lane[1]) + (lane[2] + lane[3]);
    }
  });
  double s = 0;
  for (double block : block_sums) s += block;
  return static_cast<float>(s);
}

}  // namespace

void fill(float* x, int64_t n, float value) {
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) x[i] = value;
  });
}

void uniform_fill(float* x, int64_t n, float low, float high, RngStream stream, uint64_t offset) {
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) x[i] = low + (high - low) * rng_uniform_at(stream, offset + i);
  });
}

void normal_fill(float* x, int64_t n, float mean, float stddev, RngStream stream, uint64_t offset) {
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) x[i] = mean + stddev * rng_normal_at(stream, offset + i);
  });
}

void scale(float* x, int64_t n, float alpha) {
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) x[i] *= alpha;
  });
}

void axpy(float alpha, const float* x, float* y, int64_t n) {
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] += alpha * x[i];
  });
}

void add(const float* a, const float* b, float* y, int64_t n) {
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = a[i] + b[i];
  });
}

void f32_to_bf16(const float* x, uint16_t* y, int64_t n) {
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = to_bf16(x[i]).bits;
  });
}

void bf16_to_f32(const uint16_t* x, float* y, int64_t n) {
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = from_bf16(bf16{x[i]});
  });
}

void u8_to_f32(const uint8_t* x, float* y, int64_t n, float scale, float shift) {
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = static_cast<float>(x[i]) * scale + shift;
  });
}

void mul(const float* a, const float* b, float* y, int64_t n) {
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = a[i] * b[i];
  });
}

void affine(const float* x, float* y, int64_t n, float scale, float shift) {
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = x[i] * scale + shift;
  });
}

void erf_forward(const float* x, float* y, int64_t n) {
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = std::erf(x[i]);
  });
}

// Reductions accumulate in double so the result does not depend on n's size much.
void sum(const float* x, int64_t n, float* out) {
  *out = blocked_sum(n, [=](int64_t i) { return static_cast<double>(x[i]); });
}

void sum_squares(const float* x, int64_t n, float* out) {
  *out = blocked_sum(n, [=](int64_t i) { return static_cast<double>(x[i]) * x[i]; });
}

namespace {
int64_t argmax(const float* row, int64_t cols) {
  int64_t best = 0;
  for (int64_t c = 1; c < cols; ++c)
    if (row[c] > row[best]) best = c;
  return best;
}
}  // namespace

void argmax_rows(const float* x, int64_t rows, int64_t cols, int64_t* out) {
  parallel_for(rows, row_grain(cols), [=](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) out[r] = argmax(x + r * cols, cols);
  });
}

void count_hits(const float* x, const int64_t* labels, int64_t rows, int64_t cols, int64_t* hits) {
  int64_t n = 0;
  for (int64_t r = 0; r < rows; ++r) n += argmax(x + r * cols, cols) == labels[r];
  *hits += n;
}

}  // namespace dtrain::cpu
