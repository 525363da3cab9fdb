#pragma once
// Losses: each returns the per-sample losses and the gradient of (sum of per-sample losses
// * grad_scale) with respect to its input. grad_scale = 1/N gives the batch mean.
#include "core/tensor.h"

namespace dtrain {

struct LossOutput {
  Tensor per_sample;   // [N] f32 on the input's device
  Tensor grad;         // same shape as the prediction
  float mean() const;  // reads per_sample to the host
};

// Whether softmax_cross_entropy checks that every label is in [0, C) (an out-of-range label would
// index past a row). Labels on a GPU are read back for it: callers whose labels were checked where
// they were loaded (data::Loader, data::TokenWindows) pass `checked` to skip that read.
enum class Labels { unchecked, checked };

// logits [N, C] f32, labels [N] i64 in [0, C). Numerically stable (max-subtracted softmax).
LossOutput softmax_cross_entropy(const Tensor& logits, const Tensor& labels, float grad_scale,
                                 Labels labels_state = Labels::unchecked);
// pred, target same shape [N, ...]; per-sample loss = mean over the sample's elements of (p - t)^2.
LossOutput mse_loss(const Tensor& pred, const Tensor& target, float grad_scale);

}  // namespace dtrain
