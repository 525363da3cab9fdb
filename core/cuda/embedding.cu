// CUDA embedding lookup and its gradient (core/kernel_list.inc). ids are in [0, vocab), checked
// by the caller. The same id may appear many times in a batch, so dtable accumulates with atomicAdd.
#include "core/cuda/launch.cuh"
#include "core/kernels.h"

namespace dtrain::cuda {
namespace {

// The table's offset is computed in 64 bits (ids are int64); o, its row and column in Index.
template <typename Index>
__global__ void embedding_forward_kernel(const int64_t* ids, const float* table, float* y, Index n, Index dim) {
  DTRAIN_GRID_STRIDE_AS(Index, o, n * dim) y[o] = table[ids[o / dim] * dim + o % dim];
}

template <typename Index>
__global__ void embedding_backward_kernel(const int64_t* ids, const float* dy, float* dtable, Index n, Index dim) {
  DTRAIN_GRID_STRIDE_AS(Index, o, n * dim) atomicAdd(dtable + ids[o / dim] * dim + o % dim, dy[o]);
}

}  // namespace

void embedding_forward(const int64_t* ids, const float* table, float* y, int64_t n, int64_t dim) {
  if (n <= 0 || dim <= 0) return;
  with_index_type(n * dim, [&](auto index) {
    using Index = decltype(index);
    embedding_forward_kernel<Index><<<blocks_for(n * dim), kThreads, 0, current_stream()>>>(
        ids, table, y, static_cast<Index>(n), static_cast<Index>(dim));
  });
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void embedding_backward(const int64_t* ids, const float* dy, float* dtable, int64_t n, int64_t dim) {
  if (n <= 0 || dim <= 0) return;
  with_index_type(n * dim, [&](auto index) {
    using Index = decltype(index);
    embedding_backward_kernel<Index><<<blocks_for(n * dim), kThreads, 0, current_stream()>>>(
        ids, dy, dtable, static_cast<Index>(n), static_cast<Index>(dim));
  });
  DTRAIN_CUDA_CHECK_LAUNCH();
}

}  // namespace dtrain::cuda
