// CUDA helpers for Linear and Conv2d: bias add and bias gradient over rows or channels, the
// NCHW <-> CNHW swap, im2col and its adjoint col2im (core/kernel_list.inc).
// Gradients accumulate (+=) and are deterministic: every output element is summed by one thread
// or one block in a fixed order, never with atomics. col2im gathers, for each input pixel, the
// column entries that read it, instead of scattering. The layout kernels divide every element's
// index by the dims: in 32 bits (Index = int32_t) whenever the tensors allow (with_index_type).
#include <algorithm>

#include "core/cuda/column_sum.cuh"
#include "core/cuda/launch.cuh"
#include "core/kernels.h"

namespace dtrain::cuda {
namespace {

template <typename Index>
__global__ void add_bias_rows_kernel(float* y, const float* bias, Index rows, Index cols) {
  DTRAIN_GRID_STRIDE_AS(Index, i, rows * cols) y[i] += bias[i % cols];
}

// db[j] += dy[i, j] (column_sums over the rows).
struct RowTerm {
  const float* dy;
  int64_t cols;
  __device__ void operator()(int64_t i, int64_t j, float (&s)[1]) const { s[0] += dy[i * cols + j]; }
};

template <typename Index>
__global__ void add_bias_channels_kernel(float* y, const float* bias, Index n, Index c, Index hw) {
  DTRAIN_GRID_STRIDE_AS(Index, i, n * c * hw) y[i] += bias[(i / hw) % c];
}

// One block per channel: the block adds dy[:, ch, :] in a fixed tree. db[ch] += the sum.
__global__ void sum_channels_kernel(const float* dy, float* db, int64_t n, int64_t c, int64_t hw) {
  for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
    float s = 0.0f;
    for (int64_t b = 0; b < n; ++b) {
      const float* plane = dy + (b * c + ch) * hw;
      for (int64_t p = threadIdx.x; p < hw; p += blockDim.x) s += plane[p];
    }
    s = block_sum(s);
    if (threadIdx.x == 0) db[ch] += s;
  }
}

// y [b, a, inner] from x [a, b, inner]; one thread per output element (coalesced writes).
template <typename Index>
__global__ void swap_01_kernel(const float* x, float* y, Index a, Index b, Index inner) {
  DTRAIN_GRID_STRIDE_AS(Index, o, a * b * inner) {
    const Index t = o % inner, rest = o / inner;
    const Index i = rest % a, j = rest / a;  // y[j][i][t]
    y[o] = x[(i * b + j) * inner + t];
  }
}

// The sizes of a convolution's im2col / col2im, in the kernel's index type.
template <typename Index>
struct ColumnGeometry {
  Index n, c, h, w, kh, kw, stride, pad, oh, ow;
};

template <typename Index>
ColumnGeometry<Index> column_geometry(int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
                                      int64_t stride, int64_t pad, int64_t oh, int64_t ow) {
  return {static_cast<Index>(n),  static_cast<Index>(c),  static_cast<Index>(h),      static_cast<Index>(w),
          static_cast<Index>(kh), static_cast<Index>(kw), static_cast<Index>(stride), static_cast<Index>(pad),
          static_cast<Index>(oh), static_cast<Index>(ow)};
}

// cols[row, q] with row = (ch * kh + ki) * kw + kj and q = (b * oh + oy) * ow + ox reads
// x[b, ch, oy * stride - pad + ki, ox * stride - pad + kj], or 0 outside the image.
template <typename Index>
__global__ void im2col_kernel(const float* x, float* cols, ColumnGeometry<Index> g) {
  const Index q_count = g.n * g.oh * g.ow;
  DTRAIN_GRID_STRIDE_AS(Index, o, g.c * g.kh * g.kw * q_count) {
    const Index q = o % q_count, row = o / q_count;
    const Index ox = q % g.ow, oy = (q / g.ow) % g.oh, b = q / (g.ow * g.oh);
    const Index kj = row % g.kw, ki = (row / g.kw) % g.kh, ch = row / (g.kw * g.kh);
    const Index iy = oy * g.stride - g.pad + ki, ix = ox * g.stride - g.pad + kj;
    cols[o] = (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) ? x[((b * g.c + ch) * g.h + iy) * g.w + ix] : 0.0f;
  }
}

// dx[b, ch, iy, ix] += sum of cols[(ch * kh + ki) * kw + kj, (b * oh + oy) * ow + ox] over the
// (ki, kj) and (oy, ox) with oy * stride - pad + ki == iy and ox * stride - pad + kj == ix.
template <typename Index>
__global__ void col2im_kernel(const float* cols, float* dx, ColumnGeometry<Index> g) {
  const Index q_count = g.n * g.oh * g.ow;
  DTRAIN_GRID_STRIDE_AS(Index, o, g.n * g.c * g.h * g.w) {
    const Index ix = o % g.w, iy = (o / g.w) % g.h, ch = (o / (g.w * g.h)) % g.c, b = o / (g.w * g.h * g.c);
    float s = 0.0f;
    for (Index ki = 0; ki < g.kh; ++ki) {
      const Index ty = iy + g.pad - ki;  // = oy * stride
      if (ty < 0 || ty % g.stride != 0 || ty / g.stride >= g.oh) continue;
      const Index oy = ty / g.stride;
      for (Index kj = 0; kj < g.kw; ++kj) {
        const Index tx = ix + g.pad - kj;
        if (tx < 0 || tx % g.stride != 0 || tx / g.stride >= g.ow) continue;
        const Index ox = tx / g.stride;
        s += cols[((ch * g.kh + ki) * g.kw + kj) * q_count + (b * g.oh + oy) * g.ow + ox];
      }
    }
    dx[o] += s;
  }
}

}  // namespace

