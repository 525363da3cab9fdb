// Flatten: [N, d1, d2, ...] -> [N, d1*d2*...] as a view; backward views dy back.
#include "core/layers/layer_util.h"
#include "core/layers/layers.h"

namespace dtrain {

Shape Flatten::output_shape(const Shape& input) const {
  DTRAIN_CHECK(input.size() >= 1, "Flatten: input has no batch dim, expected [N, ...]");
  int64_t features = 1;
  for (int i = 1; i < input.size(); ++i) features *= input[i];
  return Shape{input[0], features};
}

Tensor Flatten::forward(const Tensor& x, PassContext& ctx) {
  (void)ctx;
  DTRAIN_CHECK(x.defined() && x.is_contiguous(), "Flatten: input must be a defined contiguous tensor");
  x_shape_ = x.shape();
  return x.view(output_shape(x.shape()));
}

Tensor Flatten::backward(const Tensor& dy, PassContext& ctx) {
  (void)ctx;
  layers::check_forwarded(!x_shape_.empty(), "Flatten");
  layers::check_grad(dy, output_shape(x_shape_), "Flatten");
  return dy.view(x_shape_);
}

std::string Flatten::to_onnx(OnnxGraph& g, const std::string& x, const Shape& input, const std::string& path) const {
  (void)input;
  return g.node("Flatten", path, {x}, {{"axis", int64_t{1}}});
}

}  // namespace dtrain
