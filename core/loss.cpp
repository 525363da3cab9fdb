// Losses: per-sample values plus the gradient of grad_scale * (sum of per-sample losses).
#include "core/loss.h"

#include "core/dispatch.h"
#include "core/ops.h"

namespace dtrain {

float LossOutput::mean() const {
  DTRAIN_CHECK(per_sample.defined(), "LossOutput::mean: no per-sample losses");
  const std::vector<float> v = per_sample.to_vector<float>();
  if (v.empty()) return 0.0f;
  double s = 0;
  for (float x : v) s += x;
  return static_cast<float>(s / static_cast<double>(v.size()));
}

// loss_i = -log softmax(z_i)[y_i]; dz_i = (softmax(z_i) - onehot(y_i)) grad_scale
LossOutput softmax_cross_entropy(const Tensor& logits, const Tensor& labels, float grad_scale, Labels labels_state) {
  const Device d = ops::common_device({&logits, &labels}, "softmax_cross_entropy");
  DTRAIN_CHECK(logits.dtype() == DType::f32 && logits.ndim() == 2 && logits.is_contiguous() && logits.dim(1) > 0,
               "softmax_cross_entropy: logits must be a contiguous f32 [N, C] tensor, got ", dtype_name(logits.dtype()),
               " ", logits.shape().str());
  const int64_t n = logits.dim(0), c = logits.dim(1);
  DTRAIN_CHECK(labels.dtype() == DType::i64 && labels.shape() == Shape{n} && labels.is_contiguous(),
               "softmax_cross_entropy: labels must be i64 [", n, "], got ", dtype_name(labels.dtype()), " ",
               labels.shape().str());
  if (labels_state == Labels::unchecked || d.is_cpu()) {  // on the host the check is one cheap pass
    const int64_t* host = labels.data<int64_t>();
    std::vector<int64_t> copy;
    if (!d.is_cpu()) host = (copy = labels.to_vector<int64_t>()).data();
    for (int64_t i = 0; i < n; ++i)
      DTRAIN_CHECK(host[i] >= 0 && host[i] < c, "softmax_cross_entropy: label ", host[i], " of sample ", i,
                   " is out of range [0, ", c, ")");
  }
  LossOutput out;
  out.per_sample = Tensor::empty(Shape{n}, DType::f32, d);
  Tensor probs = Tensor::empty(logits.shape(), DType::f32, d);
  DTRAIN_DISPATCH(d, softmax_xent_forward, logits.data<float>(), labels.data<int64_t>(), probs.data<float>(),
                  out.per_sample.data<float>(), n, c);
  out.grad = Tensor::empty(logits.shape(), DType::f32, d);
  DTRAIN_DISPATCH(d, softmax_xent_backward, probs.data<float>(), labels.data<int64_t>(), out.grad.data<float>(), n, c,
                  grad_scale);
  return out;
}

// loss_i = mean_j (p_ij - t_ij)^2 over the D elements of sample i; dp = 2 (p - t) grad_scale / D
LossOutput mse_loss(const Tensor& pred, const Tensor& target, float grad_scale) {
  const Device d = ops::common_device({&pred, &target}, "mse_loss");
  DTRAIN_CHECK(pred.dtype() == DType::f32 && target.dtype() == DType::f32 && pred.ndim() >= 1 && pred.is_contiguous() &&
                   target.is_contiguous(),
               "mse_loss: pred and target must be contiguous f32 [N, ...] tensors");
  DTRAIN_CHECK(pred.shape() == target.shape(), "mse_loss: pred has shape ", pred.shape().str(), ", target ",
               target.shape().str(), "; expected the same");
  const int64_t n = pred.dim(0), per = n > 0 ? pred.numel() / n : 0;
  LossOutput out;
  Tensor sq = Tensor::empty(pred.shape(), DType::f32, d);
  DTRAIN_DISPATCH(d, mse_forward, pred.data<float>(), target.data<float>(), sq.data<float>(), pred.numel());
  out.per_sample = Tensor::zeros(Shape{n}, DType::f32, d);
  // Row sums of sq viewed as [1, N, per] (one "image" with N channels), then / per.
  DTRAIN_DISPATCH(d, sum_channels, sq.data<float>(), out.per_sample.data<float>(), 1, n, per);
  if (per > 0) ops::scale(out.per_sample, 1.0f / static_cast<float>(per));
  out.grad = Tensor::empty(pred.shape(), DType::f32, d);
  DTRAIN_DISPATCH(d, mse_backward, pred.data<float>(), target.data<float>(), out.grad.data<float>(), pred.numel(),
                  per > 0 ? grad_scale / static_cast<float>(per) : 0.0f);
  return out;
}

}  // namespace dtrain
