#pragma once
// The HTTP server's threads: up to `max_threads`, started only when a job finds none idle, and
// handed jobs most-recently-idle first. A keep-alive connection holds its thread, so the pool
// must allow many (--threads); with a first-in-first-out wake-up every one of them would serve
// in turn and each touch its own stack and malloc cache, which makes the resident memory creep
// up for as long as clients reconnect. Here the threads in use are the ones the peak
// concurrency needed, and the same hot ones serve again.
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace dtrain::serve {

class WorkerPool {
 public:
  explicit WorkerPool(size_t max_threads);
  ~WorkerPool();  // shutdown()
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Runs `job` on an idle thread (the one idle the shortest time), on a new thread while fewer
  // than max_threads exist, or else queued until a thread finishes.
  void enqueue(std::function<void()> job);
  // Runs every queued job, then joins the threads. Jobs enqueued afterwards are dropped.
  void shutdown();

  size_t threads_started() const;
  size_t threads_idle() const;

 private:
  struct Worker {
    std::condition_variable wake;
    std::function<void()> job;  // set by enqueue while the worker is idle
    std::thread thread;
  };
  void run(Worker* self);

  const size_t max_threads_;
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<Worker*> idle_;  // a stack: back() went idle last
  std::deque<std::function<void()>> queued_;
  bool stopping_ = false;
};

}  // namespace dtrain::serve