void add_bias_rows(float* y, const float* bias, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  with_index_type(rows * cols, [&](auto index) {
    using Index = decltype(index);
    add_bias_rows_kernel<<<blocks_for(rows * cols), kThreads, 0, current_stream()>>>(y, bias, static_cast<Index>(rows),
                                                                                     static_cast<Index>(cols));
  });
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void sum_rows(const float* dy, float* db, int64_t rows, int64_t cols) {
  column_sums<1>(RowTerm{dy, cols}, rows, cols, ColumnTargets<1>{{db}}, current_stream());
}

void add_bias_channels(float* y, const float* bias, int64_t n, int64_t c, int64_t hw) {
  if (n <= 0 || c <= 0 || hw <= 0) return;
  with_index_type(n * c * hw, [&](auto index) {
    using Index = decltype(index);
    add_bias_channels_kernel<<<blocks_for(n * c * hw), kThreads, 0, current_stream()>>>(
        y, bias, static_cast<Index>(n), static_cast<Index>(c), static_cast<Index>(hw));
  });
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void sum_channels(const float* dy, float* db, int64_t n, int64_t c, int64_t hw) {
  if (n <= 0 || c <= 0 || hw <= 0) return;
  const unsigned int blocks = static_cast<unsigned int>(c < kMaxBlocks ? c : kMaxBlocks);
  sum_channels_kernel<<<blocks, kThreads, 0, current_stream()>>>(dy, db, n, c, hw);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void swap_01(const float* x, float* y, int64_t a, int64_t b, int64_t inner) {
  if (a <= 0 || b <= 0 || inner <= 0) return;
  with_index_type(a * b * inner, [&](auto index) {
    using Index = decltype(index);
    swap_01_kernel<<<blocks_for(a * b * inner), kThreads, 0, current_stream()>>>(
        x, y, static_cast<Index>(a), static_cast<Index>(b), static_cast<Index>(inner));
  });
  DTRAIN_CUDA_CHECK_LAUNCH();
}

// The index type covers both the columns and the image: either may be the larger (a strided
// convolution's columns hold fewer values than the image, a padded one's more).
void im2col(const float* x, float* cols, int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
            int64_t stride, int64_t pad, int64_t oh, int64_t ow) {
  const int64_t total = c * kh * kw * n * oh * ow;
  if (total <= 0) return;
  with_index_type(std::max(total, n * c * h * w), [&](auto index) {
    using Index = decltype(index);
    im2col_kernel<<<blocks_for(total), kThreads, 0, current_stream()>>>(
        x, cols, column_geometry<Index>(n, c, h, w, kh, kw, stride, pad, oh, ow));
  });
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void col2im(const float* cols, float* dx, int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
            int64_t stride, int64_t pad, int64_t oh, int64_t ow) {
  const int64_t total = n * c * h * w;
  if (total <= 0 || oh <= 0 || ow <= 0) return;
  with_index_type(std::max(total, c * kh * kw * n * oh * ow), [&](auto index) {
    using Index = decltype(index);
    col2im_kernel<<<blocks_for(total), kThreads, 0, current_stream()>>>(
        cols, dx, column_geometry<Index>(n, c, h, w, kh, kw, stride, pad, oh, ow));
  });
  DTRAIN_CUDA_CHECK_LAUNCH();
}

}  // namespace dtrain::cuda
