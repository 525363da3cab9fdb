// The CPU kernels the ONNX engine added (core/cpu/elementwise.cpp, core/cpu/loss.cpp) against
// direct formulas: mul, affine, erf_forward, softmax_rows.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/kernels.h"

namespace dtrain {
namespace {

TEST(OnnxKernels, ElementwiseMatchTheirFormulas) {
  const std::vector<float> a = {-2.5f, -0.1f, 0.0f, 0.7f, 3.0f}, b = {1.5f, 2.0f, -1.0f, 0.5f, -4.0f};
  std::vector<float> y(a.size());
  cpu::mul(a.data(), b.data(), y.data(), 5);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(y[i], a[i] * b[i]);
  cpu::affine(a.data(), y.data(), 5, 0.25f, -1.5f);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(y[i], a[i] * 0.25f - 1.5f);
  cpu::erf_forward(a.data(), y.data(), 5);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(y[i], std::erf(a[i]));
}

TEST(OnnxKernels, SoftmaxRowsIsStableAndSumsToOne) {
  const std::vector<float> x = {1.0f, 2.0f, 3.0f, 1000.0f, 1000.0f, -1000.0f};
  std::vector<float> y(6);
  cpu::softmax_rows(x.data(), y.data(), 2, 3);
  const double e1 = std::exp(-2.0), e2 = std::exp(-1.0), s = e1 + e2 + 1;
  EXPECT_NEAR(y[0], e1 / s, 1e-7);
  EXPECT_NEAR(y[1], e2 / s, 1e-7);
  EXPECT_NEAR(y[2], 1 / s, 1e-7);
  EXPECT_FLOAT_EQ(y[3], 0.5f);
  EXPECT_FLOAT_EQ(y[4], 0.5f);
  EXPECT_EQ(y[5], 0.0f);
}

}  // namespace
}  // namespace dtrain
