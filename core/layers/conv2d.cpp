// Conv2d by batched im2col + one GEMM. With P = OH*OW, CK = C*K*K:
//   forward:  cols[CK, N*P] = im2col(x); y_cn[OC, N*P] = W[OC, CK] cols; y = swap_01(y_cn) + b
//   backward: dy_cn = swap_01(dy); dW += dy_cn cols^T; db += sum over N, P of dy;
//             dcols = W^T dy_cn; dx = col2im(dcols) (skipped when ctx.input_grad is false)
#include <string>

#include "core/layers/layer_util.h"
#include "core/layers/layers.h"

namespace dtrain {

namespace {
std::string describe(const Conv2d& c) {
  return "Conv2d(" + std::to_string(c.in_channels()) + "->" + std::to_string(c.out_channels()) + ", k" +
         std::to_string(c.kernel()) + " s" + std::to_string(c.stride()) + " p" + std::to_string(c.padding()) + ")";
}
}  // namespace

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride, int64_t padding, bool bias)
    : in_c_(in_channels), out_c_(out_channels), k_(kernel), stride_(stride), pad_(padding), has_bias_(bias) {
  DTRAIN_CHECK(in_c_ > 0 && out_c_ > 0 && k_ > 0 && stride_ > 0 && pad_ >= 0, describe(*this),
               ": channels, kernel and stride must be positive and padding non-negative");
}

void Conv2d::register_parameters(ParameterArena& arena, const std::string& prefix) {
  const int64_t fan_in = in_c_ * k_ * k_;
  weight_ = &arena.add(prefix + "weight", Shape{out_c_, in_c_, k_, k_}, layers::fan_in_uniform_init(fan_in));
  if (has_bias_) bias_ = &arena.add(prefix + "bias", Shape{out_c_}, layers::fan_in_uniform_init(fan_in), false);
}

std::vector<Parameter*> Conv2d::parameters() const {
  std::vector<Parameter*> ps;
  if (weight_) ps.push_back(weight_);
  if (bias_) ps.push_back(bias_);
  return ps;
}

Shape Conv2d::output_shape(const Shape& input) const {
  DTRAIN_CHECK(input.size() == 4 && input[1] == in_c_, describe(*this), ": input shape ", input.str(),
               ", expected [N, ", in_c_, ", H, W]");
  const int64_t oh = (input[2] + 2 * pad_ - k_) / stride_ + 1, ow = (input[3] + 2 * pad_ - k_) / stride_ + 1;
  DTRAIN_CHECK(input[2] + 2 * pad_ >= k_ && input[3] + 2 * pad_ >= k_, describe(*this), ": input ", input.str(),
               " is smaller than the kernel");
  return Shape{input[0], out_c_, oh, ow};
}

Tensor Conv2d::forward(const Tensor& x, PassContext& ctx) {
  (void)ctx;
  const std::string name = describe(*this);
  layers::check_input(x, name);
  const Shape ys = output_shape(x.shape());
  layers::check_param(x, weight_, name);
  const Device d = x.device();
  const int64_t n = x.dim(0), h = x.dim(2), w = x.dim(3), oh = ys[2], ow = ys[3];
  const int64_t ck = in_c_ * k_ * k_, np = n * oh * ow;
  layers::workspace(cols_, Shape{ck, np}, d);
  DTRAIN_DISPATCH(d, im2col, x.data<float>(), cols_.data<float>(), n, in_c_, h, w, k_, k_, stride_, pad_, oh, ow);
  Tensor& y_cn = layers::workspace(y_cn_, Shape{out_c_, np}, d);
  DTRAIN_DISPATCH(d, gemm, false, false, out_c_, np, ck, 1.0f, weight_->value.data<float>(), ck, cols_.data<float>(),
                  np, 0.0f, y_cn.data<float>(), np);
  Tensor y = Tensor::empty(ys, DType::f32, d);
  DTRAIN_DISPATCH(d, swap_01, y_cn.data<float>(), y.data<float>(), out_c_, n, oh * ow);
  if (bias_) DTRAIN_DISPATCH(d, add_bias_channels, y.data<float>(), bias_->value.data<float>(), n, out_c_, oh * ow);
  x_shape_ = x.shape();
  return y;
}

Tensor Conv2d::backward(const Tensor& dy, PassContext& ctx) {
  const std::string name = describe(*this);
  layers::check_forwarded(cols_.defined(), name);
  const Shape ys = output_shape(x_shape_);
  layers::check_grad(dy, ys, name);
  const Device d = dy.device();
  const int64_t n = x_shape_[0], h = x_shape_[2], w = x_shape_[3], oh = ys[2], ow = ys[3];
  const int64_t ck = in_c_ * k_ * k_, np = n * oh * ow;
  Tensor& dy_cn = layers::workspace(dy_cn_, Shape{out_c_, np}, d);
  DTRAIN_DISPATCH(d, swap_01, dy.data<float>(), dy_cn.data<float>(), n, out_c_, oh * ow);
  DTRAIN_DISPATCH(d, gemm, false, true, out_c_, ck, np, 1.0f, dy_cn.data<float>(), np, cols_.data<float>(), np, 1.0f,
                  weight_->grad.data<float>(), ck);
  if (bias_) DTRAIN_DISPATCH(d, sum_channels, dy.data<float>(), bias_->grad.data<float>(), n, out_c_, oh * ow);
  Tensor dx;
  if (ctx.input_grad) {
    Tensor& dcols = layers::workspace(dcols_, Shape{ck, np}, d);
    DTRAIN_DISPATCH(d, gemm, true, false, ck, np, out_c_, 1.0f, weight_->value.data<float>(), ck, dy_cn.data<float>(),
                    np, 0.0f, dcols.data<float>(), np);
    dx = Tensor::zeros(x_shape_, DType::f32, d);
    DTRAIN_DISPATCH(d, col2im, dcols.data<float>(), dx.data<float>(), n, in_c_, h, w, k_, k_, stride_, pad_, oh, ow);
  }
  if (bias_) ctx.grad_ready(*bias_);
  ctx.grad_ready(*weight_);
  return dx;
}

std::string Conv2d::to_onnx(OnnxGraph& g, const std::string& x, const Shape& input, const std::string& path) const {
  (void)input;
  std::vector<std::string> in{x, g.weight(*weight_)};
  if (bias_) in.push_back(g.param(*bias_));
  return g.node("Conv", path, in,
                {{"kernel_shape", std::vector<int64_t>{k_, k_}},
                 {"strides", std::vector<int64_t>{stride_, stride_}},
                 {"pads", std::vector<int64_t>{pad_, pad_, pad_, pad_}}});
}

}  // namespace dtrain
