// cpu::parallel_for (core/cpu/parallel.h): ranges cover [0, n) once, small passes and nested calls
// run inline, concurrent callers never deadlock, and the pool follows set_blas_threads.
#include "core/cpu/parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "core/kernels.h"

namespace dtrain::cpu {
namespace {

class ParallelTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { set_blas_threads(GetParam()); }
  void TearDown() override { set_blas_threads(1); }
};

TEST_P(ParallelTest, RangesCoverEveryItemOnceAndRespectTheGrain) {
  for (int64_t n : {1, 7, 100, 4096, 100003}) {
    std::vector<int> hits(static_cast<size_t>(n), 0);
    std::mutex mu;
    std::vector<std::pair<int64_t, int64_t>> ranges;
    parallel_for(n, 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) ++hits[static_cast<size_t>(i)];
      std::lock_guard<std::mutex> lock(mu);
      ranges.emplace_back(b, e);
    });
    for (int h : hits) ASSERT_EQ(h, 1) << "n=" << n;
    EXPECT_LE(static_cast<int>(ranges.size()), GetParam());
    if (ranges.size() > 1) {
      for (auto [b, e] : ranges) EXPECT_GE(e - b, 16) << "n=" << n;
    }
  }
}

TEST_P(ParallelTest, NestedCallsRunInline) {
  std::atomic<int64_t> total{0};
  parallel_for(1000, 1, [&](int64_t b, int64_t e) {
    const std::thread::id outer = std::this_thread::get_id();
    parallel_for(e - b, 1, [&](int64_t ib, int64_t ie) {
      EXPECT_EQ(std::this_thread::get_id(), outer);
      total += ie - ib;
    });
  });
  EXPECT_EQ(total.load(), 1000);
}

TEST_P(ParallelTest, ConcurrentCallersAllFinish) {
  std::vector<std::thread> callers;
  std::atomic<int64_t> total{0};
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&] {
      for (int rep = 0; rep < 200; ++rep) parallel_for(512, 8, [&](int64_t b, int64_t e) { total += e - b; });
    });
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(total.load(), 4 * 200 * 512);
}

TEST_P(ParallelTest, AnExceptionInAnyRangeReachesTheCallerAndThePoolGoesOn) {
  for (int64_t thrower : {int64_t{0}, int64_t{999}}) {  // the caller's range, then the last range
    EXPECT_THROW(parallel_for(1000, 1,
                              [&](int64_t b, int64_t e) {
                                if (thrower >= b && thrower < e) throw std::runtime_error("range failed");
                              }),
                 std::runtime_error);
    std::atomic<int64_t> total{0};
    parallel_for(1000, 1, [&](int64_t b, int64_t e) { total += e - b; });
    EXPECT_EQ(total.load(), 1000);
  }
}

TEST_P(ParallelTest, ThreadCountFollowsTheBlasPolicy) { EXPECT_EQ(parallel_threads(), GetParam()); }

INSTANTIATE_TEST_SUITE_P(Threads, ParallelTest, ::testing::Values(1, 2, 3));

}  // namespace
}  // namespace dtrain::cpu
