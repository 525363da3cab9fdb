// StepTally: the training loss and hits summed where the model runs, read once per log line.
#include "launch/log_window.h"

#include <gtest/gtest.h>

#include <vector>

namespace dtrain {
namespace {

// A micro-batch of `rows` predictions over 3 classes whose first `hits` rows predict their label.
struct MicroBatch {
  Tensor losses, logits, labels;
};
MicroBatch micro_batch(int64_t rows, int64_t hits, float loss) {
  std::vector<float> logits;
  std::vector<int64_t> labels;
  for (int64_t r = 0; r < rows; ++r) {
    logits.insert(logits.end(), {0.1f, 0.9f, 0.2f});  // argmax: class 1
    labels.push_back(r < hits ? 1 : 2);
  }
  return {Tensor::from_vector(std::vector<float>(static_cast<size_t>(rows), loss), Shape{rows}),
          Tensor::from_vector(logits, Shape{rows, 3}), Tensor::from_vector(labels, Shape{rows})};
}

TEST(StepTally, SumsLossesAndHitsUntilTaken) {
  StepTally tally(Device::cpu(), 4);
  EXPECT_TRUE(tally.free_to_read());
  for (const auto& [rows, hits, loss] : std::vector<std::tuple<int64_t, int64_t, float>>{{4, 1, 0.5f}, {2, 2, 1.5f}}) {
    tally.begin_step();
    const MicroBatch b = micro_batch(rows, hits, loss);
    tally.add(b.losses, b.logits, b.labels);
  }
  EXPECT_DOUBLE_EQ(tally.last_step_mean_loss(), 1.5);
  const StepTally::Totals t = tally.take();
  EXPECT_DOUBLE_EQ(t.loss, 4 * 0.5 + 2 * 1.5);
  EXPECT_EQ(t.hits, 3);
  EXPECT_EQ(t.predictions, 6);
  const StepTally::Totals empty = tally.take();
  EXPECT_EQ(empty.loss, 0.0);
  EXPECT_EQ(empty.hits, 0);
  EXPECT_EQ(empty.predictions, 0);
}

TEST(StepTally, MoreMicroBatchesThanItsCapacityFoldIntoTheHostSums) {
  StepTally tally(Device::cpu(), 2);
  tally.begin_step();
  for (int i = 0; i < 7; ++i) {  // one step of 7 micro-batches, 3 folds
    const MicroBatch b = micro_batch(3, 2, static_cast<float>(i));
    tally.add(b.losses, b.logits, b.labels);
  }
  EXPECT_EQ(tally.predictions(), 21);
  EXPECT_DOUBLE_EQ(tally.last_step_mean_loss(), 3.0 * 21 / 21);
  const StepTally::Totals t = tally.peek();
  EXPECT_DOUBLE_EQ(t.loss, 3.0 * (0 + 1 + 2 + 3 + 4 + 5 + 6));
  EXPECT_EQ(t.hits, 14);
  EXPECT_EQ(t.predictions, 21);
}

}  // namespace
}  // namespace dtrain
