#include <gtest/gtest.h>

#include "core/layers/layers.h"
#include "gradcheck.h"

namespace dtrain {
namespace {

using testing::build;
using testing::test_gen;

TEST(LayerNorm, GradientsMatchFiniteDifferences) {
  LayerNorm ln(6);
  ParameterArena arena;
  build(ln, arena);
  // Non-trivial gamma and beta so their gradients and dx's dependence on gamma are exercised.
  Generator g = test_gen(1);
  ln.weight()->value.copy_from(Tensor::randn(Shape{6}, 1, 0.5f, g));
  ln.bias()->value.copy_from(Tensor::randn(Shape{6}, 0, 0.5f, g));
  testing::check_module_gradients(ln, arena, Tensor::randn(Shape{2, 3, 6}, 0.5f, 2, g), testing::training_ctx);
}

TEST(LayerNorm, NormalisesEachRowAndStartsAsIdentityAffine) {
  LayerNorm ln(4);
  ParameterArena arena;
  build(ln, arena);
  EXPECT_EQ(ln.weight()->value.to_vector<float>(), (std::vector<float>{1, 1, 1, 1}));
  EXPECT_EQ(ln.bias()->value.to_vector<float>(), (std::vector<float>{0, 0, 0, 0}));
  PassContext ctx;
  auto y = ln.forward(Tensor::from_vector<float>({1, 2, 3, 4, 10, 10, 10, 14}, Shape{2, 4}), ctx).to_vector<float>();
  for (int r = 0; r < 2; ++r) {
    double m = 0, v = 0;
    for (int j = 0; j < 4; ++j) m += y[r * 4 + j] / 4.0;
    for (int j = 0; j < 4; ++j) v += (y[r * 4 + j] - m) * (y[r * 4 + j] - m) / 4.0;
    EXPECT_NEAR(m, 0, 1e-6);
    EXPECT_NEAR(v, 1, 1e-4);
  }
}

TEST(LayerNorm, WrongLastDimNamesTheLayer) {
  LayerNorm ln(8);
  ParameterArena arena;
  build(ln, arena);
  PassContext ctx;
  try {
    ln.forward(Tensor::zeros(Shape{2, 6}), ctx);
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "LayerNorm(8): input shape [2, 6], expected last dim 8");
  }
}

}  // namespace
}  // namespace dtrain
