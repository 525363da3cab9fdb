#pragma once
// A two-layer MLP written directly on the parameter arena with ops::gemm (no layer library):
// y = relu(x W1^T + b1) W2^T + b2, loss = mean over the batch of 0.5 |y - t|^2. Its backward
// calls arena.grad_ready in reverse order, like the layers do, so ParamSync runs end to end.
#include <cmath>

#include "core/arena.h"
#include "core/ops.h"

namespace dtrain::testing {

struct TinyMlp {
  static constexpr int64_t kIn = 12, kHidden = 24, kOut = 5;
  ParameterArena arena;
  Parameter *w1, *b1, *w2, *b2;

  explicit TinyMlp(uint64_t seed) {
    auto init = [](float bound) {
      return [bound](Tensor& v, Generator& g) { v.copy_from(Tensor::uniform(v.shape(), -bound, bound, g)); };
    };
    w1 = &arena.add("0.weight", Shape{kHidden, kIn}, init(0.4f));
    b1 = &arena.add("0.bias", Shape{kHidden}, init(0.1f));
    w2 = &arena.add("2.weight", Shape{kOut, kHidden}, init(0.3f));
    b2 = &arena.add("2.bias", Shape{kOut}, init(0.1f));
    Generator gen(RngKey{seed, 0, 0});
    arena.allocate(Device::cpu(), gen);
  }

  // Deterministic sample `i` of step `step`: input row and target row.
  static void sample(int64_t step, int64_t i, float* x, float* t) {
    for (int64_t j = 0; j < kIn; ++j) x[j] = std::sin(0.37f * (i + 1) + 0.91f * j + 0.13f * step);
    for (int64_t j = 0; j < kOut; ++j) t[j] = std::cos(0.53f * (i + 2) - 0.29f * j + 0.07f * step);
  }

  // Adds the gradient of the mean loss over samples [first, first + n) of `step` into the arena
  // (summed: of the loss summed over them, as ParamSyncOptions::summed_gradients expects).
  void forward_backward(int64_t step, int64_t first, int64_t n, bool summed = false) {
    Tensor x = Tensor::empty(Shape{n, kIn}), t = Tensor::empty(Shape{n, kOut});
    for (int64_t r = 0; r < n; ++r) sample(step, first + r, x.data<float>() + r * kIn, t.data<float>() + r * kOut);
    Tensor h = Tensor::empty(Shape{n, kHidden});
    ops::gemm(x, false, w1->value, true, h);
    float* hp = h.data<float>();
    const float* b1p = b1->value.data<float>();
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < kHidden; ++j) hp[r * kHidden + j] += b1p[j];
    Tensor a = h.clone();
    for (int64_t k = 0; k < a.numel(); ++k) a.data<float>()[k] = std::max(0.0f, a.data<float>()[k]);
    Tensor y = Tensor::empty(Shape{n, kOut});
    ops::gemm(a, false, w2->value, true, y);
    // dy = (y + b2 - t) / n
    float* yp = y.data<float>();
    const float* b2p = b2->value.data<float>();
    const float* tp = t.data<float>();
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < kOut; ++j)
        yp[r * kOut + j] = (yp[r * kOut + j] + b2p[j] - tp[r * kOut + j]) / (summed ? 1 : n);
    const Tensor& dy = y;
    // Layer 2: dW2 += dy^T a, db2 += sum_rows dy, da = dy W2.
    ops::gemm(dy, true, a, false, w2->grad, 1.0f, 1.0f);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < kOut; ++j) b2->grad.data<float>()[j] += yp[r * kOut + j];
    arena.grad_ready(*b2);
    arena.grad_ready(*w2);
    Tensor da = Tensor::empty(Shape{n, kHidden});
    ops::gemm(dy, false, w2->value, false, da);
    float* dap = da.data<float>();
    for (int64_t k = 0; k < da.numel(); ++k)
      if (hp[k] <= 0) dap[k] = 0;
    ops::gemm(da, true, x, false, w1->grad, 1.0f, 1.0f);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < kHidden; ++j) b1->grad.data<float>()[j] += dap[r * kHidden + j];
    arena.grad_ready(*b1);
    arena.grad_ready(*w1);
  }

  // p -= lr * grad_scale * g (grad_scale: ParamSync::grad_scale()).
  void sgd(float lr, float grad_scale = 1.0f) {
    ops::axpy(-lr * grad_scale, arena.grads(), arena.values());
    arena.zero_grad();
  }
};

}  // namespace dtrain::testing
