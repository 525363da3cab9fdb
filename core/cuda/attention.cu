// CUDA causal multi-head self-attention (core/kernel_list.inc), the math of
// core/layers/attention.cpp. Per (batch n, head h), with q, k, v the [t, hd] slices of qkv at
// columns h hd, c + h hd, 2c + h hd (row stride 3c) and s = 1 / sqrt(hd):
//   forward:  S = s q k^T;  att = causal softmax(S) (row i over keys j <= i, 0 above);  out = att v
//   backward: dP = dout v^T;  dv = att^T dout;  dS = att (dP - rowsum(dP att));
//             dq = s dS k;  dk = s dS^T q
// The GEMMs are cuBLAS strided-batched calls (core/cuda/blas.cuh). Head h of batch n sits at
// n t 3c + h hd in qkv, so the heads of one batch are hd apart and the batches t 3c apart: one
// stride cannot cover both, so each GEMM batches over the larger of (b, heads) and loops over the
// smaller, which keeps the number of calls at min(b, heads) with no pointer arrays to build and
// copy to the device. S and dP/dS live in att and scratch ([b, heads, t, t]), so the softmax and
// its backward run in place there: one warp per row.
#include <climits>
#include <cmath>

#include "core/cuda/blas.cuh"
#include "core/cuda/launch.cuh"
#include "core/kernels.h"

namespace dtrain::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;  // warps per block, one row each
constexpr unsigned int kFullMask = 0xffffffffu;

// exp(m - m_new), taken as 0 for a lane that has seen no element yet (m = -inf).
__device__ inline float rescale(float m, float m_new) { return m == -INFINITY ? 0.0f : expf(m - m_new); }

// In place over each row i (row index within its [t, t] block) of s: s_j = exp(s_j - max) / sum
// over j <= i, 0 for j > i. One warp per row; each lane keeps a running max and sum over its
// columns (online softmax), the warp merges them, lane 0's result is taken by all.
__global__ void causal_softmax_kernel(float* s, int64_t rows, int t) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
  for (int64_t r = warp; r < rows; r += warps) {
    float* row = s + r * t;
    const int last = static_cast<int>(r % t);  // keys 0..last are visible
    float m = -INFINITY, sum = 0.0f;
    for (int j = lane; j <= last; j += kWarp) {
      const float v = row[j];
      if (v > m) {
        sum = sum * rescale(m, v) + 1.0f;
        m = v;
      } else {
        sum += expf(v - m);
      }
    }
    for (int o = kWarp / 2; o > 0; o /= 2) {
      const float m_other = __shfl_xor_sync(kFullMask, m, o), sum_other = __shfl_xor_sync(kFullMask, sum, o);
      const float m_new = fmaxf(m, m_other);
      sum = sum * rescale(m, m_new) + sum_other * rescale(m_other, m_new);
      m = m_new;
    }
    m = __shfl_sync(kFullMask, m, 0);
    const float inv_sum = 1.0f / __shfl_sync(kFullMask, sum, 0);
    for (int j = lane; j < t; j += kWarp) row[j] = j <= last ? expf(row[j] - m) * inv_sum : 0.0f;
  }
}

// In place over each row of dp (att's layout): dp_j = att_j (dp_j - sum_{l <= i} dp_l att_l) for
// j <= i, 0 above the diagonal. One warp per row.
__global__ void causal_softmax_backward_kernel(const float* att, float* dp, int64_t rows, int t) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
  for (int64_t r = warp; r < rows; r += warps) {
    const float* a = att + r * t;
    float* d = dp + r * t;
    const int last = static_cast<int>(r % t);
    float dot = 0.0f;
    for (int j = lane; j <= last; j += kWarp) dot += d[j] * a[j];
    for (int o = kWarp / 2; o > 0; o /= 2) dot += __shfl_xor_sync(kFullMask, dot, o);
    dot = __shfl_sync(kFullMask, dot, 0);
    for (int j = lane; j < t; j += kWarp) d[j] = j <= last ? a[j] * (d[j] - dot) : 0.0f;
  }
}

unsigned int row_blocks(int64_t rows) {
  const int64_t b = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  return static_cast<unsigned int>(b < kMaxBlocks ? b : kMaxBlocks);
}

// How the b * heads (batch, head) pairs map onto strided-batched GEMMs: `loops` calls of `batch`
// matrices each. Per operand family, the offset between calls and the stride within one call.
struct HeadGrid {
  int64_t loops, batch;
  int64_t qkv_loop, qkv_batch;  // qkv and dqkv: [b, t, 3c]
  int64_t out_loop, out_batch;  // out and dout: [b, t, c]
  int64_t att_loop, att_batch;  // att and scratch: [b, heads, t, t]
};

