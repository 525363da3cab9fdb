// CUDA embedding lookup and its gradient (core/kernel_list.inc). ids are in [0, vocab), checked
// by the caller. The same id may appear many times in a batch, so dtable accumulates with atomicAdd.
#include "core/cuda/launch.cuh"
#include "core/kernels.h"

namespace dtrain::cuda {
namespace {

__global__ void embedding_forward_kernel(const int64_t* ids, const float* table, float* y, int64_t n, int64_t dim) {
  DTRAIN_GRID_STRIDE(o, n * dim) y[o] = table[ids[o / dim] * dim + o % dim];
}

__global__ void embedding_backward_kernel(const int64_t* ids, const float* dy, float* dtable, int64_t n, int64_t dim) {
  DTRAIN_GRID_STRIDE(o, n * dim) atomicAdd(dtable + ids[o / dim] * dim + o % dim, dy[o]);
}

}  // namespace

void embedding_forward(const int64_t* ids, const float* table, float* y, int64_t n, int64_t dim) {
  if (n <= 0 || dim <= 0) return;
  embedding_forward_kernel<<<blocks_for(n * dim), kThreads, 0, current_stream()>>>(ids, table, y, n, dim);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void embedding_backward(const int64_t* ids, const float* dy, float* dtable, int64_t n, int64_t dim) {
  if (n <= 0 || dim <= 0) return;
  embedding_backward_kernel<<<blocks_for(n * dim), kThreads, 0, current_stream()>>>(ids, dy, dtable, n, dim);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

}  // namespace dtrain::cuda
