// CUDA kernels: fills, elementwise arithmetic and conversions (core/kernel_list.inc).
// Products and sums use __fmul_rn/__fadd_rn where the CPU does a separate multiply and add, so
// no fused multiply-add changes the last bit: uniform fills, axpy and u8 conversion match the CPU
// bit for bit. normal_fill matches to a few ulps (device logf/cosf differ from the host's libm).
#include "core/cuda/launch.cuh"
#include "core/kernels.h"

namespace dtrain::cuda {
namespace {

__global__ void fill_kernel(float* x, int64_t n, float value) { DTRAIN_GRID_STRIDE(i, n) x[i] = value; }

__global__ void uniform_fill_kernel(float* x, int64_t n, float low, float high, RngStream stream, uint64_t offset) {
  DTRAIN_GRID_STRIDE(i, n) {
    x[i] = __fadd_rn(low, __fmul_rn(high - low, rng_uniform_at(stream, offset + static_cast<uint64_t>(i))));
  }
}

__global__ void normal_fill_kernel(float* x, int64_t n, float mean, float stddev, RngStream stream, uint64_t offset) {
  DTRAIN_GRID_STRIDE(i, n) {
    x[i] = __fadd_rn(mean, __fmul_rn(stddev, rng_normal_at(stream, offset + static_cast<uint64_t>(i))));
  }
}

__global__ void scale_kernel(float* x, int64_t n, float alpha) { DTRAIN_GRID_STRIDE(i, n) x[i] *= alpha; }

__global__ void axpy_kernel(float alpha, const float* x, float* y, int64_t n) {
  DTRAIN_GRID_STRIDE(i, n) y[i] = __fadd_rn(y[i], __fmul_rn(alpha, x[i]));
}

__global__ void add_kernel(const float* a, const float* b, float* y, int64_t n) {
  DTRAIN_GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}

// Round to nearest even, NaN stays a (quiet) NaN: the same bits as dtrain::to_bf16 on the host.
__global__ void f32_to_bf16_kernel(const float* x, uint16_t* y, int64_t n) {
  DTRAIN_GRID_STRIDE(i, n) {
    uint32_t u = __float_as_uint(x[i]);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) {
      y[i] = static_cast<uint16_t>((u >> 16) | 0x40);
    } else {
      u += 0x7fffu + ((u >> 16) & 1u);
      y[i] = static_cast<uint16_t>(u >> 16);
    }
  }
}

__global__ void bf16_to_f32_kernel(const uint16_t* x, float* y, int64_t n) {
  DTRAIN_GRID_STRIDE(i, n) y[i] = __uint_as_float(static_cast<uint32_t>(x[i]) << 16);
}

__global__ void u8_to_f32_kernel(const uint8_t* x, float* y, int64_t n, float scale, float shift) {
  DTRAIN_GRID_STRIDE(i, n) y[i] = __fadd_rn(__fmul_rn(static_cast<float>(x[i]), scale), shift);
}

__global__ void mul_kernel(const float* a, const float* b, float* y, int64_t n) {
  DTRAIN_GRID_STRIDE(i, n) y[i] = __fmul_rn(a[i], b[i]);
}

__global__ void affine_kernel(const float* x, float* y, int64_t n, float scale, float shift) {
  DTRAIN_GRID_STRIDE(i, n) y[i] = __fadd_rn(__fmul_rn(x[i], scale), shift);
}

__global__ void erf_forward_kernel(const float* x, float* y, int64_t n) { DTRAIN_GRID_STRIDE(i, n) y[i] = erff(x[i]); }

}  // namespace

void fill(float* x, int64_t n, float value) {
  if (n <= 0) return;
  fill_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(x, n, value);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void uniform_fill(float* x, int64_t n, float low, float high, RngStream stream, uint64_t offset) {
  if (n <= 0) return;
  uniform_fill_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(x, n, low, high, stream, offset);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void normal_fill(float* x, int64_t n, float mean, float stddev, RngStream stream, uint64_t offset) {
  if (n <= 0) return;
  normal_fill_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(x, n, mean, stddev, stream, offset);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void scale(float* x, int64_t n, float alpha) {
  if (n <= 0) return;
  scale_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(x, n, alpha);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void axpy(float alpha, const float* x, float* y, int64_t n) {
  if (n <= 0) return;
  axpy_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(alpha, x, y, n);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void add(const float* a, const float* b, float* y, int64_t n) {
  if (n <= 0) return;
  add_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(a, b, y, n);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void f32_to_bf16(const float* x, uint16_t* y, int64_t n) {
  if (n <= 0) return;
  f32_to_bf16_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(x, y, n);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void bf16_to_f32(const uint16_t* x, float* y, int64_t n) {
  if (n <= 0) return;
  bf16_to_f32_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(x, y, n);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void u8_to_f32(const uint8_t* x, float* y, int64_t n, float scale, float shift) {
  if (n <= 0) return;
  u8_to_f32_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(x, y, n, scale, shift);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void mul(const float* a, const float* b, float* y, int64_t n) {
  if (n <= 0) return;
  mul_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(a, b, y, n);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void affine(const float* x, float* y, int64_t n, float scale, float shift) {
  if (n <= 0) return;
  affine_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(x, y, n, scale, shift);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void erf_forward(const float* x, float* y, int64_t n) {
  if (n <= 0) return;
  erf_forward_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(x, y, n);
  DTRAIN_CUDA_CHECK_LAUNCH();
}

}  // namespace dtrain::cuda
