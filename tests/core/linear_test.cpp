#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/cpu/parallel.h"
#include "core/kernels.h"
#include "core/layers/layers.h"
#include "gradcheck.h"

namespace dtrain {
namespace {

using testing::build;
using testing::check_module_gradients;
using testing::test_gen;
using testing::training_ctx;

TEST(Linear, GradientsMatchFiniteDifferences) {
  Linear l(5, 4);
  ParameterArena arena;
  build(l, arena);
  Generator g = test_gen(1);
  check_module_gradients(l, arena, Tensor::randn(Shape{3, 5}, 0, 1, g), training_ctx);
}

TEST(Linear, AppliesToTheLastDimOfHigherRankInputs) {
  Linear l(3, 2, /*bias=*/false);
  ParameterArena arena;
  build(l, arena);
  EXPECT_EQ(l.parameters().size(), 1u);
  EXPECT_EQ(l.output_shape(Shape{2, 4, 3}), (Shape{2, 4, 2}));
  Generator g = test_gen(2);
  check_module_gradients(l, arena, Tensor::randn(Shape{2, 4, 3}, 0, 1, g), training_ctx);
}

TEST(Linear, ForwardMatchesReference) {
  Linear l(2, 2);
  ParameterArena arena;
  build(l, arena);
  l.weight()->value.copy_from(Tensor::from_vector<float>({1, 2, 3, 4}, Shape{2, 2}));
  l.bias()->value.copy_from(Tensor::from_vector<float>({0.5f, -1}, Shape{2}));
  PassContext ctx;
  Tensor y = l.forward(Tensor::from_vector<float>({1, 1, 2, -1}, Shape{2, 2}), ctx);
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{3.5f, 6, 0.5f, 1}));
}

TEST(Linear, ParameterGradientsAccumulateAcrossBackwards) {
  Linear l(3, 2);
  ParameterArena arena;
  build(l, arena);
  Generator g = test_gen(3);
  Tensor x = Tensor::randn(Shape{4, 3}, 0, 1, g), dy = Tensor::randn(Shape{4, 2}, 0, 1, g);
  PassContext ctx;
  l.forward(x, ctx);
  l.backward(dy, ctx);
  const auto once = arena.grads().to_vector<float>();
  l.backward(dy, ctx);
  const auto twice = arena.grads().to_vector<float>();
  for (size_t i = 0; i < once.size(); ++i) EXPECT_FLOAT_EQ(twice[i], 2 * once[i]);
}

TEST(Linear, InitIsUniformWithinOneOverSqrtFanIn) {
  Linear l(400, 50);
  ParameterArena arena;
  build(l, arena);
  const float bound = 1.0f / std::sqrt(400.0f);
  float lo = 1, hi = -1;
  for (float v : arena.values().to_vector<float>()) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  EXPECT_GE(lo, -bound);
  EXPECT_LE(hi, bound);
  EXPECT_LT(lo, -0.9f * bound);
  EXPECT_GT(hi, 0.9f * bound);
}

// The bias add and its gradient split over the rank's threads (rows, columns): the same bits
// (OpenBLAS stays at one thread: its threaded GEMM rounds differently by thread count).
TEST(Linear, ThreadCountDoesNotChangeTheBits) {
  const auto run = [](int threads) {
    cpu::set_parallel_threads(threads);
    Linear fc(300, 520);
    ParameterArena arena;
    build(fc, arena, 5);
    Generator g = test_gen(8);
    PassContext ctx;
    const Tensor y = fc.forward(Tensor::randn(Shape{256, 300}, 0, 1, g), ctx);
    fc.backward(Tensor::randn(y.shape(), 0, 1, g), ctx);
    cpu::set_parallel_threads(1);
    return std::vector<std::vector<float>>{y.to_vector<float>(), arena.grads().to_vector<float>()};
  };
  const auto one = run(1);
  for (int threads : {2, 3}) EXPECT_EQ(run(threads), one) << threads << " threads";
}

TEST(Linear, WrongFeatureCountNamesTheLayer) {
  Linear l(784, 256);
  ParameterArena arena;
  build(l, arena);
  PassContext ctx;
  try {
    l.forward(Tensor::zeros(Shape{2, 100}), ctx);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "Linear(784->256): input has 100 features, expected 784");
  }
  EXPECT_THROW(l.backward(Tensor::zeros(Shape{2, 256}), ctx), Error);  // before forward
}

}  // namespace
}  // namespace dtrain
