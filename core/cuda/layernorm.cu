// CUDA layer norm over the last dim (core/kernel_list.inc):
//   mean = sum x / cols, var = sum (x - mean)^2 / cols, rstd = 1 / sqrt(var + eps)
//   xhat = (x - mean) rstd, y = xhat gamma + beta
// backward, with g = dy gamma:
//   dx = rstd (g - mean(g) - xhat mean(g xhat)),  dgamma += sum_rows dy xhat,  dbeta += sum_rows dy
// One block per row for the row statistics and dx; dgamma and dbeta are column sums done by one
// thread lane per column in a fixed order, so they are deterministic (no atomics).
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

constexpr int kColTile = 32, kRowLanes = 8;

__global__ void layernorm_backward_params_kernel(const float* dy, const float* x, const float* mean, const float* rstd,
                                                 float* dgamma, float* dbeta, int64_t rows, int64_t cols) {
  __shared__ float part_gamma[kRowLanes][kColTile], part_beta[kRowLanes][kColTile];
  for (int64_t j0 = static_cast<int64_t>(blockIdx.x) * kColTile; j0 < cols;
       j0 += static_cast<int64_t>(gridDim.x) * kColTile) {
    const int64_t j = j0 + threadIdx.x;
    float sg = 0.0f, sb = 0.0f;
    if (j < cols)
      for (int64_t i = threadIdx.y; i < rows; i += kRowLanes) {
        const float d = dy[i * cols + j];
        sg += d * (x[i * cols + j] - mean[i]) * rstd[i];
        sb += d;
      }
    part_gamma[threadIdx.y][threadIdx.x] = sg;
    part_beta[threadIdx.y][threadIdx.x] = sb;
    __syncthreads();
    if (threadIdx.y == 0 && j < cols) {
      float tg = 0.0f, tb = 0.0f;
      for (int l = 0; l < kRowLanes; ++l) tg += part_gamma[l][threadIdx.x], tb += part_beta[l][threadIdx.x];
      dgamma[j] += tg;
      dbeta[j] += tb;
    }
    __syncthreads();
  }
}

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
  const dim3 block(kColTile, kRowLanes);
  layernorm_backward_params_kernel<<<blocks_for(cols, kColTile), block, 0, stream>>>(dy, x, mean, rstd, dgamma, dbeta,
                                                                                     rows, cols);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

}  // namespace dtrain::cuda
