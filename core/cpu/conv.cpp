// CPU kernels for Linear and Conv2d: bias add/reduce, NCHW <-> CNHW, im2col and its adjoint.
#include <algorithm>
#include <vector>

#include "core/cpu/parallel.h"
#include "core/cpu/reduce.h"
#include "core/cpu/simd.h"
#include "core/kernels.h"

namespace dtrain::cpu {

// Each pass splits over its outputs (rows, columns, planes, channels), so every element is
// computed in the serial order whatever the thread count (core/cpu/parallel.h).
void add_bias_rows(float* y, const float* bias, int64_t rows, int64_t cols) {
  parallel_for(rows, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(1, cols)), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float* row = y + i * cols;
      for (int64_t j = 0; j < cols; ++j) row[j] += bias[j];
    }
  });
}

void sum_rows(const float* dy, float* db, int64_t rows, int64_t cols) {
  parallel_for(cols, std::max<int64_t>(16, kElementGrain / std::max<int64_t>(1, rows)), [&](int64_t b, int64_t e) {
    for (int64_t i = 0; i < rows; ++i) {
      const float* row = dy + i * cols;
      for (int64_t j = b; j < e; ++j) db[j] += row[j];
    }
  });
}

void add_bias_channels(float* y, const float* bias, int64_t n, int64_t c, int64_t hw) {
  parallel_for(n * c, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(1, hw)), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float bi = bias[i % c];
      float* plane = y + i * hw;
      for (int64_t j = 0; j < hw; ++j) plane[j] += bi;
    }
  });
}

void sum_channels(const float* dy, float* db, int64_t n, int64_t c, int64_t hw) {
  parallel_for(c, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(1, n * hw)), [&](int64_t b, int64_t e) {
    for (int64_t ci = b; ci < e; ++ci)
      for (int64_t ni = 0; ni < n; ++ni) db[ci] += sum_lanes(dy + (ni * c + ci) * hw, hw);
  });
}

void swap_01(const float* x, float* y, int64_t a, int64_t b, int64_t inner) {
  parallel_for(a * b, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(1, inner)), [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k) {
      const int64_t i = k / b, j = k % b;
      std::copy_n(x + k * inner, inner, y + (j * a + i) * inner);
    }
  });
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

