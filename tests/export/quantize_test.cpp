// export/quantize: symmetric per-channel int8.
#include "export/quantize.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"

namespace dtrain {
namespace {

TEST(Quantize, PerChannelScalesBoundTheErrorByHalfAStep) {
  const std::vector<float> w = {0.5f,  -1.0f, 0.25f, 0.0f,   // channel 0: max 1
                                10.0f, 3.3f,  -7.1f, 2.0f,   // channel 1: max 10
                                0.0f,  0.0f,  0.0f,  0.0f};  // channel 2: all zero
  const QuantizedInt8 q = quantize_int8_per_channel(w, 3);
  ASSERT_EQ(q.scales.size(), 3u);
  EXPECT_FLOAT_EQ(q.scales[0], 1.0f / 127);
  EXPECT_FLOAT_EQ(q.scales[1], 10.0f / 127);
  EXPECT_EQ(q.scales[2], 1.0f);
  EXPECT_EQ(q.values[1], -127);
  EXPECT_EQ(q.values[4], 127);
  for (size_t i = 0; i < w.size(); ++i) {
    const float s = q.scales[i / 4];
    EXPECT_LE(std::fabs(static_cast<float>(q.values[i]) * s - w[i]), s / 2 * 1.0001f) << i;
    EXPECT_GE(q.values[i], -127);
  }
  EXPECT_EQ(q.values[8], 0);
}

TEST(Quantize, RejectsWeightsThatDoNotSplitIntoChannels) {
  const std::vector<float> w(10, 1.0f);
  EXPECT_THROW(quantize_int8_per_channel(w, 3), Error);
}

}  // namespace
}  // namespace dtrain
