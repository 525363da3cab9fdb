// CUDA GEMM through cuBLAS (core/kernel_list.inc). cuBLAS is column-major: a row-major matrix
// with row stride ld is the column-major transpose with the same ld, so the row-major
// C = op(A) op(B) is computed as the column-major C^T = op(B)^T op(A)^T, i.e. with A and B
// swapped and m and n swapped. One cuBLAS handle per thread and device, created on first use.
// gemm_strided_batched (core/cuda/blas.cuh) is the same over a batch of equally spaced matrices.
#include <cublas_v2.h>

#include <atomic>
#include <climits>
#include <initializer_list>
#include <vector>

#include "core/cuda/blas.cuh"
#include "core/cuda/launch.cuh"
#include "core/kernels.h"

namespace dtrain::cuda {
namespace {

std::atomic<gpu::GemmMath> gemm_math{gpu::GemmMath::f32};  // process-wide, see set_gemm_math

// The handles of one thread, one per device, destroyed when the thread ends.
class CublasHandles {
 public:
  CublasHandles() = default;
  CublasHandles(const CublasHandles&) = delete;
  CublasHandles& operator=(const CublasHandles&) = delete;
  ~CublasHandles() {
    for (cublasHandle_t h : handles_)
      if (h) cublasDestroy(h);
  }
  cublasHandle_t get(int device) {
    if (device >= static_cast<int>(handles_.size())) handles_.resize(device + 1, nullptr);
    if (!handles_[device]) DTRAIN_CUBLAS_CHECK(cublasCreate(&handles_[device]));
    return handles_[device];
  }

 private:
  std::vector<cublasHandle_t> handles_;
};

// The current device's handle, bound to its compute stream.
cublasHandle_t handle_for_current_stream() {
  thread_local CublasHandles handles;
  const int device = current_device();
  cublasHandle_t h = handles.get(device);
  DTRAIN_CUBLAS_CHECK(cublasSetStream(h, compute_stream(device)));
  return h;
}

// f32 in, f32 out, f32 accumulation in every mode; the fast modes round the inputs for the
// tensor cores (bf16: train.precision=bf16, tf32: train.allow_tf32).
cublasComputeType_t compute_type() {
  switch (gemm_math.load()) {
    case gpu::GemmMath::bf16: return CUBLAS_COMPUTE_32F_FAST_16BF;
    case gpu::GemmMath::tf32: return CUBLAS_COMPUTE_32F_FAST_TF32;
    default: return CUBLAS_COMPUTE_32F;
  }
}

// C = beta * C for k == 0 (beta == 0 writes zeros without reading C, as BLAS does).
__global__ void scale_matrix_kernel(float* c, int64_t m, int64_t n, int64_t ldc, float beta) {
  DTRAIN_GRID_STRIDE(i, m * n) {
    float* p = c + (i / n) * ldc + i % n;
    *p = beta == 0.0f ? 0.0f : beta * *p;
  }
}

// cuBLAS takes sizes and leading dimensions as int.
void check_fits_int(const char* what, std::initializer_list<int64_t> values, int64_t m, int64_t n, int64_t k) {
  for (int64_t v : values)
    DTRAIN_CHECK(v <= INT_MAX, what, ": size or stride ", v, " exceeds cuBLAS's 32-bit int (m=", m, " n=", n, " k=", k,
                 ")");
}

cublasOperation_t op(bool trans) { return trans ? CUBLAS_OP_T : CUBLAS_OP_N; }

}  // namespace

void set_gemm_math(gpu::GemmMath math) { gemm_math.store(math); }

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    scale_matrix_kernel<<<blocks_for(m * n), kThreads, 0, current_stream()>>>(c, m, n, ldc, beta);
    DTRAIN_CUDA_CHECK_LAUNCH();
    return;
  }
  check_fits_int("cuda::gemm", {m, n, k, lda, ldb, ldc}, m, n, k);
  DTRAIN_CUBLAS_CHECK(cublasGemmEx(handle_for_current_stream(), op(trans_b), op(trans_a), static_cast<int>(n),
                                   static_cast<int>(m), static_cast<int>(k), &alpha, b, CUDA_R_32F,
                                   static_cast<int>(ldb), a, CUDA_R_32F, static_cast<int>(lda), &beta, c, CUDA_R_32F,
                                   static_cast<int>(ldc), compute_type(), CUBLAS_GEMM_DEFAULT));
}

void gemm_strided_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                          int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b, float beta,
                          float* c, int64_t ldc, int64_t stride_c, int64_t batch) {
  if (m <= 0 || n <= 0 || batch <= 0) return;
  if (k <= 0) {
    for (int64_t i = 0; i < batch; ++i)
      gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c + i * stride_c, ldc);
    return;
  }
  check_fits_int("cuda::gemm_strided_batched", {m, n, k, lda, ldb, ldc, batch}, m, n, k);
  DTRAIN_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      handle_for_current_stream(), op(trans_b), op(trans_a), static_cast<int>(n), static_cast<int>(m),
      static_cast<int>(k), &alpha, b, CUDA_R_32F, static_cast<int>(ldb), stride_b, a, CUDA_R_32F, static_cast<int>(lda),
      stride_a, &beta, c, CUDA_R_32F, static_cast<int>(ldc), stride_c, static_cast<int>(batch), compute_type(),
      CUBLAS_GEMM_DEFAULT));
}

}  // namespace dtrain::cuda
