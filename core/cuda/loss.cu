// CUDA losses (core/kernel_list.inc): softmax, softmax cross-entropy and squared error.
//   probs = exp(z - max z) / sum exp(z - max z) per row
//   loss  = -log probs[label] = log sum exp(z - max z) - (z[label] - max z)  (finite even when
//           probs[label] underflows to 0)
//   dlogits = (probs - onehot(label)) scale;  sq = (pred - target)^2;  dpred = 2 (pred - target) scale
#include "core/cuda/launch.cuh"
#include "core/kernels.h"

namespace dtrain::cuda {
namespace {

constexpr int kRowThreads = 128;

struct RowMaxSum {
  float max, sum;
};

// One row's softmax by the whole block: p_j = exp(z_j - m) / s with m = max_j z_j and
// s = sum_j exp(z_j - m); returns m and s to every thread.
__device__ RowMaxSum softmax_row(const float* z, float* p, int64_t cols) {
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, z[j]);
  m = block_max(m);
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += expf(z[j] - m);
  s = block_sum(s);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) p[j] = expf(z[j] - m) / s;
  return {m, s};
}

__global__ void softmax_rows_kernel(const float* x, float* y, int64_t rows, int64_t cols) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) softmax_row(x + r * cols, y + r * cols, cols);
}

__global__ void softmax_xent_forward_kernel(const float* logits, const int64_t* labels, float* probs, float* losses,
                                            int64_t rows, int64_t classes) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* z = logits + r * classes;
    const RowMaxSum row = softmax_row(z, probs + r * classes, classes);
    if (threadIdx.x == 0) losses[r] = logf(row.sum) - (z[labels[r]] - row.max);
  }
}

template <typename Index>
__global__ void softmax_xent_backward_kernel(const float* probs, const int64_t* labels, float* dlogits, Index rows,
                                             Index classes, float scale) {
  DTRAIN_GRID_STRIDE_AS(Index, o, rows * classes) {
    const float onehot = labels[o / classes] == o % classes ? 1.0f : 0.0f;
    dlogits[o] = (probs[o] - onehot) * scale;
  }
}

__global__ void mse_forward_kernel(const float* pred, const float* target, float* sq, int64_t n) {
  DTRAIN_GRID_STRIDE(i, n) {
    const float d = pred[i] - target[i];
    sq[i] = d * d;
  }
}

__global__ void mse_backward_kernel(const float* pred, const float* target, float* dpred, int64_t n, float scale) {
  DTRAIN_GRID_STRIDE(i, n) dpred[i] = 2.0f * (pred[i] - target[i]) * scale;
}

}  // namespace

void softmax_rows(const float* x, float* y, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  const unsigned int blocks = static_cast<unsigned int>(rows < kMaxBlocks ? rows : kMaxBlocks);
  softmax_rows_kernel<<<blocks, kRowThreads, 0, current_stream()>>>(x, y, rows, cols);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void softmax_xent_forward(const float* logits, const int64_t* labels, float* probs, float* losses, int64_t rows,
                          int64_t classes) {
  if (rows <= 0 || classes <= 0) return;
  const unsigned int blocks = static_cast<unsigned int>(rows < kMaxBlocks ? rows : kMaxBlocks);
  softmax_xent_forward_kernel<<<blocks, kRowThreads, 0, current_stream()>>>(logits, labels, probs, losses, rows,
                                                                            classes);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void softmax_xent_backward(const float* probs, const int64_t* labels, float* dlogits, int64_t rows, int64_t classes,
                           float scale) {
  if (rows <= 0 || classes <= 0) return;
  with_index_type(rows * classes, [&](auto index) {
    using Index = decltype(index);
    softmax_xent_backward_kernel<<<blocks_for(rows * classes), kThreads, 0, current_stream()>>>(
        probs, labels, dlogits, static_cast<Index>(rows), static_cast<Index>(classes), scale);
  });
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void mse_forward(const float* pred, const float* target, float* sq, int64_t n) {
  if (n <= 0) return;
  mse_forward_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(pred, target, sq, n);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void mse_backward(const float* pred, const float* target, float* dpred, int64_t n, float scale) {
  if (n <= 0) return;
  mse_backward_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(pred, target, dpred, n, scale);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

}  // namespace dtrain::cuda
