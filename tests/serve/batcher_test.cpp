// Dynamic batching: concurrent requests merge up to max_batch rows (eager: while the worker is
// busy; delay: within the queue delay), each caller gets its own rows back, failures reach every
// caller of the batch; the queue policy rejects over max_queue_size and times out queued requests.
#include "serve/batcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "core/error.h"

namespace dtrain::serve {
namespace {

// Doubles every value of a [rows, 2] f32 input; records batch sizes.
struct Doubler {
  std::mutex mutex;
  std::vector<int64_t> batches;
  Batcher::RunFn fn() {
    return [this](const std::vector<Tensor>& in) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        batches.push_back(in[0].dim(0));
      }
      std::vector<float> v = in[0].to_vector<float>();
      for (float& x : v) x *= 2;
      return std::vector<Tensor>{Tensor::from_vector(v, in[0].shape())};
    };
  }
};

Tensor rows_of(float first, int64_t rows) {
  std::vector<float> v;
  for (int64_t i = 0; i < rows * 2; ++i) v.push_back(first + static_cast<float>(i));
  return Tensor::from_vector(v, Shape{rows, 2});
}

TEST(Batcher, MergesConcurrentRequestsAndSplitsRowsBack) {
  Doubler d;
  std::vector<std::future<BatchResult>> futures;
  {
    Batcher b(d.fn(), BatcherOptions{64, 200'000, 1, BatchPolicy::delay});
    for (int i = 0; i < 10; ++i) futures.push_back(b.submit({rows_of(100.0f * i, 1 + i % 3)}));
    for (int i = 0; i < 10; ++i) {
      const BatchResult r = futures[i].get();
      ASSERT_TRUE(r.error.empty()) << r.error;
      ASSERT_EQ(r.outputs.size(), 1u);
      EXPECT_EQ(r.outputs[0].dim(0), 1 + i % 3);
      const std::vector<float> got = r.outputs[0].to_vector<float>();
      for (size_t k = 0; k < got.size(); ++k) EXPECT_EQ(got[k], 2 * (100.0f * i + k));
    }
  }
  ASSERT_FALSE(d.batches.empty());
  EXPECT_LT(d.batches.size(), 10u) << "10 requests queued within the delay should share batches";
  int64_t total = 0;
  for (int64_t n : d.batches) total += n;
  EXPECT_EQ(total, 19);
}

TEST(Batcher, NeverExceedsMaxBatchRows) {
  Doubler d;
  {
    Batcher b(d.fn(), BatcherOptions{5, 100'000, 2, BatchPolicy::delay});
    std::vector<std::future<BatchResult>> futures;
    for (int i = 0; i < 20; ++i) futures.push_back(b.submit({rows_of(0, 1 + i % 4)}));
    for (auto& f : futures) EXPECT_TRUE(f.get().error.empty());
  }
  for (int64_t n : d.batches) EXPECT_LE(n, 5);
  EXPECT_THROW(Batcher(d.fn(), BatcherOptions{5, 0, 1}).submit({rows_of(0, 6)}), Error);
}

TEST(Batcher, ZeroDelayRunsAloneRequestAtOnce) {
  Doubler d;
  Batcher b(d.fn(), BatcherOptions{64, 0, 1});
  const auto start = std::chrono::steady_clock::now();
  const BatchResult r = b.submit({rows_of(1, 1)}).get();
  EXPECT_TRUE(r.error.empty());
  EXPECT_EQ(r.batch_rows, 1);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

TEST(Batcher, ReportsAFailedBatchToEveryCaller) {
  Batcher b([](const std::vector<Tensor>&) -> std::vector<Tensor> { fail("engine broke on node 'Gemm_0'"); },
            BatcherOptions{8, 50'000, 1});
  auto f1 = b.submit({rows_of(0, 1)});
  auto f2 = b.submit({rows_of(0, 2)});
  EXPECT_NE(f1.get().error.find("node 'Gemm_0'"), std::string::npos);
  EXPECT_NE(f2.get().error.find("node 'Gemm_0'"), std::string::npos);
}

TEST(Batcher, DestructionFinishesQueuedRequests) {
  Doubler d;
  std::vector<std::future<BatchResult>> futures;
  {
    Batcher b(d.fn(), BatcherOptions{2, 1'000'000, 1, BatchPolicy::delay});
    for (int i = 0; i < 7; ++i) futures.push_back(b.submit({rows_of(0, 1)}));
  }
  for (auto& f : futures) EXPECT_TRUE(f.get().error.empty());
}

TEST(Batcher, ConcatRowsJoinsInputsInOrder) {
  const std::vector<Tensor> joined = concat_rows({{rows_of(0, 1)}, {rows_of(10, 2)}});
  EXPECT_EQ(joined[0].shape(), (Shape{3, 2}));
  EXPECT_EQ(joined[0].to_vector<float>(), (std::vector<float>{0, 1, 10, 11, 12, 13}));
  EXPECT_THROW(concat_rows({{rows_of(0, 1)}, {Tensor::zeros(Shape{1, 3})}}), Error);
}

// A run function that blocks until released, so a test controls when the worker is busy.
struct Gate {
  std::mutex mutex;
  std::condition_variable changed;
  bool open = false;
  int started = 0;
  std::vector<int64_t> batches;
  Batcher::RunFn fn() {
    return [this](const std::vector<Tensor>& in) {
      std::unique_lock<std::mutex> lock(mutex);
      ++started;
      batches.push_back(in[0].dim(0));
      changed.notify_all();
      changed.wait(lock, [this] { return open; });
      return std::vector<Tensor>{in[0]};
    };
  }
  void wait_started(int n) {
    std::unique_lock<std::mutex> lock(mutex);
    changed.wait(lock, [&] { return started >= n; });
  }
  void release() {
    std::lock_guard<std::mutex> lock(mutex);
    open = true;
    changed.notify_all();
  }
};

TEST(Batcher, EagerRunsALoneRequestAtOnceWhateverTheDelay) {
  Doubler d;
  Batcher b(d.fn(), BatcherOptions{64, 10'000'000, 1});  // the eager policy is the default
  const auto start = std::chrono::steady_clock::now();
  const BatchResult r = b.submit({rows_of(1, 1)}).get();
  EXPECT_TRUE(r.error.empty());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5)) << "eager must not wait out the delay";
}

TEST(Batcher, EagerBatchesWhatQueuedWhileTheWorkerWasBusy) {
  Gate g;
  std::vector<std::future<BatchResult>> futures;
  {
    Batcher b(g.fn(), BatcherOptions{64, 0, 1});
    futures.push_back(b.submit({rows_of(0, 1)}));
    g.wait_started(1);  // the worker is busy with the first request
    for (int i = 0; i < 5; ++i) futures.push_back(b.submit({rows_of(0, 2)}));
    g.release();
    for (auto& f : futures) EXPECT_TRUE(f.get().error.empty());
  }
  EXPECT_EQ(g.batches, (std::vector<int64_t>{1, 10}));
}

TEST(Batcher, RejectsOverTheMaximumQueueSize) {
  Gate g;
  Batcher b(g.fn(), BatcherOptions{64, 0, 1, BatchPolicy::eager, 2});
  auto running = b.submit({rows_of(0, 1)});
  g.wait_started(1);
  auto q1 = b.submit({rows_of(0, 1)});
  auto q2 = b.submit({rows_of(0, 1)});
  EXPECT_THROW(b.submit({rows_of(0, 1)}), QueueFull);
  EXPECT_EQ(b.queue_depth(), 2);
  g.release();
  EXPECT_TRUE(running.get().error.empty());
  EXPECT_TRUE(q1.get().error.empty());
  EXPECT_TRUE(q2.get().error.empty());
}

TEST(Batcher, TimesOutRequestsStillQueuedWhileTheWorkerIsBusy) {
  Gate g;
  Batcher b(g.fn(), BatcherOptions{64, 0, 1, BatchPolicy::eager, 0, 20'000});
  auto running = b.submit({rows_of(0, 1)});
  g.wait_started(1);
  auto by_default = b.submit({rows_of(0, 1)});
  auto shorter = b.submit({rows_of(0, 1)}, 5'000);
  auto longer = b.submit({rows_of(0, 1)}, 60'000'000);  // may not lengthen the default
  for (auto* f : {&by_default, &shorter, &longer})
    ASSERT_EQ(f->wait_for(std::chrono::seconds(10)), std::future_status::ready) << "a queued request never timed out";
  const BatchResult r = by_default.get();
  EXPECT_TRUE(r.timed_out);
  EXPECT_NE(r.error.find("over its timeout"), std::string::npos) << r.error;
  EXPECT_GE(r.queue_s, 0.02);
  EXPECT_TRUE(shorter.get().timed_out);
  EXPECT_TRUE(longer.get().timed_out);
  EXPECT_EQ(b.queue_depth(), 0);
  g.release();
  const BatchResult ran = running.get();  // taken before its deadline: it runs
  EXPECT_FALSE(ran.timed_out);
  EXPECT_TRUE(ran.error.empty());
}

TEST(Batcher, AppliesARequestTimeoutWithoutADefault) {
  Gate g;
  Batcher b(g.fn(), BatcherOptions{64, 0, 1});
  auto running = b.submit({rows_of(0, 1)});
  g.wait_started(1);
  auto timed = b.submit({rows_of(0, 1)}, 1'000);
  auto patient = b.submit({rows_of(0, 1)});
  ASSERT_EQ(timed.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(timed.get().timed_out);
  g.release();
  EXPECT_FALSE(patient.get().timed_out);
  EXPECT_THROW(parse_batch_policy("lazy"), Error);
  EXPECT_EQ(parse_batch_policy("delay"), BatchPolicy::delay);
}

}  // namespace
}  // namespace dtrain::serve
