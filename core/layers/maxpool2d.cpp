// MaxPool2d: y = max over each k x k window (padding never wins); dx[argmax] += dy.
#include <limits>
#include <string>

#include "core/layers/layer_util.h"
#include "core/layers/layers.h"

namespace dtrain {

// ---- its CPU kernels (declared in core/kernel_list.inc; core/cuda/maxpool2d.cu has the CUDA ones)
// Planes [n*c, h, w]; padding never wins the max.
namespace cpu {

namespace {

// The common 2x2, stride-2 pool without padding: two input rows per output row.
void maxpool2x2_forward(const float* x, float* y, int32_t* argmax, int64_t planes, int64_t h, int64_t w, int64_t oh,
                        int64_t ow) {
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t oy = 0; oy < oh; ++oy) {
      const float* r0 = x + p * h * w + 2 * oy * w;
      const float* r1 = r0 + w;
      float* out = y + (p * oh + oy) * ow;
      if (argmax == nullptr) {  // same scan order and comparison as below, so the same value (NaN too)
        for (int64_t ox = 0; ox < ow; ++ox) {
          float m = r0[2 * ox];
          m = m < r0[2 * ox + 1] ? r0[2 * ox + 1] : m;
          m = m < r1[2 * ox] ? r1[2 * ox] : m;
          out[ox] = m < r1[2 * ox + 1] ? r1[2 * ox + 1] : m;
        }
        continue;
      }
      int32_t* at = argmax + (p * oh + oy) * ow;
      const float* in = x + p * h * w;
      for (int64_t ox = 0; ox < ow; ++ox) {  // index selects, as below: no data-dependent branches
        const int64_t i = 2 * oy * w + 2 * ox;
        int64_t best = i;
        best = in[i + 1] > in[best] ? i + 1 : best;
        best = in[i + w] > in[best] ? i + w : best;
        best = in[i + w + 1] > in[best] ? i + w + 1 : best;
        out[ox] = in[best];
        at[ox] = static_cast<int32_t>(best);
      }
    }
}

}  // namespace

void maxpool2d_forward(const float* x, float* y, int32_t* argmax, int64_t planes, int64_t h, int64_t w, int64_t k,
                       int64_t stride, int64_t pad, int64_t oh, int64_t ow) {
  if (k == 2 && stride == 2 && pad == 0) return maxpool2x2_forward(x, y, argmax, planes, h, w, oh, ow);
  for (int64_t p = 0; p < planes; ++p) {
    const float* in = x + p * h * w;
    if (pad == 0) {  // every window lies inside the plane: no bounds checks
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          const int64_t first = oy * stride * w + ox * stride;
          int64_t best_i = first;
          for (int64_t ki = 0; ki < k; ++ki)
            for (int64_t kj = 0; kj < k; ++kj) {
              const int64_t i = first + ki * w + kj;
              if (in[i] > in[best_i]) best_i = i;
            }
          const int64_t o = (p * oh + oy) * ow + ox;
          y[o] = in[best_i];
          if (argmax != nullptr) argmax[o] = static_cast<int32_t>(best_i);
        }
      continue;
    }
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        float best = -std::numeric_limits<float>::infinity();
        int64_t best_i = -1;
        for (int64_t ki = 0; ki < k; ++ki) {
          const int64_t iy = oy * stride - pad + ki;
          if (iy < 0 || iy >= h) continue;
          for (int64_t kj = 0; kj < k; ++kj) {
            const int64_t ix = ox * stride - pad + kj;
            if (ix < 0 || ix >= w) continue;
            const float v = in[iy * w + ix];
            if (v > best || best_i < 0) {
              best = v;
              best_i = iy * w + ix;
            }
          }
        }
        const int64_t o = (p * oh + oy) * ow + ox;
        y[o] = best;
        if (argmax != nullptr) argmax[o] = static_cast<int32_t>(best_i);
      }
  }
}

void maxpool2d_backward(const float* dy, const int32_t* argmax, float* dx, int64_t planes, int64_t hw, int64_t ohw) {
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t o = 0; o < ohw; ++o) {
      const int32_t i = argmax[p * ohw + o];
      if (i >= 0) dx[p * hw + i] += dy[p * ohw + o];
    }
}

}  // namespace cpu

// ---- the layer

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
