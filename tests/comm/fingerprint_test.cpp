// Collective fingerprints: what they describe and how a mismatch is reported (the exchange runs in
// comm_fingerprint_* jobs under mpiexec, tests/comm/CMakeLists.txt).
#include "comm/fingerprint.h"

#include <gtest/gtest.h>

#include <vector>

namespace dtrain {
namespace {

TEST(Fingerprint, DescribesTheCollective) {
  const Tensor grads = Tensor::zeros(Shape{1024});
  EXPECT_EQ(describe_fingerprint(
                make_fingerprint(3, CollectiveKind::allreduce, 10, &grads, static_cast<int64_t>(ReduceOp::sum))),
            "allreduce(sum) of 1024 f32 at step 10");
  const Tensor count = Tensor::zeros(Shape{1}, DType::i64);
  EXPECT_EQ(describe_fingerprint(make_fingerprint(0, CollectiveKind::broadcast, -1, &count, -1, 2)),
            "broadcast of 1 i64 from rank 2");
  EXPECT_EQ(describe_fingerprint(make_fingerprint(7, CollectiveKind::barrier, 4)), "barrier at step 4");
}

TEST(Fingerprint, AgreeingRanksPass) {
  const Tensor t = Tensor::zeros(Shape{8});
  const Fingerprint f = make_fingerprint(5, CollectiveKind::allgather, 2, &t);
  EXPECT_EQ(fingerprint_mismatch(std::vector<Fingerprint>{f, f, f}), "");
  EXPECT_EQ(fingerprint_mismatch(std::vector<Fingerprint>{f}), "");
}

TEST(Fingerprint, NamesRankZerosAndTheFirstDifferentRanksCollective) {
  const Tensor big = Tensor::zeros(Shape{1000}), small = Tensor::zeros(Shape{10});
  const auto sum = static_cast<int64_t>(ReduceOp::sum);
  const Fingerprint a = make_fingerprint(12, CollectiveKind::allreduce, 2, &big, sum);
  const Fingerprint skipped = make_fingerprint(12, CollectiveKind::allreduce, 3, &big, sum);
  const Fingerprint other_plan = make_fingerprint(12, CollectiveKind::allreduce, 2, &small, sum);
  EXPECT_EQ(fingerprint_mismatch(std::vector<Fingerprint>{a, a, skipped, other_plan}),
            "collective mismatch at collective #12: rank 0 issued allreduce(sum) of 1000 f32 at step 2, rank 2 "
            "issued allreduce(sum) of 1000 f32 at step 3 (every rank must issue the same collectives in the same "
            "order: did a rank skip a step, or build a different model or bucket plan?)");
  const std::string msg = fingerprint_mismatch(std::vector<Fingerprint>{a, other_plan});
  EXPECT_NE(msg.find("rank 1 issued allreduce(sum) of 10 f32 at step 2"), std::string::npos) << msg;
  const Fingerprint max = make_fingerprint(12, CollectiveKind::allreduce, 2, &big, static_cast<int64_t>(ReduceOp::max));
  EXPECT_NE(fingerprint_mismatch(std::vector<Fingerprint>{a, max}).find("allreduce(max)"), std::string::npos);
}

}  // namespace
}  // namespace dtrain