HeadGrid head_grid(int64_t b, int64_t t, int64_t c, int64_t heads) {
  const int64_t hd = c / heads, tt = t * t;
  if (heads <= b) return {heads, b, hd, t * 3 * c, hd, t * c, tt, heads * tt};  // loop heads, batch b
  return {b, heads, t * 3 * c, hd, t * c, hd, heads * tt, tt};                  // loop b, batch heads
}

// One matrix per (batch, head) of an operand: data of head 0 of batch 0, its row stride, and the
// offsets between calls and within a call (from HeadGrid).
template <typename T>
struct HeadMatrices {
  T* data;
  int64_t ld, loop_stride, batch_stride;
};

template <typename T>
HeadMatrices<T> qkv_part(T* qkv, int part, int64_t c, const HeadGrid& g) {
  return {qkv + part * c, 3 * c, g.qkv_loop, g.qkv_batch};
}
template <typename T>
HeadMatrices<T> heads_of_out(T* out, int64_t c, const HeadGrid& g) {
  return {out, c, g.out_loop, g.out_batch};
}
template <typename T>
HeadMatrices<T> per_head_tt(T* att, int64_t t, const HeadGrid& g) {
  return {att, t, g.att_loop, g.att_batch};
}

// For every (batch, head): C = alpha op(A) op(B), row-major [m, n] (C is written, not read).
void gemm_per_head(const HeadGrid& g, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                   HeadMatrices<const float> a, HeadMatrices<const float> b, HeadMatrices<float> c) {
  for (int64_t l = 0; l < g.loops; ++l)
    gemm_strided_batched(trans_a, trans_b, m, n, k, alpha, a.data + l * a.loop_stride, a.ld, a.batch_stride,
                         b.data + l * b.loop_stride, b.ld, b.batch_stride, 0.0f, c.data + l * c.loop_stride, c.ld,
                         c.batch_stride, g.batch);
}

void check_row_length(const char* kernel, int64_t t) {
  DTRAIN_CHECK(t <= INT_MAX, kernel, ": sequence length ", t, " exceeds the row kernels' 32-bit column index");
}

}  // namespace

void attention_forward(const float* qkv, float* out, float* att, int64_t b, int64_t t, int64_t c, int64_t heads) {
  if (b <= 0 || t <= 0 || c <= 0 || heads <= 0) return;
  check_row_length("cuda::attention_forward", t);
  const HeadGrid g = head_grid(b, t, c, heads);
  const int64_t hd = c / heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  gemm_per_head(g, false, true, t, t, hd, scale, qkv_part(qkv, 0, c, g), qkv_part(qkv, 1, c, g),
                per_head_tt(att, t, g));
  const int64_t rows = b * heads * t;
  causal_softmax_kernel<<<row_blocks(rows), kRowsPerBlock * kWarp, 0, current_stream()>>>(att, rows,
                                                                                          static_cast<int>(t));
  DTRAIN_CUDA_CHECK_LAUNCH();
  gemm_per_head(g, false, false, t, hd, t, 1.0f, per_head_tt<const float>(att, t, g), qkv_part(qkv, 2, c, g),
                heads_of_out(out, c, g));
}

void attention_backward(const float* dout, const float* qkv, const float* att, float* dqkv, float* scratch, int64_t b,
                        int64_t t, int64_t c, int64_t heads) {
  if (b <= 0 || t <= 0 || c <= 0 || heads <= 0) return;
  check_row_length("cuda::attention_backward", t);
  const HeadGrid g = head_grid(b, t, c, heads);
  const int64_t hd = c / heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const HeadMatrices<const float> q = qkv_part(qkv, 0, c, g), k = qkv_part(qkv, 1, c, g), v = qkv_part(qkv, 2, c, g);
  const HeadMatrices<const float> dy = heads_of_out(dout, c, g), p = per_head_tt(att, t, g);
  gemm_per_head(g, false, true, t, t, hd, 1.0f, dy, v, per_head_tt(scratch, t, g));  // dP = dout v^T
  gemm_per_head(g, true, false, t, hd, t, 1.0f, p, dy, qkv_part(dqkv, 2, c, g));     // dv = att^T dout
  const int64_t rows = b * heads * t;
  causal_softmax_backward_kernel<<<row_blocks(rows), kRowsPerBlock * kWarp, 0, current_stream()>>>(att, scratch, rows,
                                                                                                   static_cast<int>(t));
  DTRAIN_CUDA_CHECK_LAUNCH();
  const HeadMatrices<const float> ds = per_head_tt<const float>(scratch, t, g);
  gemm_per_head(g, false, false, t, hd, t, scale, ds, k, qkv_part(dqkv, 0, c, g));  // dq = s dS k
  gemm_per_head(g, true, false, t, hd, t, scale, ds, q, qkv_part(dqkv, 1, c, g));   // dk = s dS^T q
}

}  // namespace dtrain::cuda
