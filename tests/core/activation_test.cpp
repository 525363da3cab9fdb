#include <gtest/gtest.h>

#include <cmath>

#include "core/kernels.h"
#include "core/layers/layers.h"
#include "gradcheck.h"

namespace dtrain {
namespace {

using testing::check_module_gradients;
using testing::test_gen;
using testing::training_ctx;

// randn values pushed at least 0.1 away from 0, where ReLU has its kink.
Tensor away_from_zero(Shape shape, uint64_t seed) {
  Generator g = test_gen(seed);
  auto v = Tensor::randn(shape, 0, 1, g).to_vector<float>();
  for (float& x : v) x += x >= 0 ? 0.1f : -0.1f;
  return Tensor::from_vector(v, shape);
}

TEST(ReLU, GradientsMatchFiniteDifferences) {
  ReLU m;
  ParameterArena arena;
  check_module_gradients(m, arena, away_from_zero(Shape{4, 6}, 1), training_ctx);
}

TEST(ReLU, ZeroesNegatives) {
  ReLU m;
  PassContext ctx;
  Tensor y = m.forward(Tensor::from_vector<float>({-1, 0, 2}, Shape{1, 3}), ctx);
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{0, 0, 2}));
}

TEST(GELU, GradientsMatchFiniteDifferences) {
  GELU m;
  ParameterArena arena;
  Generator g = test_gen(2);
  check_module_gradients(m, arena, Tensor::randn(Shape{3, 7}, 0, 2, g), training_ctx);
}

TEST(GELU, IsExactErfForm) {
  GELU m;
  PassContext ctx;
  const std::vector<float> xs{-3, -1, -0.5f, 0, 0.5f, 1, 3};
  auto y = m.forward(Tensor::from_vector(xs, Shape{1, 7}), ctx).to_vector<float>();
  for (size_t i = 0; i < xs.size(); ++i) {
    const double x = xs[i], ref = 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    EXPECT_NEAR(y[i], ref, 1e-6) << "x=" << x;
  }
  EXPECT_NEAR(y[5], 0.8413447f, 1e-6);  // 1 * Phi(1), not the tanh approximation (0.8411920)
}

// The ONNX engine's Tanh: within 1e-6 of tanh everywhere, relative 1e-6 near 0 (its polynomial).
TEST(Tanh, KernelIsWithinAMillionthOfTanh) {
  std::vector<float> xs;
  for (int i = -20000; i <= 20000; ++i) xs.push_back(static_cast<float>(i) * 5e-4f);
  for (float v : {1e-30f, -1e-7f, 0.0625f, -0.0625f, 30.0f, -100.0f, 1e30f}) xs.push_back(v);
  std::vector<float> y(xs.size());
  cpu::tanh_forward(xs.data(), y.data(), static_cast<int64_t>(xs.size()));
  for (size_t i = 0; i < xs.size(); ++i) {
    const double want = std::tanh(static_cast<double>(xs[i]));
    EXPECT_NEAR(y[i], want, 1e-6) << "x=" << xs[i];
    if (std::abs(xs[i]) < 0.0625f) {
      EXPECT_NEAR(y[i], want, 1e-6 * std::abs(want)) << "x=" << xs[i];
    }
  }
}

TEST(Activations, BackwardBeforeForwardNamesTheLayer) {
  GELU m;
  PassContext ctx;
  try {
    m.backward(Tensor::zeros(Shape{1, 2}), ctx);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("GELU"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dtrain
