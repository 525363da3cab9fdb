// CUDA layer norm over the last dim (core/kernel_list.inc):
//   mean = sum x / cols, var = sum (x - mean)^2 / cols, rstd = 1 / sqrt(var + eps)
//   xhat = (x - mean) rstd, y = xhat gamma + beta
// backward, with g = dy gamma:
//   dx = rstd (g - mean(g) - xhat mean(g xhat)),  dgamma += sum_rows dy xhat,  dbeta += sum_rows dy
// One block per row for the row statistics and dx; dgamma and dbeta are column sums
// (core/cuda/column_sum.cuh: row chunks in parallel, in a fixed order, so deterministic, no atomics).
#include "core/cuda/column_sum.cuh"
#include "core/cuda/launch.cuh"
#include "core/kernels.h"

namespace dtrain::cuda {
namespace {

constexpr int kRowThreads = 128;

__global__ void layernorm_forward_kernel(const float* x, const float* gamma, const float* beta, float* y, float* mean,
                                         float* rstd, int64_t rows, int64_t cols, float eps) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * cols;
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += xr[j];
    const float m = block_sum(s) / static_cast<float>(cols);
    float v = 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) v += (xr[j] - m) * (xr[j] - m);
    const float rs = 1.0f / sqrtf(block_sum(v) / static_cast<float>(cols) + eps);
    float* yr = y + r * cols;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = (xr[j] - m) * rs * gamma[j] + beta[j];
    if (threadIdx.x == 0) mean[r] = m, rstd[r] = rs;
  }
}

__global__ void layernorm_backward_dx_kernel(const float* dy, const float* x, const float* gamma, const float* mean,
                                             const float* rstd, float* dx, int64_t rows, int64_t cols) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * cols;
    const float* dyr = dy + r * cols;
    const float m = mean[r], rs = rstd[r];
    float sg = 0.0f, sgx = 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const float g = dyr[j] * gamma[j];
      sg += g;
      sgx += g * (xr[j] - m) * rs;
    }
    const float mean_g = block_sum(sg) / static_cast<float>(cols);
    const float mean_gx = block_sum(sgx) / static_cast<float>(cols);
    float* dxr = dx + r * cols;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
      dxr[j] = rs * (dyr[j] * gamma[j] - mean_g - (xr[j] - m) * rs * mean_gx);
  }
}

// dgamma[j] += dy[i, j] xhat[i, j], dbeta[j] += dy[i, j] (column_sums over the rows).
struct ParamTerm {
  const float *dy, *x, *mean, *rstd;
  int64_t cols;
  __device__ void operator()(int64_t i, int64_t j, float (&s)[2]) const {
    const float d = dy[i * cols + j];
    s[0] += d * (x[i * cols + j] - mean[i]) * rstd[i];
    s[1] += d;
  }
};

unsigned int row_blocks(int64_t rows) { return static_cast<unsigned int>(rows < kMaxBlocks ? rows : kMaxBlocks); }

}  // namespace

void layernorm_forward(const float* x, const float* gamma, const float* beta, float* y, float* mean, float* rstd,
                       int64_t rows, int64_t cols, float eps) {
  if (rows <= 0 || cols <= 0) return;
  layernorm_forward_kernel<<<row_blocks(rows), kRowThreads, 0, current_stream()>>>(x, gamma, beta, y, mean, rstd, rows,
                                                                                   cols, eps);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void layernorm_backward(const float* dy, const float* x, const float* gamma, const float* mean, const float* rstd,
                        float* dx, float* dgamma, float* dbeta, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  cudaStream_t stream = current_stream();
  layernorm_backward_dx_kernel<<<row_blocks(rows), kRowThreads, 0, stream>>>(dy, x, gamma, mean, rstd, dx, rows, cols);
  DTRAIN_CUDA_CHECK_LAUNCH();
  column_sums<2>(ParamTerm{dy, x, mean, rstd, cols}, rows, cols, ColumnTargets<2>{{dgamma, dbeta}}, stream);
}

}  // namespace dtrain::cuda
