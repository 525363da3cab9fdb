// CUDA reductions: sum, sum of squares, row argmax, hits counted (core/kernel_list.inc).
// sum and sum_squares are deterministic two-pass trees accumulating in double: pass 1 gives one
// partial per block (the block count depends only on n), pass 2 adds the partials in one block.
// The partials live in stream-ordered scratch (cudaMallocAsync), so nothing waits on the host.
#include "core/cuda/launch.cuh"
#include "core/kernels.h"

namespace dtrain::cuda {
namespace {

constexpr int kReduceThreads = 256;
constexpr int64_t kMaxPartials = 1024;  // pass 2 is one block of kReduceThreads over these

template <bool kSquare>
__global__ void partial_sums_kernel(const float* x, int64_t n, double* partials) {
  double s = 0;
  DTRAIN_GRID_STRIDE(i, n) {
    const double v = x[i];
    s += kSquare ? v * v : v;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

__global__ void final_sum_kernel(const double* partials, int64_t count, float* out) {
  double s = 0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) s += partials[i];
  s = block_sum(s);
  if (threadIdx.x == 0) *out = static_cast<float>(s);
}

template <bool kSquare>
void reduce_sum(const float* x, int64_t n, float* out) {
  cudaStream_t stream = current_stream();
  if (n <= 0) {
    DTRAIN_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(float), stream));
    return;
  }
  const int64_t wanted = (n + 8 * kReduceThreads - 1) / (8 * kReduceThreads);  // >= 8 items a thread
  const int64_t blocks = wanted < kMaxPartials ? wanted : kMaxPartials;
  void* scratch = nullptr;
  DTRAIN_CUDA_CHECK(cudaMallocAsync(&scratch, static_cast<size_t>(blocks) * sizeof(double), stream));
  double* partials = static_cast<double*>(scratch);
  partial_sums_kernel<kSquare><<<static_cast<unsigned int>(blocks), kReduceThreads, 0, stream>>>(x, n, partials);
  DTRAIN_CUDA_CHECK_LAUNCH();
  final_sum_kernel<<<1, kReduceThreads, 0, stream>>>(partials, blocks, out);
  DTRAIN_CUDA_CHECK_LAUNCH();
  DTRAIN_CUDA_CHECK(cudaFreeAsync(scratch, stream));
}

// One block per row; ties go to the lowest column, as in the CPU's first-strictly-greater scan.
constexpr int kArgmaxThreads = 128;

__global__ void argmax_rows_kernel(const float* x, int64_t rows, int64_t cols, int64_t* out) {
  __shared__ float best_value[kArgmaxThreads];
  __shared__ int64_t best_index[kArgmaxThreads];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* row = x + r * cols;
    float v = -INFINITY;
    int64_t idx = cols;  // "none yet": loses every comparison below
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      if (idx == cols || row[c] > v) v = row[c], idx = c;
    best_value[threadIdx.x] = v;
    best_index[threadIdx.x] = idx;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
      if (threadIdx.x < half) {
        const float ov = best_value[threadIdx.x + half];
        const int64_t oi = best_index[threadIdx.x + half];
        const int64_t mi = best_index[threadIdx.x];
        if (oi != cols && (mi == cols || ov > best_value[threadIdx.x] || (ov == best_value[threadIdx.x] && oi < mi))) {
          best_value[threadIdx.x] = ov;
          best_index[threadIdx.x] = oi;
        }
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) out[r] = best_index[0] == cols ? 0 : best_index[0];
    __syncthreads();  // the shared arrays are reused by the next row
  }
}

// One thread per row (rows of a classifier are short: 10 classes, 256 bytes); the block's count
// is added once. Integer additions commute, so the count does not depend on the order.
__global__ void count_hits_kernel(const float* x, const int64_t* labels, int64_t rows, int64_t cols,
                                  unsigned long long* hits) {
  unsigned long long n = 0;
  DTRAIN_GRID_STRIDE(r, rows) {
    const float* row = x + r * cols;
    int64_t best = 0;
    for (int64_t c = 1; c < cols; ++c)
      if (row[c] > row[best]) best = c;
    n += best == labels[r];
  }
  n = block_sum(n);
  if (threadIdx.x == 0 && n > 0) atomicAdd(hits, n);
}

}  // namespace

void sum(const float* x, int64_t n, float* out) { reduce_sum<false>(x, n, out); }

void sum_squares(const float* x, int64_t n, float* out) { reduce_sum<true>(x, n, out); }

void argmax_rows(const float* x, int64_t rows, int64_t cols, int64_t* out) {
  if (rows <= 0) return;
  if (cols <= 0) {
    DTRAIN_CUDA_CHECK(cudaMemsetAsync(out, 0, static_cast<size_t>(rows) * sizeof(int64_t), current_stream()));
    return;
  }
  const unsigned int blocks = static_cast<unsigned int>(rows < kMaxBlocks ? rows : kMaxBlocks);
  argmax_rows_kernel<<<blocks, kArgmaxThreads, 0, current_stream()>>>(x, rows, cols, out);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void count_hits(const float* x, const int64_t* labels, int64_t rows, int64_t cols, int64_t* hits) {
  if (rows <= 0 || cols <= 0) return;
  static_assert(sizeof(unsigned long long) == sizeof(int64_t));
  count_hits_kernel<<<blocks_for(rows), kThreads, 0, current_stream()>>>(x, labels, rows, cols,
                                                                         reinterpret_cast<unsigned long long*>(hits));
  DTRAIN_CUDA_CHECK_LAUNCH();
}

}  // namespace dtrain::cuda
