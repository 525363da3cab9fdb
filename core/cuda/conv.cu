// CUDA helpers for Linear and Conv2d: bias add and bias gradient over rows or channels, the
// NCHW <-> CNHW swap, im2col and its adjoint col2im (core/kernel_list.inc).
// Gradients accumulate (+=) and are deterministic: every output element is summed by one thread
// or one block in a fixed order, never with atomics. col2im gathers, for each input pixel, the
// column entries that read it, instead of scattering.
#include "core/cuda/launch.cuh"
#include "core/kernels.h"

namespace dtrain::cuda {
namespace {

__global__ void add_bias_rows_kernel(float* y, const float* bias, int64_t rows, int64_t cols) {
  DTRAIN_GRID_STRIDE(i, rows * cols) y[i] += bias[i % cols];
}

// Column sums of a [rows, cols] matrix: a block of 32 x 8 threads owns 32 columns; thread
// (tx, ty) adds rows ty, ty + 8, ... of column tx (coalesced), then the 8 partials are added in
// order. db[j] += the sum.
constexpr int kColTile = 32, kRowLanes = 8;

__global__ void sum_rows_kernel(const float* dy, float* db, int64_t rows, int64_t cols) {
  __shared__ float partial[kRowLanes][kColTile];
  for (int64_t j0 = static_cast<int64_t>(blockIdx.x) * kColTile; j0 < cols;
       j0 += static_cast<int64_t>(gridDim.x) * kColTile) {
    const int64_t j = j0 + threadIdx.x;
    float s = 0.0f;
    if (j < cols)
      for (int64_t i = threadIdx.y; i < rows; i += kRowLanes) s += dy[i * cols + j];
    partial[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && j < cols) {
      float t = 0.0f;
      for (int r = 0; r < kRowLanes; ++r) t += partial[r][threadIdx.x];
      db[j] += t;
    }
    __syncthreads();
  }
}

__global__ void add_bias_channels_kernel(float* y, const float* bias, int64_t n, int64_t c, int64_t hw) {
  DTRAIN_GRID_STRIDE(i, n * c * hw) y[i] += bias[(i / hw) % c];
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
__global__ void swap_01_kernel(const float* x, float* y, int64_t a, int64_t b, int64_t inner) {
  DTRAIN_GRID_STRIDE(o, a * b * inner) {
    const int64_t t = o % inner, rest = o / inner;
    const int64_t i = rest % a, j = rest / a;  // y[j][i][t]
    y[o] = x[(i * b + j) * inner + t];
  }
}

// cols[row, q] with row = (ch * kh + ki) * kw + kj and q = (b * oh + oy) * ow + ox reads
// x[b, ch, oy * stride - pad + ki, ox * stride - pad + kj], or 0 outside the image.
__global__ void im2col_kernel(const float* x, float* cols, int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh,
                              int64_t kw, int64_t stride, int64_t pad, int64_t oh, int64_t ow) {
  const int64_t q_count = n * oh * ow;
  DTRAIN_GRID_STRIDE(o, c * kh * kw * q_count) {
    const int64_t q = o % q_count, row = o / q_count;
    const int64_t ox = q % ow, oy = (q / ow) % oh, b = q / (ow * oh);
    const int64_t kj = row % kw, ki = (row / kw) % kh, ch = row / (kw * kh);
    const int64_t iy = oy * stride - pad + ki, ix = ox * stride - pad + kj;
    cols[o] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? x[((b * c + ch) * h + iy) * w + ix] : 0.0f;
  }
}

// dx[b, ch, iy, ix] += sum of cols[(ch * kh + ki) * kw + kj, (b * oh + oy) * ow + ox] over the
// (ki, kj) and (oy, ox) with oy * stride - pad + ki == iy and ox * stride - pad + kj == ix.
__global__ void col2im_kernel(const float* cols, float* dx, int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh,
                              int64_t kw, int64_t stride, int64_t pad, int64_t oh, int64_t ow) {
  const int64_t q_count = n * oh * ow;
  DTRAIN_GRID_STRIDE(o, n * c * h * w) {
    const int64_t ix = o % w, iy = (o / w) % h, ch = (o / (w * h)) % c, b = o / (w * h * c);
    float s = 0.0f;
    for (int64_t ki = 0; ki < kh; ++ki) {
      const int64_t ty = iy + pad - ki;  // = oy * stride
      if (ty < 0 || ty % stride != 0 || ty / stride >= oh) continue;
      const int64_t oy = ty / stride;
      for (int64_t kj = 0; kj < kw; ++kj) {
        const int64_t tx = ix + pad - kj;
        if (tx < 0 || tx % stride != 0 || tx / stride >= ow) continue;
        const int64_t ox = tx / stride;
        s += cols[((ch * kh + ki) * kw + kj) * q_count + (b * oh + oy) * ow + ox];
      }
    }
    dx[o] += s;
  }
}

}  // namespace

void add_bias_rows(float* y, const float* bias, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  add_bias_rows_kernel<<<blocks_for(rows * cols), kThreads, 0, current_stream()>>>(y, bias, rows, cols);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void sum_rows(const float* dy, float* db, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  const dim3 block(kColTile, kRowLanes);
  sum_rows_kernel<<<blocks_for(cols, kColTile), block, 0, current_stream()>>>(dy, db, rows, cols);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void add_bias_channels(float* y, const float* bias, int64_t n, int64_t c, int64_t hw) {
  if (n <= 0 || c <= 0 || hw <= 0) return;
  add_bias_channels_kernel<<<blocks_for(n * c * hw), kThreads, 0, current_stream()>>>(y, bias, n, c, hw);
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
  swap_01_kernel<<<blocks_for(a * b * inner), kThreads, 0, current_stream()>>>(x, y, a, b, inner);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void im2col(const float* x, float* cols, int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
            int64_t stride, int64_t pad, int64_t oh, int64_t ow) {
  const int64_t total = c * kh * kw * n * oh * ow;
  if (total <= 0) return;
  im2col_kernel<<<blocks_for(total), kThreads, 0, current_stream()>>>(x, cols, n, c, h, w, kh, kw, stride, pad, oh, ow);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void col2im(const float* cols, float* dx, int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
            int64_t stride, int64_t pad, int64_t oh, int64_t ow) {
  const int64_t total = n * c * h * w;
  if (total <= 0 || oh <= 0 || ow <= 0) return;
  col2im_kernel<<<blocks_for(total), kThreads, 0, current_stream()>>>(cols, dx, n, c, h, w, kh, kw, stride, pad, oh,
                                                                      ow);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

}  // namespace dtrain::cuda
