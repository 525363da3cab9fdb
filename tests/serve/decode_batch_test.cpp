// The batches of a decoding step: caches left-padded to the longest with the mask and positions of
// each row, presents taken back per row, contexts right-padded for the recompute path.
#include "serve/decode_batch.h"

#include <gtest/gtest.h>

namespace dtrain::serve {
namespace {

const LanguageModelSpec kSpec{256, 16, 1, 2, 4};  // 2 heads of 2

// A step result whose present[b, h, p, d] = 1000 b + 100 h + 10 p + d.
CachedStepResult numbered_presents(int64_t rows, int64_t positions) {
  CachedStepResult r;
  for (bool keys : {true, false}) {
    Tensor t = Tensor::empty(Shape{rows, 2, positions, 2});
    for (int64_t b = 0; b < rows; ++b)
      for (int64_t h = 0; h < 2; ++h)
        for (int64_t p = 0; p < positions; ++p)
          for (int64_t d = 0; d < 2; ++d)
            t.data<float>()[((b * 2 + h) * positions + p) * 2 + d] =
                (keys ? 0.0f : 0.5f) + 1000 * b + 100 * h + 10 * p + d;
    (keys ? r.present_keys : r.present_values).push_back(t);
  }
  return r;
}

TEST(DecodeBatch, LeftPadsCachesAndMarksThePaddingInTheMask) {
  SequenceCache a(kSpec), b(kSpec);
  a.take_presents(numbered_presents(1, 3), 0, 3);  // a holds 3 positions
  b.take_presents(numbered_presents(1, 1), 0, 1);  // b holds 1
  const CachedStep step = build_cached_step(kSpec, {&a, &b}, {{7}, {9}});
  EXPECT_EQ(step.input_ids.to_vector<int64_t>(), (std::vector<int64_t>{7, 9}));
  EXPECT_EQ(step.position_ids.to_vector<int64_t>(), (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(step.attention_mask.shape(), (Shape{2, 4}));
  EXPECT_EQ(step.attention_mask.to_vector<int64_t>(), (std::vector<int64_t>{1, 1, 1, 1, 0, 0, 1, 1}));
  ASSERT_EQ(step.past_keys.size(), 1u);
  const Tensor& k = step.past_keys[0];
  EXPECT_EQ(k.shape(), (Shape{2, 2, 3, 2}));
  const float* p = k.data<float>();
  EXPECT_EQ(p[((0 * 2 + 1) * 3 + 2) * 2 + 1], 100 + 20 + 1) << "row 0, head 1, position 2, dim 1";
  EXPECT_EQ(p[((1 * 2 + 1) * 3 + 0) * 2 + 0], 0) << "row 1's padding";
  EXPECT_EQ(p[((1 * 2 + 1) * 3 + 2) * 2 + 1], 100 + 1) << "row 1's one position, right-aligned";
  EXPECT_EQ(step.past_values[0].data<float>()[((1 * 2 + 1) * 3 + 2) * 2 + 1], 100.5f + 1);
}

TEST(DecodeBatch, TakesEachRowsPositionsAfterItsPadding) {
  SequenceCache c(kSpec);
  c.take_presents(numbered_presents(1, 2), 0, 2);
  // A step of 2 rows over a past of 3: row 1 (this cache, 2 positions) had 1 padding position.
  c.take_presents(numbered_presents(2, 4), 1, 1);
  EXPECT_EQ(c.length(), 3);
  std::vector<float> past(2 * 2 * 3 * 2, -1.0f);
  c.copy_into(past.data(), 0, 3, 0, true);
  EXPECT_EQ(past[(0 * 3 + 0) * 2 + 0], 1000 + 10) << "head 0 starts at the row's position 1";
  EXPECT_EQ(past[(1 * 3 + 2) * 2 + 1], 1000 + 100 + 30 + 1) << "head 1 ends at the new position 3";
}

TEST(DecodeBatch, RightPadsContextsAndReadsLogitsAtAPosition) {
  const std::vector<int64_t> a = {5, 6, 7}, b = {8};
  const Tensor ids = build_context_batch({a, b});
  EXPECT_EQ(ids.shape(), (Shape{2, 3}));
  EXPECT_EQ(ids.to_vector<int64_t>(), (std::vector<int64_t>{5, 6, 7, 8, 0, 0}));
  std::vector<float> v(2 * 3 * 4);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  const Tensor logits = Tensor::from_vector(v, Shape{2, 3, 4});
  const auto row = logits_at(logits, 1, 0);  // a view into logits
  EXPECT_EQ(row.size(), 4u);
  EXPECT_EQ(row[0], 12.0f);
}

}  // namespace
}  // namespace dtrain::serve
