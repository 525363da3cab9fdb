#include <gtest/gtest.h>

#include <cmath>

#include "core/loss.h"
#include "gradcheck.h"

namespace dtrain {
namespace {

using testing::expect_close;
using testing::numeric_grad;
using testing::test_gen;

double sum_losses(const LossOutput& out, float scale) {
  double s = 0;
  for (float v : out.per_sample.to_vector<float>()) s += v;
  return s * scale;
}

TEST(SoftmaxCrossEntropy, GradientMatchesFiniteDifferences) {
  Generator g = test_gen(1);
  Tensor logits = Tensor::randn(Shape{4, 5}, 0, 2, g);
  Tensor labels = Tensor::from_vector<int64_t>({0, 4, 2, 2}, Shape{4});
  const float scale = 0.25f;
  LossOutput out = softmax_cross_entropy(logits, labels, scale);
  const auto f = [&] { return sum_losses(softmax_cross_entropy(logits, labels, scale), scale); };
  expect_close(out.grad.to_vector<float>(), numeric_grad(logits, f, 1e-2f), {}, "dlogits");
}

TEST(SoftmaxCrossEntropy, IsStableForLargeLogits) {
  Tensor logits = Tensor::from_vector<float>({1000, 0, -1000, 0, 0, 0}, Shape{2, 3});
  LossOutput out = softmax_cross_entropy(logits, Tensor::from_vector<int64_t>({0, 1}, Shape{2}), 1.0f);
  auto v = out.per_sample.to_vector<float>();
  EXPECT_NEAR(v[0], 0.0f, 1e-6);
  EXPECT_NEAR(v[1], std::log(3.0f), 1e-6);
  EXPECT_NEAR(out.mean(), std::log(3.0f) / 2, 1e-6);
}

TEST(SoftmaxCrossEntropy, OutOfRangeLabelNamesTheLoss) {
  try {
    softmax_cross_entropy(Tensor::zeros(Shape{2, 3}), Tensor::from_vector<int64_t>({0, 3}, Shape{2}), 1.0f);
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "softmax_cross_entropy: label 3 of sample 1 is out of range [0, 3)");
  }
}

TEST(MseLoss, GradientMatchesFiniteDifferences) {
  Generator g = test_gen(2);
  Tensor pred = Tensor::randn(Shape{3, 2, 2}, 0, 1, g), target = Tensor::randn(Shape{3, 2, 2}, 0, 1, g);
  const float scale = 1.0f / 3;
  LossOutput out = mse_loss(pred, target, scale);
  const auto f = [&] { return sum_losses(mse_loss(pred, target, scale), scale); };
  expect_close(out.grad.to_vector<float>(), numeric_grad(pred, f, 1e-2f), {}, "dpred");
}

TEST(MseLoss, PerSampleIsTheMeanSquaredError) {
  LossOutput out = mse_loss(Tensor::from_vector<float>({1, 2, 3, 4}, Shape{2, 2}),
                            Tensor::from_vector<float>({1, 0, 0, 0}, Shape{2, 2}), 1.0f);
  EXPECT_EQ(out.per_sample.to_vector<float>(), (std::vector<float>{2, 12.5f}));
  EXPECT_THROW(mse_loss(Tensor::zeros(Shape{2, 2}), Tensor::zeros(Shape{2, 3}), 1.0f), Error);
}

}  // namespace
}  // namespace dtrain
