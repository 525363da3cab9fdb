// Inverted dropout: training y = x m / (1 - p) with m ~ Bernoulli(1 - p) drawn from the pass's
// dropout stream at counters [offset, offset + n); dx = dy m / (1 - p). Identity otherwise.
#include <string>

#include "core/cpu/parallel.h"
#include "core/layers/layer_util.h"
#include "core/layers/layers.h"

namespace dtrain {

// ---- its CPU kernels (declared in core/kernel_list.inc; core/cuda/dropout.cu has the CUDA ones)
// The mask depends only on (stream, offset + i), so the CPU and CUDA kernels draw identical masks,
// at any thread count.
namespace cpu {

namespace {
float keep_scale(float p) { return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f; }
}  // namespace

void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, float p, RngStream stream, uint64_t offset) {
  const float s = keep_scale(p);
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const bool keep = rng_uniform_at(stream, offset + static_cast<uint64_t>(i)) >= p;
      mask[i] = keep ? 1 : 0;
      y[i] = keep ? x[i] * s : 0.0f;
    }
  });
}

void dropout_backward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float p) {
  const float s = keep_scale(p);
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dx[i] = mask[i] ? dy[i] * s : 0.0f;
  });
}

}  // namespace cpu

// ---- the layer

namespace {
std::string describe(const Dropout& m) { return "Dropout(p=" + std::to_string(m.p()) + ")"; }
}  // namespace

Dropout::Dropout(float p) : p_(p) { DTRAIN_CHECK(p_ >= 0.0f && p_ < 1.0f, describe(*this), ": p must be in [0, 1)"); }

Tensor Dropout::forward(const Tensor& x, PassContext& ctx) {
  const std::string name = describe(*this);
  layers::check_input(x, name);
  if (!ctx.training || p_ == 0.0f) {
    mask_ = Tensor();
    return x;
  }
  DTRAIN_CHECK(ctx.dropout_rng != nullptr, name, ": a training forward needs PassContext::dropout_rng");
  const Device d = x.device();
  const uint64_t offset = ctx.dropout_rng->advance(static_cast<uint64_t>(x.numel()));
  Tensor y = Tensor::empty(x.shape(), DType::f32, d);
  mask_ = Tensor::empty(x.shape(), DType::u8, d);
  DTRAIN_DISPATCH(d, dropout_forward, x.data<float>(), y.data<float>(), mask_.data<uint8_t>(), x.numel(), p_,
                  rng_stream(ctx.dropout_rng->key()), offset);
  return y;
}

Tensor Dropout::backward(const Tensor& dy, PassContext& ctx) {
  (void)ctx;
  if (!mask_.defined()) return dy;
  layers::check_grad(dy, mask_.shape(), describe(*this));
  Tensor dx = Tensor::empty(dy.shape(), DType::f32, dy.device());
  DTRAIN_DISPATCH(dy.device(), dropout_backward, dy.data<float>(), mask_.data<uint8_t>(), dx.data<float>(), dy.numel(),
                  p_);
  return dx;
}

// ONNX: nothing, dropout is the identity at inference.
std::string Dropout::to_onnx(OnnxGraph& g, const std::string& x, const Shape& input, const std::string& path) const {
  (void)g;
  (void)input;
  (void)path;
  return x;
}

}  // namespace dtrain
