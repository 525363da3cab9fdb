// The batches of a decoding step: the cache's slots as views with each slot's mask and positions,
// each slot's new position taken back, prefills, contexts right-padded for the recompute path.
#include "serve/decode_batch.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>

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

// A cache holding a (3 positions of rows 0 of a prefill) and b (1 position of row 1 of another).
DecodeCache two_slots() {
  DecodeCache c(kSpec);
  c.add(numbered_presents(1, 3), 0, 3);
  c.add(numbered_presents(2, 1), 1, 1);
  return c;
}

TEST(DecodeBatch, AStepSeesEachSlotsPositionsAndTheNewOneThroughTheMask) {
  DecodeCache c = two_slots();
  EXPECT_EQ(c.size(), 2);
  EXPECT_EQ(c.length(0), 3);
  EXPECT_EQ(c.length(1), 1);
  const CachedStep step = c.step_inputs({7, 9});
  EXPECT_EQ(step.input_ids.to_vector<int64_t>(), (std::vector<int64_t>{7, 9}));
  EXPECT_EQ(step.position_ids.to_vector<int64_t>(), (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(step.attention_mask.shape(), (Shape{2, 4}));
  EXPECT_EQ(step.attention_mask.to_vector<int64_t>(), (std::vector<int64_t>{1, 1, 1, 1, 1, 0, 0, 1}));
  ASSERT_EQ(step.past_keys.size(), 1u);
  const Tensor& k = step.past_keys[0];
  EXPECT_EQ(k.shape(), (Shape{2, 2, 3, 2}));
  EXPECT_FALSE(k.is_contiguous()) << "a view of the cache's buffer, with room for more positions per slot";
  EXPECT_EQ(k.storage(), c.buffer(0, true).storage());
  const Shape& st = k.strides();
  const float* p = k.data<float>();
  EXPECT_EQ(p[0 * st[0] + 1 * st[1] + 2 * st[2] + 1], 100 + 20 + 1) << "slot 0, head 1, position 2, dim 1";
  EXPECT_EQ(p[1 * st[0] + 1 * st[1] + 0 * st[2] + 1], 1000 + 100 + 1) << "slot 1's one position, at 0";
  EXPECT_EQ(p[1 * st[0] + 1 * st[1] + 2 * st[2] + 1], 0) << "slot 1 past its length: zeros (masked)";
  EXPECT_EQ(step.past_values[0].data<float>()[1 * st[0] + 1 * st[1] + 1], 1000 + 100.5f + 1);
}

TEST(DecodeBatch, TakesEachSlotsNewPositionFromWhereverThePresentsLive) {
  DecodeCache c = two_slots();
  // Presents made elsewhere (contiguous [2, 2, 4, 2]): position 3 is each slot's new one.
  c.take_step(numbered_presents(2, 4));
  EXPECT_EQ(c.length(0), 4);
  EXPECT_EQ(c.length(1), 2);
  const CachedStep next = c.step_inputs({1, 2});
  const Tensor& k = next.past_keys[0];
  const Shape& st = k.strides();
  EXPECT_EQ(k.shape(), (Shape{2, 2, 4, 2}));
  EXPECT_EQ(k.data<float>()[0 * st[0] + 1 * st[1] + 3 * st[2] + 1], 100 + 30 + 1) << "slot 0's new position 3";
  EXPECT_EQ(k.data<float>()[1 * st[0] + 1 * st[1] + 1 * st[2] + 1], 1000 + 100 + 30 + 1)
      << "slot 1's new position, moved from 3 to 1";
  EXPECT_EQ(next.attention_mask.to_vector<int64_t>(), (std::vector<int64_t>{1, 1, 1, 1, 1, 1, 1, 0, 0, 1}));
}

TEST(DecodeBatch, SmallBuffersHaveRoomForCtxAndStayWhenIdle) {
  DecodeCache c = two_slots();
  EXPECT_EQ(c.buffer(0, true).dim(2), 16);
  c.remove(1);
  c.remove(0);
  EXPECT_EQ(c.buffer(0, true).dim(2), 16);
}

TEST(DecodeBatch, LargeBuffersFollowTheLongestSequenceAndAreReleasedWhenIdle) {
  DecodeCache c(kSpec, /*small_bytes=*/0);
  c.add(numbered_presents(1, 3), 0, 3);
  c.add(numbered_presents(2, 1), 1, 1);
  EXPECT_EQ(c.buffer(0, true).dim(2), 3) << "room for the longest prefill";
  (void)c.step_inputs({1, 2});
  EXPECT_EQ(c.buffer(0, true).dim(2), 6) << "room for the new position, doubled";
  c.take_step(numbered_presents(2, 4));
  for (int i = 0; i < 11; ++i) {
    (void)c.step_inputs({1, 2});
    c.take_step(numbered_presents(2, c.length(0) + 1));
  }
  EXPECT_EQ(c.length(0), 15);
  EXPECT_EQ(c.length(1), 13);
  const CachedStep last = c.step_inputs({1, 2});
  EXPECT_EQ(c.buffer(0, true).dim(2), 16) << "12 doubled would be 24: never past ctx";
  const Shape& st = last.past_keys[0].strides();
  EXPECT_EQ(last.past_keys[0].data<float>()[1 * st[0] + 1 * st[1] + 0 * st[2] + 1], 1000 + 100 + 1)
      << "slot 1's first position survived every move";
  c.remove(0);
  c.remove(0);
  EXPECT_EQ(c.size(), 0);
  EXPECT_THROW((void)c.buffer(0, true), std::out_of_range) << "released";
}

TEST(DecodeBatch, RemovingASlotMovesTheLastIntoIt) {
  DecodeCache c = two_slots();
  c.add(numbered_presents(1, 2), 0, 2);  // slot 2: 2 positions of row 0
  c.remove(0);
  EXPECT_EQ(c.size(), 2);
  EXPECT_EQ(c.length(0), 2);
  EXPECT_EQ(c.length(1), 1);
  const CachedStep step = c.step_inputs({1, 2});
  const Shape& st = step.past_keys[0].strides();
  EXPECT_EQ(step.past_keys[0].data<float>()[0 * st[0] + 1 * st[1] + 1 * st[2] + 1], 100 + 10 + 1);
  c.remove(1);
  EXPECT_EQ(c.size(), 1);
  EXPECT_THROW(c.remove(1), Error);
  EXPECT_THROW(c.step_inputs({1, 2}), Error) << "one token per slot";
}

// A model_with_past.onnx whose presents break the contract is an error naming the output, and the
// cache is unchanged by it.
TEST(DecodeBatch, PresentsOfTheWrongShapeAreErrorsNamingTheOutput) {
  DecodeCache c = two_slots();
  (void)c.step_inputs({1, 2});
  const auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  std::string m = message([&] { c.take_step(numbered_presents(2, 3)); });  // 3 positions, not 4
  EXPECT_NE(m.find("model_with_past 'present.0.key' has shape [2, 2, 3, 2], a step over 2 caches of up to 3 "
                   "positions makes 4"),
            std::string::npos)
      << m;
  m = message([&] { c.add(numbered_presents(1, 2), 0, 5); });
  EXPECT_NE(m.find("'present.0.key' has shape [1, 2, 2, 2], which cannot hold row 0 with 5 positions"),
            std::string::npos)
      << m;
  EXPECT_EQ(c.size(), 2);
  EXPECT_EQ(c.length(0), 3);
  EXPECT_EQ(c.length(1), 1);
}

TEST(DecodeBatch, APrefillFeedsEveryRowFromPositionZeroOverAnEmptyCache) {
  const CachedStep step = build_prefill(kSpec, {{1, 2, 3}, {4, 5, 6}});
  EXPECT_EQ(step.position_ids.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 0, 1, 2}));
  EXPECT_EQ(step.attention_mask.to_vector<int64_t>(), (std::vector<int64_t>(6, 1)));
  EXPECT_EQ(step.past_keys.at(0).shape(), (Shape{2, 2, 0, 2}));
  EXPECT_THROW(build_prefill(kSpec, {{1, 2}, {3}}), Error);
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
