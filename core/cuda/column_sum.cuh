#pragma once
// Column sums of a [rows, cols] grid of terms, for the parameter gradients that add over rows (a
// bias's: sum_rows; LayerNorm's gamma and beta): out_k[j] += sum_i term(i, j)_k for k < K.
// Tiles of 32 columns by 8 row lanes read coalesced. A short matrix is one pass, a block per tile;
// a tall one (a Linear's bias over N*T rows, 10 columns) also splits the rows into chunks, so the
// grid has enough blocks to fill the GPU: pass 1 writes one partial per (chunk, column), pass 2
// adds a column's partials in chunk order. Every order is fixed by (rows, cols): no atomics, the
// same bits on every run. Partials live in stream-ordered scratch (cudaMallocAsync): no host wait.
#include "core/cuda/launch.cuh"

namespace dtrain::cuda {

// The K arrays a column sum adds into.
template <int K>
struct ColumnTargets {
  float* out[K];
};

namespace column_sum_detail {

constexpr int kColTile = 32, kRowLanes = 8;
constexpr int64_t kMinChunkRows = 128;   // 16 rows per lane before a split is worth a second pass
constexpr int64_t kTargetBlocks = 1024;  // about 8 blocks per SM on the largest GPUs

// Block (tile, chunk) adds rows [chunk * chunk_rows, ...) of its 32 columns: lane ty takes rows ty,
// ty + 8, ..., then the 8 lanes are added in order. With one chunk the sum goes straight into out.
template <int K, typename Term>
__global__ void column_partials_kernel(Term term, int64_t rows, int64_t cols, int64_t chunk_rows,
                                       ColumnTargets<K> targets, float* partials) {
  __shared__ float lanes[K][kRowLanes][kColTile];
  const int64_t chunk = blockIdx.y, first = chunk * chunk_rows;
  const int64_t last = first + chunk_rows < rows ? first + chunk_rows : rows;
  for (int64_t j0 = static_cast<int64_t>(blockIdx.x) * kColTile; j0 < cols;
       j0 += static_cast<int64_t>(gridDim.x) * kColTile) {
    const int64_t j = j0 + threadIdx.x;
    float s[K] = {};
    if (j < cols)
      for (int64_t i = first + threadIdx.y; i < last; i += kRowLanes) term(i, j, s);
    for (int k = 0; k < K; ++k) lanes[k][threadIdx.y][threadIdx.x] = s[k];
    __syncthreads();
    if (threadIdx.y == 0 && j < cols)
      for (int k = 0; k < K; ++k) {
        float t = 0.0f;
        for (int l = 0; l < kRowLanes; ++l) t += lanes[k][l][threadIdx.x];
        if (partials)
          partials[(k * static_cast<int64_t>(gridDim.y) + chunk) * cols + j] = t;
        else
          targets.out[k][j] += t;
      }
    __syncthreads();
  }
}

// out_k[j] += the partials of column j, chunk 0 first.
template <int K>
__global__ void column_totals_kernel(const float* partials, int64_t chunks, int64_t cols, ColumnTargets<K> targets) {
  DTRAIN_GRID_STRIDE(j, cols) {
    for (int k = 0; k < K; ++k) {
      float t = 0.0f;
      for (int64_t c = 0; c < chunks; ++c) t += partials[(k * chunks + c) * cols + j];
      targets.out[k][j] += t;
    }
  }
}

// Row chunks for a matrix with `tiles` column tiles: 1 for short matrices, else enough for about
// kTargetBlocks blocks in all, each chunk at least kMinChunkRows rows.
inline int64_t row_chunks(int64_t rows, int64_t tiles) {
  const int64_t by_rows = rows / kMinChunkRows, by_blocks = kTargetBlocks / tiles;
  const int64_t chunks = by_rows < by_blocks ? by_rows : by_blocks;
  return chunks < 1 ? 1 : chunks;
}

}  // namespace column_sum_detail

// Term is a device functor: term(i, j, s) adds row i, column j's K terms into s[0..K). Launches on
// `stream`.
template <int K, typename Term>
void column_sums(Term term, int64_t rows, int64_t cols, ColumnTargets<K> targets, cudaStream_t stream) {
  namespace d = column_sum_detail;
  if (rows <= 0 || cols <= 0) return;
  const int64_t tiles = blocks_for(cols, d::kColTile);
  int64_t chunks = d::row_chunks(rows, tiles);
  const int64_t chunk_rows = (rows + chunks - 1) / chunks;
  chunks = (rows + chunk_rows - 1) / chunk_rows;  // no empty chunk
  const dim3 grid(static_cast<unsigned int>(tiles), static_cast<unsigned int>(chunks)),
      block(d::kColTile, d::kRowLanes);
  if (chunks == 1) {
    d::column_partials_kernel<K><<<grid, block, 0, stream>>>(term, rows, cols, rows, targets, nullptr);
    DTRAIN_CUDA_CHECK_LAUNCH();
    return;
  }
  void* scratch = nullptr;
  DTRAIN_CUDA_CHECK(cudaMallocAsync(&scratch, static_cast<size_t>(K * chunks * cols) * sizeof(float), stream));
  float* partials = static_cast<float*>(scratch);
  d::column_partials_kernel<K><<<grid, block, 0, stream>>>(term, rows, cols, chunk_rows, targets, partials);
  DTRAIN_CUDA_CHECK_LAUNCH();
  d::column_totals_kernel<K><<<blocks_for(cols), kThreads, 0, stream>>>(partials, chunks, cols, targets);
  DTRAIN_CUDA_CHECK_LAUNCH();
  DTRAIN_CUDA_CHECK(cudaFreeAsync(scratch, stream));
}

}  // namespace dtrain::cuda
