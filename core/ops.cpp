#include "core/ops.h"

#include "core/dispatch.h"

namespace dtrain::ops {

Device common_device(std::initializer_list<const Tensor*> tensors, const char* op) {
  Device d;
  bool first = true;
  for (const Tensor* t : tensors) {
    DTRAIN_CHECK(t->defined(), op, ": undefined tensor argument");
    if (first) d = t->device();
    DTRAIN_CHECK(t->device() == d, op, ": tensors on different devices (", d.str(), " and ", t->device().str(),
                 "); copy explicitly with to()");
    first = false;
  }
  return d;
}

namespace {
void check_f32_2d(const Tensor& t, const char* op, const char* name) {
  DTRAIN_CHECK(t.dtype() == DType::f32 && t.ndim() == 2 && t.is_contiguous(), op, ": ", name,
               " must be a contiguous 2-D f32 tensor, got ", dtype_name(t.dtype()), " ", t.shape().str());
}
}  // namespace

void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, float alpha, float beta) {
  const Device d = common_device({&a, &b, &c}, "gemm");
  check_f32_2d(a, "gemm", "A");
  check_f32_2d(b, "gemm", "B");
  check_f32_2d(c, "gemm", "C");
  const int64_t m = trans_a ? a.dim(1) : a.dim(0), k = trans_a ? a.dim(0) : a.dim(1);
  const int64_t kb = trans_b ? b.dim(1) : b.dim(0), n = trans_b ? b.dim(0) : b.dim(1);
  DTRAIN_CHECK(k == kb && c.dim(0) == m && c.dim(1) == n, "gemm: op(A) ", m, "x", k, ", op(B) ", kb, "x", n, ", C ",
               c.shape().str(), " do not fit");
  DTRAIN_DISPATCH(d, gemm, trans_a, trans_b, m, n, k, alpha, a.data<float>(), a.dim(1), b.data<float>(), b.dim(1), beta,
                  c.data<float>(), c.dim(1));
}

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  const int64_t m = trans_a ? a.dim(1) : a.dim(0), n = trans_b ? b.dim(0) : b.dim(1);
  Tensor c = Tensor::empty(Shape{m, n}, DType::f32, a.device());
  gemm(a, trans_a, b, trans_b, c);
  return c;
}

void scale(Tensor& x, float alpha) {
  const Device d = common_device({&x}, "scale");
  DTRAIN_DISPATCH(d, scale, x.data<float>(), x.numel(), alpha);
}

void axpy(float alpha, const Tensor& x, Tensor& y) {
  const Device d = common_device({&x, &y}, "axpy");
  DTRAIN_CHECK(x.numel() == y.numel(), "axpy: ", x.shape().str(), " and ", y.shape().str());
  DTRAIN_DISPATCH(d, axpy, alpha, x.data<float>(), y.data<float>(), x.numel());
}

Tensor add(const Tensor& a, const Tensor& b) {
  const Device d = common_device({&a, &b}, "add");
  DTRAIN_CHECK(a.shape() == b.shape(), "add: shapes ", a.shape().str(), " and ", b.shape().str());
  Tensor y = Tensor::empty(a.shape(), DType::f32, d);
  DTRAIN_DISPATCH(d, add, a.data<float>(), b.data<float>(), y.data<float>(), a.numel());
  return y;
}

float sum(const Tensor& x) {
  const Device d = common_device({&x}, "sum");
  Tensor out = Tensor::empty(Shape{1}, DType::f32, d);
  DTRAIN_DISPATCH(d, sum, x.data<float>(), x.numel(), out.data<float>());
  return out.to_vector<float>()[0];
}

float sum_squares(const Tensor& x) {
  const Device d = common_device({&x}, "sum_squares");
  Tensor out = Tensor::empty(Shape{1}, DType::f32, d);
  DTRAIN_DISPATCH(d, sum_squares, x.data<float>(), x.numel(), out.data<float>());
  return out.to_vector<float>()[0];
}

Tensor argmax_rows(const Tensor& x) {
  const Device d = common_device({&x}, "argmax_rows");
  check_f32_2d(x, "argmax_rows", "x");
  Tensor out = Tensor::empty(Shape{x.dim(0)}, DType::i64, d);
  DTRAIN_DISPATCH(d, argmax_rows, x.data<float>(), x.dim(0), x.dim(1), out.data<int64_t>());
  return out;
}

Tensor to_dtype(const Tensor& x, DType dtype, float scale, float shift) {
  const Device d = common_device({&x}, "to_dtype");
  if (x.dtype() == dtype) return x;
  Tensor y = Tensor::empty(x.shape(), dtype, d);
  const int64_t n = x.numel();
  if (x.dtype() == DType::f32 && dtype == DType::bf16) {
    DTRAIN_DISPATCH(d, f32_to_bf16, x.data<float>(), static_cast<uint16_t*>(y.raw_data()), n);
  } else if (x.dtype() == DType::bf16 && dtype == DType::f32) {
    DTRAIN_DISPATCH(d, bf16_to_f32, static_cast<const uint16_t*>(x.raw_data()), y.data<float>(), n);
  } else if (x.dtype() == DType::u8 && dtype == DType::f32) {
    DTRAIN_DISPATCH(d, u8_to_f32, x.data<uint8_t>(), y.data<float>(), n, scale, shift);
  } else {
    fail("to_dtype: no conversion from ", dtype_name(x.dtype()), " to ", dtype_name(dtype));
  }
  return y;
}

}  // namespace dtrain::ops