namespace {
// One sample's segment of one cols row: row r = (ci*kh + ki)*kw + kj, columns oy*ow + ox read
// plane[oy*s-p+ki, ox*s-p+kj] (0 outside).
void im2col_segment(const float* plane, float* out, int64_t h, int64_t w, int64_t ki, int64_t kj, int64_t stride,
                    int64_t pad, int64_t oh, int64_t ow) {
  if (stride == 1 && oh == h && ow == w) return im2col_same_size(plane, out, h, w, ki, kj, pad);
  int64_t lo, hi;
  valid_range(w, kj, stride, pad, ow, &lo, &hi);
  for (int64_t oy = 0; oy < oh; ++oy, out += ow) {
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

// dst[j] += src[j] * mask[j]: mask is 1 or 0, and adding a zero product leaves dst as it was
// (dst starts at +0 and never becomes -0), so this is the masked scatter bitwise for finite data.
DTRAIN_CPU_CLONES void add_masked(float* dst, const float* src, const float* mask, int64_t n) {
  for (int64_t j = 0; j < n; ++j) dst[j] += src[j] * mask[j];
}

// col2im_plane for stride 1 and an output as large as the input (im2col_same_size's adjoint):
// each tap is one flat shifted add over the plane; columns[kj] masks the padding columns that
// wrapped into the next or previous row. Rows of 7-28 pixels were too short to vectorise.
void col2im_plane_same_size(const float* cols, float* plane, const float* columns, int64_t ncols, int64_t ci,
                            int64_t ni, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t pad) {
  const int64_t hw = h * w;
  for (int64_t ki = 0; ki < kh; ++ki)
    for (int64_t kj = 0; kj < kw; ++kj) {
      const float* row = cols + ((ci * kh + ki) * kw + kj) * ncols + ni * hw;
      const int64_t delta = (ki - pad) * w + (kj - pad);
      const int64_t lo = std::clamp<int64_t>(-delta, 0, hw), hi = std::clamp<int64_t>(hw - delta, lo, hw);
      add_masked(plane + lo + delta, row + lo, columns + kj * hw + lo, hi - lo);
    }
}

// columns[kj][oy*w + ox] = 1 where ox + kj - pad lies in [0, w) (the tap reads the plane), else 0.
std::vector<float> valid_columns(int64_t h, int64_t w, int64_t kw, int64_t pad) {
  std::vector<float> columns(static_cast<size_t>(kw * h * w));
  for (int64_t kj = 0; kj < kw; ++kj)
    for (int64_t j = 0; j < h * w; ++j) {
      const int64_t ix = j % w + kj - pad;
      columns[static_cast<size_t>(kj * h * w + j)] = ix >= 0 && ix < w ? 1.0f : 0.0f;
    }
  return columns;
}

// The adjoint for one input plane: plane += every tap's (ki, kj ascending) segment of sample ni.
void col2im_plane(const float* cols, float* plane, int64_t ncols, int64_t ci, int64_t ni, int64_t h, int64_t w,
                  int64_t kh, int64_t kw, int64_t stride, int64_t pad, int64_t oh, int64_t ow) {
  for (int64_t ki = 0; ki < kh; ++ki)
    for (int64_t kj = 0; kj < kw; ++kj) {
      const float* row = cols + ((ci * kh + ki) * kw + kj) * ncols + ni * oh * ow;
      int64_t lo, hi;
      valid_range(w, kj, stride, pad, ow, &lo, &hi);
      for (int64_t oy = 0; oy < oh; ++oy) {
        const int64_t iy = oy * stride - pad + ki;
        if (iy < 0 || iy >= h) continue;
        const float* in = row + oy * ow;
        const int64_t base = iy * w - pad + kj;
        if (stride == 1) {
          for (int64_t ox = lo; ox < hi; ++ox) plane[base + ox] += in[ox];
        } else {
          for (int64_t ox = lo; ox < hi; ++ox) plane[base + ox * stride] += in[ox];
        }
      }
    }
}
}  // namespace

// cols row r = (ci*kh + ki)*kw + kj, column (ni*oh + oy)*ow + ox reads x[ni, ci, oy*s-p+ki, ox*s-p+kj];
// split over (row, sample) segments.
void im2col(const float* x, float* cols, int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
            int64_t stride, int64_t pad, int64_t oh, int64_t ow) {
  const int64_t ncols = n * oh * ow, segment = oh * ow;
  parallel_for(
      c * kh * kw * n, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(1, segment)), [&](int64_t b, int64_t e) {
        for (int64_t u = b; u < e; ++u) {
          const int64_t r = u / n, ni = u % n, ci = r / (kh * kw), ki = r / kw % kh, kj = r % kw;
          im2col_segment(x + (ni * c + ci) * h * w, cols + r * ncols + ni * segment, h, w, ki, kj, stride, pad, oh, ow);
        }
      });
}

// Split over input planes, each summing its taps in the serial order.
void col2im(const float* cols, float* dx, int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
            int64_t stride, int64_t pad, int64_t oh, int64_t ow) {
  const int64_t ncols = n * oh * ow;
  const bool same_size = stride == 1 && oh == h && ow == w;
  const std::vector<float> columns = same_size ? valid_columns(h, w, kw, pad) : std::vector<float>{};
  parallel_for(n * c, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(1, kh * kw * oh * ow)),
               [&](int64_t b, int64_t e) {
                 for (int64_t p = b; p < e; ++p) {
                   const int64_t ni = p / c, ci = p % c;
                   if (same_size)
                     col2im_plane_same_size(cols, dx + p * h * w, columns.data(), ncols, ci, ni, h, w, kh, kw, pad);
                   else
                     col2im_plane(cols, dx + p * h * w, ncols, ci, ni, h, w, kh, kw, stride, pad, oh, ow);
                 }
               });
}

}  // namespace dtrain::cpu
