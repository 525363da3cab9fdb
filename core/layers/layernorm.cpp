// LayerNorm over the last dim D (rows = numel / D):
//   forward:  xhat = (x - mean) rstd, rstd = 1 / sqrt(var + eps); y = xhat gamma + beta
//   backward: g = dy gamma; dx = rstd (g - mean(g) - xhat mean(g xhat));
//             dgamma += sum_rows dy xhat; dbeta += sum_rows dy
#include <cmath>
#include <string>

#include "core/cpu/parallel.h"
#include "core/layers/layer_util.h"
#include "core/layers/layers.h"

namespace dtrain {

// ---- its CPU kernels (declared in core/kernel_list.inc; core/cuda/layernorm.cu has the CUDA ones)
namespace cpu {

// mean = sum x / D, var = sum (x - mean)^2 / D, rstd = 1 / sqrt(var + eps),
// y = (x - mean) rstd gamma + beta; split over rows
void layernorm_forward(const float* x, const float* gamma, const float* beta, float* y, float* mean, float* rstd,
                       int64_t rows, int64_t cols, float eps) {
  parallel_for(rows, row_grain(cols), [=](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = x + r * cols;
      float* yr = y + r * cols;
      float s = 0.0f;
      for (int64_t j = 0; j < cols; ++j) s += xr[j];
      const float m = s / static_cast<float>(cols);
      float v = 0.0f;
      for (int64_t j = 0; j < cols; ++j) v += (xr[j] - m) * (xr[j] - m);
      const float rs = 1.0f / std::sqrt(v / static_cast<float>(cols) + eps);
      for (int64_t j = 0; j < cols; ++j) yr[j] = (xr[j] - m) * rs * gamma[j] + beta[j];
      mean[r] = m;
      rstd[r] = rs;
    }
  });
}

// xhat = (x - mean) rstd, g = dy gamma:
// dx = rstd (g - mean(g) - xhat mean(g xhat)), split over rows;
// dgamma += sum_rows dy xhat; dbeta += sum_rows dy, split over columns, each summed in row order
void layernorm_backward(const float* dy, const float* x, const float* gamma, const float* mean, const float* rstd,
                        float* dx, float* dgamma, float* dbeta, int64_t rows, int64_t cols) {
  const float inv_cols = 1.0f / static_cast<float>(cols);
  parallel_for(rows, row_grain(cols), [=](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = x + r * cols;
      const float* dyr = dy + r * cols;
      float* dxr = dx + r * cols;
      const float m = mean[r], rs = rstd[r];
      float g_mean = 0.0f, gx_mean = 0.0f;
      for (int64_t j = 0; j < cols; ++j) {
        const float xhat = (xr[j] - m) * rs, g = dyr[j] * gamma[j];
        g_mean += g;
        gx_mean += g * xhat;
      }
      g_mean *= inv_cols;
      gx_mean *= inv_cols;
      for (int64_t j = 0; j < cols; ++j) {
        const float xhat = (xr[j] - m) * rs;
        dxr[j] = rs * (dyr[j] * gamma[j] - g_mean - xhat * gx_mean);
      }
    }
  });
  parallel_for(cols, row_grain(rows), [=](int64_t begin, int64_t end) {
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * cols;
      const float* dyr = dy + r * cols;
      const float m = mean[r], rs = rstd[r];
      for (int64_t j = begin; j < end; ++j) {
        dgamma[j] += dyr[j] * ((xr[j] - m) * rs);
        dbeta[j] += dyr[j];
      }
    }
  });
}

}  // namespace cpu

// ---- the layer

namespace {
std::string describe(const LayerNorm& m) { return "LayerNorm(" + std::to_string(m.dim()) + ")"; }
}  // namespace

LayerNorm::LayerNorm(int64_t dim, float eps) : dim_(dim), eps_(eps) {
  DTRAIN_CHECK(dim_ > 0 && eps_ >= 0.0f, describe(*this), ": dim must be positive and eps non-negative");
}

void LayerNorm::register_parameters(ParameterArena& arena, const std::string& prefix) {
  weight_ = &arena.add(prefix + "weight", Shape{dim_}, layers::constant_init(1.0f), false);
  bias_ = &arena.add(prefix + "bias", Shape{dim_}, layers::constant_init(0.0f), false);
}

std::vector<Parameter*> LayerNorm::parameters() const {
  if (!weight_) return {};
  return {weight_, bias_};
}

Shape LayerNorm::output_shape(const Shape& input) const {
  DTRAIN_CHECK(input.size() >= 1 && input.back() == dim_, describe(*this), ": input shape ", input.str(),
               ", expected last dim ", dim_);
  return input;
}

Tensor LayerNorm::forward(const Tensor& x, PassContext& ctx) {
  (void)ctx;
  const std::string name = describe(*this);
  layers::check_input(x, name);
  output_shape(x.shape());
  layers::check_param(x, weight_, name);
  const Device d = x.device();
  const int64_t rows = x.numel() / dim_;
  Tensor y = Tensor::empty(x.shape(), DType::f32, d);
  mean_ = Tensor::empty(Shape{rows}, DType::f32, d);
  rstd_ = Tensor::empty(Shape{rows}, DType::f32, d);
  DTRAIN_DISPATCH(d, layernorm_forward, x.data<float>(), weight_->value.data<float>(), bias_->value.data<float>(),
                  y.data<float>(), mean_.data<float>(), rstd_.data<float>(), rows, dim_, eps_);
  x_ = x;
  return y;
}

Tensor LayerNorm::backward(const Tensor& dy, PassContext& ctx) {
  const std::string name = describe(*this);
  layers::check_forwarded(x_.defined(), name);
  layers::check_grad(dy, x_.shape(), name);
  const Device d = x_.device();
  Tensor dx = Tensor::empty(x_.shape(), DType::f32, d);
  DTRAIN_DISPATCH(d, layernorm_backward, dy.data<float>(), x_.data<float>(), weight_->value.data<float>(),
                  mean_.data<float>(), rstd_.data<float>(), dx.data<float>(), weight_->grad.data<float>(),
                  bias_->grad.data<float>(), x_.numel() / dim_, dim_);
  ctx.grad_ready(*bias_);
  ctx.grad_ready(*weight_);
  return dx;
}

std::string LayerNorm::to_onnx(OnnxGraph& g, const std::string& x, const Shape& input, const std::string& path) const {
  (void)input;
  return g.node("LayerNormalization", path, {x, g.param(*weight_), g.param(*bias_)},
                {{"axis", int64_t{-1}}, {"epsilon", eps_}});
}

}  // namespace dtrain
