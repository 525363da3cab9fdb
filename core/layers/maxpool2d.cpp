// MaxPool2d: y = max over each k x k window (padding never wins); dx[argmax] += dy.
#include <string>

#include "core/layers/layer_util.h"
#include "core/layers/layers.h"

namespace dtrain {

namespace {
std::string describe(const MaxPool2d& m) {
  return "MaxPool2d(k" + std::to_string(m.kernel()) + " s" + std::to_string(m.stride()) + " p" +
         std::to_string(m.padding()) + ")";
}
}  // namespace

MaxPool2d::MaxPool2d(int64_t kernel, int64_t stride, int64_t padding)
    : k_(kernel), stride_(stride == 0 ? kernel : stride), pad_(padding) {
  DTRAIN_CHECK(k_ > 0 && stride_ > 0 && pad_ >= 0 && 2 * pad_ <= k_, describe(*this),
               ": kernel and stride must be positive and padding at most half the kernel");
}

Shape MaxPool2d::output_shape(const Shape& input) const {
  DTRAIN_CHECK(input.size() == 4, describe(*this), ": input shape ", input.str(), ", expected [N, C, H, W]");
  DTRAIN_CHECK(input[2] + 2 * pad_ >= k_ && input[3] + 2 * pad_ >= k_, describe(*this), ": input ", input.str(),
               " is smaller than the window");
  return Shape{input[0], input[1], (input[2] + 2 * pad_ - k_) / stride_ + 1, (input[3] + 2 * pad_ - k_) / stride_ + 1};
}

Tensor MaxPool2d::forward(const Tensor& x, PassContext& ctx) {
  (void)ctx;
  const std::string name = describe(*this);
  layers::check_input(x, name);
  const Shape ys = output_shape(x.shape());
  DTRAIN_CHECK(x.dim(2) * x.dim(3) <= INT32_MAX, name, ": input plane too large for int32 argmax");
  const Device d = x.device();
  Tensor y = Tensor::empty(ys, DType::f32, d);
  argmax_ = Tensor::empty(ys, DType::i32, d);
  DTRAIN_DISPATCH(d, maxpool2d_forward, x.data<float>(), y.data<float>(), argmax_.data<int32_t>(), x.dim(0) * x.dim(1),
                  x.dim(2), x.dim(3), k_, stride_, pad_, ys[2], ys[3]);
  x_shape_ = x.shape();
  return y;
}

Tensor MaxPool2d::backward(const Tensor& dy, PassContext& ctx) {
  (void)ctx;
  const std::string name = describe(*this);
  layers::check_forwarded(argmax_.defined(), name);
  layers::check_grad(dy, argmax_.shape(), name);
  Tensor dx = Tensor::zeros(x_shape_, DType::f32, dy.device());
  DTRAIN_DISPATCH(dy.device(), maxpool2d_backward, dy.data<float>(), argmax_.data<int32_t>(), dx.data<float>(),
                  x_shape_[0] * x_shape_[1], x_shape_[2] * x_shape_[3], dy.dim(2) * dy.dim(3));
  return dx;
}

std::string MaxPool2d::to_onnx(OnnxGraph& g, const std::string& x, const Shape& input, const std::string& path) const {
  (void)input;
  return g.node("MaxPool", path, {x},
                {{"kernel_shape", std::vector<int64_t>{k_, k_}},
                 {"strides", std::vector<int64_t>{stride_, stride_}},
                 {"pads", std::vector<int64_t>{pad_, pad_, pad_, pad_}}});
}

}  // namespace dtrain
