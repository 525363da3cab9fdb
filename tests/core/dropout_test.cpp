#include <gtest/gtest.h>

#include "core/layers/layers.h"
#include "gradcheck.h"

namespace dtrain {
namespace {

Generator dropout_gen() { return Generator(RngKey{5, 0, static_cast<uint32_t>(RngPurpose::dropout)}); }

TEST(Dropout, GradientsMatchFiniteDifferencesWithAFixedMask) {
  Dropout d(0.4f);
  ParameterArena arena;
  Generator rng = dropout_gen();
  const auto ctx = [&] {
    rng.set_offset(0);  // the same counters, so the same mask, on every pass
    PassContext c;
    c.dropout_rng = &rng;
    return c;
  };
  Generator g = testing::test_gen(1);
  testing::check_module_gradients(d, arena, Tensor::randn(Shape{4, 8}, 0, 1, g), ctx);
}

TEST(Dropout, KeepsAboutOneMinusPAndScalesKeptValues) {
  Dropout d(0.25f);
  Generator rng = dropout_gen();
  PassContext ctx;
  ctx.dropout_rng = &rng;
  const int64_t n = 20000;
  auto y = d.forward(Tensor::full(Shape{1, n}, 1.0f), ctx).to_vector<float>();
  int64_t kept = 0;
  for (float v : y) {
    if (v != 0.0f) {
      EXPECT_FLOAT_EQ(v, 1.0f / 0.75f);
      ++kept;
    }
  }
  EXPECT_NEAR(static_cast<double>(kept) / n, 0.75, 0.02);
  EXPECT_EQ(rng.offset(), static_cast<uint64_t>(n));  // the stream advanced by numel
}

TEST(Dropout, IsTheIdentityWhenNotTraining) {
  Dropout d(0.5f);
  PassContext ctx;
  ctx.training = false;
  Tensor x = Tensor::full(Shape{2, 3}, 2.0f);
  EXPECT_EQ(d.forward(x, ctx).to_vector<float>(), x.to_vector<float>());
  EXPECT_EQ(d.backward(x, ctx).to_vector<float>(), x.to_vector<float>());
}

TEST(Dropout, TrainingWithoutAGeneratorNamesTheLayer) {
  Dropout d(0.5f);
  PassContext ctx;
  try {
    d.forward(Tensor::zeros(Shape{2, 3}), ctx);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Dropout(p=0.5"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("dropout_rng"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Dropout(1.0f), Error);
}

}  // namespace
}  // namespace dtrain
