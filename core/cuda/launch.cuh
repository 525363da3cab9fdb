#pragma once
// Launch helpers shared by the kernels in core/cuda/*.cu: grid sizes for grid-stride loops, the
// post-launch check, and deterministic block reductions (a fixed tree, so the same input always
// gives the same bits). C++17 and device code only; no project headers beyond check.h.
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "core/cuda/check.h"

// for (int64_t i = first; i < n; i += whole grid): the body of every elementwise kernel.
#define DTRAIN_GRID_STRIDE(i, n)                                                         \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// The same loop with an index of type Index (int32_t where every index fits: see with_index_type).
#define DTRAIN_GRID_STRIDE_AS(Index, i, n)                                                                          \
  for (Index i = static_cast<Index>(blockIdx.x) * static_cast<Index>(blockDim.x) + static_cast<Index>(threadIdx.x); \
       i < (n); i += static_cast<Index>(blockDim.x) * static_cast<Index>(gridDim.x))

// Checks the launch just made (bad configuration, missing kernel image for this GPU).
#define DTRAIN_CUDA_CHECK_LAUNCH() DTRAIN_CUDA_CHECK(cudaGetLastError())

namespace dtrain::cuda {

constexpr int kThreads = 256;          // threads per block for elementwise kernels
constexpr int64_t kMaxBlocks = 65535;  // grid-stride loops cover the rest

// Blocks for `n` independent items (at least 1; callers return early when n == 0).
inline unsigned int blocks_for(int64_t n, int threads = kThreads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned int>(b < 1 ? 1 : (b > kMaxBlocks ? kMaxBlocks : b));
}

// Whether a grid-stride loop of kThreads-thread blocks over `largest` items, and any index below
// `largest` it computes, stays within int32_t: the loop's last step goes up to one grid past the end.
inline bool fits_int32_grid(int64_t largest) { return largest <= INT_MAX - kMaxBlocks * kThreads; }

// Calls launch(Index{}) with Index = int32_t when every index a kernel computes is below `largest`
// and fits fits_int32_grid, else int64_t. GPUs have no 64-bit integer divide: a per-element
// division or modulo by a runtime value is a long emulated sequence in 64 bits, a short one in 32,
// and those dominate the layout kernels (im2col, col2im, transposes, per-channel bias).
template <typename Launch>
void with_index_type(int64_t largest, Launch&& launch) {
  if (fits_int32_grid(largest))
    launch(int32_t{});
  else
    launch(int64_t{});
}

// Sum of `v` over the block, returned to every thread. blockDim.x must be a multiple of 32 and at
// most 1024. The order of additions depends only on blockDim.x, so the result is deterministic.
template <typename T>
__device__ T block_sum(T v) {
  __shared__ T warp_sums[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();  // warp_sums may still be read by a previous call
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = lane < warps ? warp_sums[lane] : T(0);
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return __shfl_sync(0xffffffffu, v, 0);  // lanes may differ in the last bit; all take lane 0's
}

// Max of `v` over the block, returned to every thread (same shape rules as block_sum).
__device__ inline float block_max(float v) {
  __shared__ float warp_max[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if (lane == 0) warp_max[warp] = v;
  __syncthreads();
  v = lane < warps ? warp_max[lane] : -INFINITY;
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

}  // namespace dtrain::cuda
