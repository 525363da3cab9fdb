// CPU kernels for Linear and Conv2d: bias add/reduce, NCHW <-> CNHW, im2col and its adjoint.
#include <algorithm>

#include "core/cpu/reduce.h"
#include "core/kernels.h"

namespace dtrain::cpu {

void add_bias_rows(float* y, const float* bias, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < rows; ++i) {
    float* row = y + i * cols;
    for (int64_t j = 0; j < cols; ++j) row[j] += bias[j];
  }
}

void sum_rows(const float* dy, float* db, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* row = dy + i * cols;
    for (int64_t j = 0; j < cols; ++j) db[j] += row[j];
  }
}

void add_bias_channels(float* y, const float* bias, int64_t n, int64_t c, int64_t hw) {
  for (int64_t i = 0; i < n * c; ++i) {
    const float b = bias[i % c];
    float* plane = y + i * hw;
    for (int64_t j = 0; j < hw; ++j) plane[j] += b;
  }
}

void sum_channels(const float* dy, float* db, int64_t n, int64_t c, int64_t hw) {
  for (int64_t i = 0; i < n * c; ++i) db[i % c] += sum_lanes(dy + i * hw, hw);
}

void swap_01(const float* x, float* y, int64_t a, int64_t b, int64_t inner) {
  for (int64_t i = 0; i < a; ++i)
    for (int64_t j = 0; j < b; ++j) std::copy_n(x + (i * b + j) * inner, inner, y + (j * a + i) * inner);
}

namespace {
// Output columns ox whose input column ox*stride - pad + kj lies in [0, w): [*lo, *hi).
void valid_range(int64_t w, int64_t kj, int64_t stride, int64_t pad, int64_t ow, int64_t* lo, int64_t* hi) {
  const int64_t first = pad - kj;  // ox*stride >= first
  *lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  const int64_t last = w - 1 + pad - kj;  // ox*stride <= last
  *hi = last < 0 ? 0 : std::min(ow, last / stride + 1);
  *lo = std::min(*lo, *hi);
}

// Stride 1 with an output as large as the input ("same" padding): row (ki, kj) of a sample is its
// input plane shifted by delta = (ki-pad)*w + (kj-pad) as one flat copy. Reads before the plane
// or past it are the padding rows; the elements that wrapped into the next or previous row are
// exactly the padding columns, zeroed afterwards. One long copy instead of oh short ones.
void im2col_same_size(const float* plane, float* out, int64_t h, int64_t w, int64_t ki, int64_t kj, int64_t pad) {
  const int64_t hw = h * w, delta = (ki - pad) * w + (kj - pad);
  const int64_t lo = std::clamp<int64_t>(-delta, 0, hw), hi = std::clamp<int64_t>(hw - delta, lo, hw);
  std::fill_n(out, lo, 0.0f);
  std::copy_n(plane + lo + delta, hi - lo, out + lo);
  std::fill_n(out + hi, hw - hi, 0.0f);
  const int64_t shift = kj - pad;  // columns ox with ox + shift outside [0, w) read padding
  const int64_t first = shift < 0 ? 0 : w - std::min(shift, w), last = shift < 0 ? std::min(-shift, w) : w;
  if (shift != 0)
    for (int64_t oy = 0; oy < h; ++oy) std::fill(out + oy * w + first, out + oy * w + last, 0.0f);
}
}  // namespace

// cols row r = (ci*kh + ki)*kw + kj, column (ni*oh + oy)*ow + ox reads x[ni, ci, oy*s-p+ki, ox*s-p+kj].
void im2col(const float* x, float* cols, int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
            int64_t stride, int64_t pad, int64_t oh, int64_t ow) {
  const int64_t ncols = n * oh * ow;
  if (stride == 1 && oh == h && ow == w) {
    for (int64_t ci = 0; ci < c; ++ci)
      for (int64_t ki = 0; ki < kh; ++ki)
        for (int64_t kj = 0; kj < kw; ++kj) {
          float* row = cols + ((ci * kh + ki) * kw + kj) * ncols;
          for (int64_t ni = 0; ni < n; ++ni)
            im2col_same_size(x + (ni * c + ci) * h * w, row + ni * h * w, h, w, ki, kj, pad);
        }
    return;
  }
  for (int64_t ci = 0; ci < c; ++ci)
    for (int64_t ki = 0; ki < kh; ++ki)
      for (int64_t kj = 0; kj < kw; ++kj) {
        float* row = cols + ((ci * kh + ki) * kw + kj) * ncols;
        int64_t lo, hi;
        valid_range(w, kj, stride, pad, ow, &lo, &hi);
        for (int64_t ni = 0; ni < n; ++ni) {
          const float* plane = x + (ni * c + ci) * h * w;
          for (int64_t oy = 0; oy < oh; ++oy) {
            float* out = row + (ni * oh + oy) * ow;
            const int64_t iy = oy * stride - pad + ki;
            if (iy < 0 || iy >= h) {
              std::fill_n(out, ow, 0.0f);
              continue;
            }
            const int64_t base = iy * w - pad + kj;  // input index of ox = 0 (may be negative)
            std::fill_n(out, lo, 0.0f);
            if (stride == 1) {  // contiguous: a plain vectorisable copy
              for (int64_t ox = lo; ox < hi; ++ox) out[ox] = plane[base + ox];
            } else {
              for (int64_t ox = lo; ox < hi; ++ox) out[ox] = plane[base + ox * stride];
            }
            std::fill_n(out + hi, ow - hi, 0.0f);
          }
        }
      }
}

void col2im(const float* cols, float* dx, int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
            int64_t stride, int64_t pad, int64_t oh, int64_t ow) {
  const int64_t ncols = n * oh * ow;
  for (int64_t ci = 0; ci < c; ++ci)
    for (int64_t ki = 0; ki < kh; ++ki)
      for (int64_t kj = 0; kj < kw; ++kj) {
        const float* row = cols + ((ci * kh + ki) * kw + kj) * ncols;
        int64_t lo, hi;
        valid_range(w, kj, stride, pad, ow, &lo, &hi);
        for (int64_t ni = 0; ni < n; ++ni) {
          float* plane = dx + (ni * c + ci) * h * w;
          for (int64_t oy = 0; oy < oh; ++oy) {
            const int64_t iy = oy * stride - pad + ki;
            if (iy < 0 || iy >= h) continue;
            const float* in = row + (ni * oh + oy) * ow;
            const int64_t base = iy * w - pad + kj;
            if (stride == 1) {
              for (int64_t ox = lo; ox < hi; ++ox) plane[base + ox] += in[ox];
            } else {
              for (int64_t ox = lo; ox < hi; ++ox) plane[base + ox * stride] += in[ox];
            }
          }
        }
      }
}

}  // namespace dtrain::cpu
