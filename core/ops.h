#pragma once
// Tensor-level operations: validate shapes, dtypes and devices (errors name the op and the
// expected shape), then dispatch to the cpu:: or cuda:: kernel by the tensors' device.
#include "core/tensor.h"

namespace dtrain::ops {

// Throws unless all tensors are defined and on the same device; returns that device.
Device common_device(std::initializer_list<const Tensor*> tensors, const char* op);

// C = alpha * op(A) op(B) + beta * C for 2-D row-major f32 tensors.
void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, float alpha = 1.0f,
          float beta = 0.0f);
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);

void scale(Tensor& x, float alpha);
void axpy(float alpha, const Tensor& x, Tensor& y);
Tensor add(const Tensor& a, const Tensor& b);
float sum(const Tensor& x);           // reads the result to the host
float sum_squares(const Tensor& x);   // reads the result to the host
Tensor argmax_rows(const Tensor& x);  // [rows, cols] -> i64 [rows]
// Element type conversions: f32 <-> bf16, and u8 -> f32 with y = x * scale + shift.
Tensor to_dtype(const Tensor& x, DType dtype, float scale = 1.0f, float shift = 0.0f);

}  // namespace dtrain::ops
