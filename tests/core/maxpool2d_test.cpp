#include <gtest/gtest.h>

#include "core/layers/layers.h"
#include "gradcheck.h"

namespace dtrain {
namespace {

using testing::check_module_gradients;
using testing::training_ctx;

// Distinct values 0.1 apart in a scrambled order, so every window has a clear winner.
Tensor distinct_values(Shape shape) {
  std::vector<float> v(static_cast<size_t>(shape.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = 0.1f * static_cast<float>((i * 37) % v.size()) - 1.0f;
  return Tensor::from_vector(v, shape);
}

TEST(MaxPool2d, GradientsMatchFiniteDifferences) {
  MaxPool2d pool(2);
  ParameterArena arena;
  check_module_gradients(pool, arena, distinct_values(Shape{2, 2, 4, 6}), training_ctx);
}

TEST(MaxPool2d, GradientsMatchWithOverlapAndPadding) {
  MaxPool2d pool(3, 2, 1);
  ParameterArena arena;
  check_module_gradients(pool, arena, distinct_values(Shape{1, 2, 5, 5}), training_ctx);
}

TEST(MaxPool2d, TakesTheWindowMaximum) {
  MaxPool2d pool(2);
  PassContext ctx;
  Tensor y = pool.forward(Tensor::from_vector<float>({1, 5, 2, 0,  //
                                                      3, 4, 7, 6,  //
                                                      -1, -2, -3, -4,  //
                                                      -5, -6, -7, -8},
                                                     Shape{1, 1, 4, 4}),
                          ctx);
  EXPECT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{5, 7, -1, -3}));
}

TEST(MaxPool2d, NonImageInputNamesTheLayer) {
  MaxPool2d pool(2);
  PassContext ctx;
  try {
    pool.forward(Tensor::zeros(Shape{4, 10}), ctx);
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "MaxPool2d(k2 s2 p0): input shape [4, 10], expected [N, C, H, W]");
  }
}

}  // namespace
}  // namespace dtrain
