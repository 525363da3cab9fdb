#include <gtest/gtest.h>

#include "core/layers/layers.h"
#include "gradcheck.h"

namespace dtrain {
namespace {

using testing::build;

TEST(Embedding, TableGradientMatchesFiniteDifferences) {
  Embedding e(5, 3);
  ParameterArena arena;
  build(e, arena);
  testing::GradCheckOptions o;
  o.check_input = false;
  // Id 2 repeats, so its row's gradient must sum both uses; id 4 is unused (zero gradient).
  Tensor ids = Tensor::from_vector<int64_t>({2, 0, 2, 1, 3, 2}, Shape{2, 3});
  testing::check_module_gradients(e, arena, ids, testing::training_ctx, o);
}

TEST(Embedding, LooksUpRowsAndReturnsNoInputGradient) {
  Embedding e(4, 2);
  ParameterArena arena;
  build(e, arena);
  PassContext ctx;
  Tensor y = e.forward(Tensor::from_vector<int64_t>({3, 1}, Shape{2}), ctx);
  EXPECT_EQ(y.shape(), (Shape{2, 2}));
  auto w = e.weight()->value.to_vector<float>(), yv = y.to_vector<float>();
  EXPECT_EQ(yv, (std::vector<float>{w[6], w[7], w[2], w[3]}));
  EXPECT_FALSE(e.backward(Tensor::zeros(Shape{2, 2}), ctx).defined());
}

TEST(Embedding, OutOfRangeIdNamesTheLayer) {
  Embedding e(10, 4);
  ParameterArena arena;
  build(e, arena);
  PassContext ctx;
  try {
    e.forward(Tensor::from_vector<int64_t>({1, 10}, Shape{2}), ctx);
    FAIL();
  } catch (const Error& err) {
    EXPECT_STREQ(err.what(), "Embedding(10, 4): id 10 at position 1 is out of range [0, 10)");
  }
  EXPECT_THROW(e.forward(Tensor::zeros(Shape{2}), ctx), Error);  // f32 ids
}

}  // namespace
}  // namespace dtrain
