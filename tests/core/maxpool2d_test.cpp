#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/kernels.h"
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
  Tensor y = pool.forward(Tensor::from_vector<float>({1, 5, 2, 0,      //
                                                      3, 4, 7, 6,      //
                                                      -1, -2, -3, -4,  //
                                                      -5, -6, -7, -8},
                                                     Shape{1, 1, 4, 4}),
                          ctx);
  EXPECT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{5, 7, -1, -3}));
}

// The 2x2 stride-2 fast path against the definition (first strictly greater value in row-major
// window order wins: ties keep the first, a NaN that comes first stays), with and without argmax.
TEST(MaxPool2d, TwoByTwoFastPathMatchesTheDefinition) {
  const int64_t planes = 3, h = 6, w = 7, oh = 3, ow = 3;  // odd width: the last column is never read
  std::vector<float> x(static_cast<size_t>(planes * h * w));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 7) % 5) - 2.0f;  // many ties
  x[0] = std::numeric_limits<float>::quiet_NaN();                                       // first in its window
  x[w + 3] = std::numeric_limits<float>::quiet_NaN();                                   // last in its window
  std::vector<float> y(static_cast<size_t>(planes * oh * ow)), y_no_index(y.size());
  std::vector<int32_t> at(y.size());
  cpu::maxpool2d_forward(x.data(), y.data(), at.data(), planes, h, w, 2, 2, 0, oh, ow);
  cpu::maxpool2d_forward(x.data(), y_no_index.data(), nullptr, planes, h, w, 2, 2, 0, oh, ow);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        int64_t best = 2 * oy * w + 2 * ox;
        for (int64_t ki = 0; ki < 2; ++ki)
          for (int64_t kj = 0; kj < 2; ++kj) {
            const int64_t i = (2 * oy + ki) * w + 2 * ox + kj;
            if (x[p * h * w + i] > x[p * h * w + best]) best = i;
          }
        const size_t o = static_cast<size_t>((p * oh + oy) * ow + ox);
        const float want = x[static_cast<size_t>(p * h * w + best)];
        SCOPED_TRACE("plane " + std::to_string(p) + " y " + std::to_string(oy) + " x " + std::to_string(ox));
        EXPECT_EQ(at[o], best);
        if (std::isnan(want)) {
          EXPECT_TRUE(std::isnan(y[o]) && std::isnan(y_no_index[o]));
        } else {
          EXPECT_EQ(y[o], want);
          EXPECT_EQ(y_no_index[o], want);
        }
      }
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
