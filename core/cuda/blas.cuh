#pragma once
// cuBLAS entry points for core/cuda/*.cu beyond the kernel list's gemm (core/cuda/blas.cu): the
// same row-major convention, handle, stream and GEMM math (gpu::set_gemm_math).
#include <cstdint>

namespace dtrain::cuda {

// For i in [0, batch): C_i = alpha * op(A_i) op(B_i) + beta * C_i, row-major as in gemm, where
// X_i = x + i * stride_x (strides in elements). One cublasGemmStridedBatchedEx call.
void gemm_strided_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                          int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b, float beta,
                          float* c, int64_t ldc, int64_t stride_c, int64_t batch);

}  // namespace dtrain::cuda
