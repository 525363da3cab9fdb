#include "serve/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

namespace dtrain::serve {
namespace {

using namespace std::chrono_literals;

// Blocks jobs until opened; counts those waiting.
class Gate {
 public:
  void wait() {
    std::unique_lock<std::mutex> lock(m_);
    ++waiting_;
    changed_.notify_all();
    changed_.wait(lock, [&] { return open_; });
    --waiting_;
  }
  void open() {
    std::lock_guard<std::mutex> lock(m_);
    open_ = true;
    changed_.notify_all();
  }
  // Waits (at most 10 s) until `n` jobs wait at the gate.
  bool until_waiting(int n) {
    std::unique_lock<std::mutex> lock(m_);
    return changed_.wait_for(lock, 10s, [&] { return waiting_ >= n; });
  }

 private:
  std::mutex m_;
  std::condition_variable changed_;
  int waiting_ = 0;
  bool open_ = false;
};

// Waits (at most 10 s) until every started thread is idle again: a job's end comes just before
// its thread returns to the pool.
void until_all_idle(const WorkerPool& pool) {
  for (int i = 0; i < 10000 && pool.threads_idle() != pool.threads_started(); ++i) std::this_thread::sleep_for(1ms);
  ASSERT_EQ(pool.threads_idle(), pool.threads_started());
}

// Enqueues a job and waits for it to finish and its thread to be idle; returns that thread.
std::thread::id run_one(WorkerPool& pool) {
  std::mutex m;
  std::condition_variable done;
  std::thread::id ran_on;
  bool finished = false;
  pool.enqueue([&] {
    std::lock_guard<std::mutex> lock(m);
    ran_on = std::this_thread::get_id();
    finished = true;
    done.notify_all();
  });
  std::unique_lock<std::mutex> lock(m);
  EXPECT_TRUE(done.wait_for(lock, 10s, [&] { return finished; }));
  until_all_idle(pool);
  return ran_on;
}

TEST(WorkerPool, StartsThreadsOnlyWhenNoneIsIdleAndReusesTheLastIdleOne) {
  WorkerPool pool(8);
  EXPECT_EQ(pool.threads_started(), 0u);
  const std::thread::id first = run_one(pool);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(run_one(pool), first);
  EXPECT_EQ(pool.threads_started(), 1u);
}

TEST(WorkerPool, RunsUpToMaxThreadsAtOnceAndQueuesTheRest) {
  WorkerPool pool(3);
  Gate gate;
  std::atomic<int> done{0};
  for (int i = 0; i < 10; ++i)
    pool.enqueue([&] {
      gate.wait();
      ++done;
    });
  ASSERT_TRUE(gate.until_waiting(3));
  std::this_thread::sleep_for(50ms);  // a fourth thread, if one were started, would show up here
  EXPECT_EQ(pool.threads_started(), 3u);
  EXPECT_EQ(done.load(), 0);
  gate.open();
  pool.shutdown();  // runs the queued jobs first
  EXPECT_EQ(done.load(), 10);
}

TEST(WorkerPool, AfterABurstTheMostRecentlyIdleThreadServes) {
  WorkerPool pool(4);
  Gate gate;
  std::mutex m;
  std::set<std::thread::id> burst;
  for (int i = 0; i < 4; ++i)
    pool.enqueue([&] {
      {
        std::lock_guard<std::mutex> lock(m);
        burst.insert(std::this_thread::get_id());
      }
      gate.wait();
    });
  ASSERT_TRUE(gate.until_waiting(4));
  gate.open();
  until_all_idle(pool);
  const std::thread::id next = run_one(pool);
  EXPECT_EQ(burst.count(next), 1u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(run_one(pool), next);  // not a round robin over the four
  EXPECT_EQ(pool.threads_started(), 4u);
}

TEST(WorkerPool, ManyJobsFromManyThreadsAllRunOnce) {
  std::atomic<int> ran{0};
  {
    WorkerPool pool(5);
    std::vector<std::thread> producers;
    for (int p = 0; p < 4; ++p)
      producers.emplace_back([&] {
        for (int i = 0; i < 500; ++i) pool.enqueue([&] { ++ran; });
      });
    for (std::thread& t : producers) t.join();
    EXPECT_LE(pool.threads_started(), 5u);
  }  // the destructor shuts down: every queued job runs
  EXPECT_EQ(ran.load(), 2000);
}

TEST(WorkerPool, JobsAfterShutdownAreDropped) {
  WorkerPool pool(2);
  run_one(pool);
  pool.shutdown();
  bool ran = false;
  pool.enqueue([&] { ran = true; });
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(ran);
  pool.shutdown();  // a second shutdown is harmless
}

}  // namespace
}  // namespace dtrain::serve
