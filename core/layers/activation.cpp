// ReLU and exact GELU: elementwise, out of place; backward uses the saved input.
#include "core/layers/layer_util.h"
#include "core/layers/layers.h"

namespace dtrain {

// ReLU: y = max(x, 0); dx = dy [x > 0]
Tensor ReLU::forward(const Tensor& x, PassContext& ctx) {
  (void)ctx;
  layers::check_input(x, "ReLU");
  Tensor y = Tensor::empty(x.shape(), DType::f32, x.device());
  DTRAIN_DISPATCH(x.device(), relu_forward, x.data<float>(), y.data<float>(), x.numel());
  x_ = x;
  return y;
}

Tensor ReLU::backward(const Tensor& dy, PassContext& ctx) {
  (void)ctx;
  layers::check_forwarded(x_.defined(), "ReLU");
  layers::check_grad(dy, x_.shape(), "ReLU");
  Tensor dx = Tensor::empty(x_.shape(), DType::f32, x_.device());
  DTRAIN_DISPATCH(x_.device(), relu_backward, x_.data<float>(), dy.data<float>(), dx.data<float>(), x_.numel());
  return dx;
}

// GELU: y = x Phi(x); dx = dy (Phi(x) + x phi(x)), Phi/phi the standard normal cdf/pdf
Tensor GELU::forward(const Tensor& x, PassContext& ctx) {
  (void)ctx;
  layers::check_input(x, "GELU");
  Tensor y = Tensor::empty(x.shape(), DType::f32, x.device());
  DTRAIN_DISPATCH(x.device(), gelu_forward, x.data<float>(), y.data<float>(), x.numel());
  x_ = x;
  return y;
}

Tensor GELU::backward(const Tensor& dy, PassContext& ctx) {
  (void)ctx;
  layers::check_forwarded(x_.defined(), "GELU");
  layers::check_grad(dy, x_.shape(), "GELU");
  Tensor dx = Tensor::empty(x_.shape(), DType::f32, x_.device());
  DTRAIN_DISPATCH(x_.device(), gelu_backward, x_.data<float>(), dy.data<float>(), dx.data<float>(), x_.numel());
  return dx;
}

}  // namespace dtrain
