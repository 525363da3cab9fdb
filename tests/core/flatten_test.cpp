#include <gtest/gtest.h>

#include "core/layers/layers.h"
#include "gradcheck.h"

namespace dtrain {
namespace {

TEST(Flatten, GradientsMatchFiniteDifferences) {
  Flatten f;
  ParameterArena arena;
  Generator g = testing::test_gen(1);
  Tensor x = Tensor::randn(Shape{2, 3, 2, 2}, 0, 1, g);
  EXPECT_EQ(f.output_shape(x.shape()), (Shape{2, 12}));
  testing::check_module_gradients(f, arena, x, testing::training_ctx);
}

TEST(Flatten, IsAZeroCopyView) {
  Flatten f;
  PassContext ctx;
  Tensor x = Tensor::zeros(Shape{2, 3, 4});
  Tensor y = f.forward(x, ctx);
  EXPECT_EQ(y.shape(), (Shape{2, 12}));
  EXPECT_EQ(y.raw_data(), x.raw_data());
  EXPECT_THROW(f.backward(Tensor::zeros(Shape{2, 11}), ctx), Error);
}

}  // namespace
}  // namespace dtrain
