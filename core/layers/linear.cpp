// Linear: y = x W^T + b over the last dim of x (rows = numel / in).
#include <string>

#include "core/layers/layer_util.h"
#include "core/layers/layers.h"

namespace dtrain {

namespace {
std::string describe(const Linear& l) {
  return "Linear(" + std::to_string(l.in_features()) + "->" + std::to_string(l.out_features()) + ")";
}
}  // namespace

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, float init_std)
    : in_(in_features), out_(out_features), has_bias_(bias), init_std_(init_std) {
  DTRAIN_CHECK(in_ > 0 && out_ > 0, describe(*this), ": sizes must be positive");
}

void Linear::register_parameters(ParameterArena& arena, const std::string& prefix) {
  const bool gpt2_init = init_std_ > 0.0f;
  weight_ = &arena.add(prefix + "weight", Shape{out_, in_},
                       gpt2_init ? layers::normal_init(0.0f, init_std_) : layers::fan_in_uniform_init(in_));
  if (has_bias_)
    bias_ = &arena.add(prefix + "bias", Shape{out_},
                       gpt2_init ? layers::constant_init(0.0f) : layers::fan_in_uniform_init(in_), false);
}

std::vector<Parameter*> Linear::parameters() const {
  std::vector<Parameter*> ps;
  if (weight_) ps.push_back(weight_);
  if (bias_) ps.push_back(bias_);
  return ps;
}

Shape Linear::output_shape(const Shape& input) const {
  DTRAIN_CHECK(input.size() >= 2, describe(*this), ": input shape ", input.str(), ", expected [N, ", in_, "]");
  DTRAIN_CHECK(input.back() == in_, describe(*this), ": input has ", input.back(), " features, expected ", in_);
  Shape out = input;
  out[out.size() - 1] = out_;
  return out;
}

// forward: y[rows, out] = x[rows, in] W^T + b
Tensor Linear::forward(const Tensor& x, PassContext& ctx) {
  (void)ctx;
  const std::string name = describe(*this);
  layers::check_input(x, name);
  const Shape out_shape = output_shape(x.shape());
  layers::check_param(x, weight_, name);
  const Device d = x.device();
  const int64_t rows = x.numel() / in_;
  Tensor y = Tensor::empty(out_shape, DType::f32, d);
  DTRAIN_DISPATCH(d, gemm, false, true, rows, out_, in_, 1.0f, x.data<float>(), in_, weight_->value.data<float>(), in_,
                  0.0f, y.data<float>(), out_);
  if (bias_) DTRAIN_DISPATCH(d, add_bias_rows, y.data<float>(), bias_->value.data<float>(), rows, out_);
  x_ = x;
  return y;
}

// backward: dW += dy^T x, db += sum_rows dy, dx = dy W
Tensor Linear::backward(const Tensor& dy, PassContext& ctx) {
  const std::string name = describe(*this);
  layers::check_forwarded(x_.defined(), name);
  layers::check_grad(dy, output_shape(x_.shape()), name);
  const Device d = x_.device();
  const int64_t rows = x_.numel() / in_;
  DTRAIN_DISPATCH(d, gemm, true, false, out_, in_, rows, 1.0f, dy.data<float>(), out_, x_.data<float>(), in_, 1.0f,
                  weight_->grad.data<float>(), in_);
  if (bias_) DTRAIN_DISPATCH(d, sum_rows, dy.data<float>(), bias_->grad.data<float>(), rows, out_);
  Tensor dx;
  if (ctx.input_grad) {
    dx = Tensor::empty(x_.shape(), DType::f32, d);
    DTRAIN_DISPATCH(d, gemm, false, false, rows, in_, out_, 1.0f, dy.data<float>(), out_, weight_->value.data<float>(),
                    in_, 0.0f, dx.data<float>(), in_);
  }
  // Reverse registration order, as the arena lays them out.
  if (bias_) ctx.grad_ready(*bias_);
  ctx.grad_ready(*weight_);
  return dx;
}

// ONNX: Gemm (transB) on a 2-D input; otherwise MatMul with the transposed weight and an Add.
std::string Linear::to_onnx(OnnxGraph& g, const std::string& x, const Shape& input, const std::string& path) const {
  if (input.size() == 2) {
    std::vector<std::string> in{x, g.weight(*weight_)};
    if (bias_) in.push_back(g.param(*bias_));
    return g.node("Gemm", path, in, {{"transB", int64_t{1}}});
  }
  std::string y = g.node("MatMul", path, {x, g.weight(*weight_, /*transpose=*/true)});
  return bias_ ? g.node("Add", path, {y, g.param(*bias_)}) : y;
}

}  // namespace dtrain
