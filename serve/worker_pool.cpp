#include "serve/worker_pool.h"

#include <system_error>
#include <utility>

#include "core/log.h"

namespace dtrain::serve {

WorkerPool::WorkerPool(size_t max_threads) : max_threads_(max_threads < 1 ? 1 : max_threads) {}

WorkerPool::~WorkerPool() { shutdown(); }

void WorkerPool::enqueue(std::function<void()> job) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (stopping_) return;
  if (!idle_.empty()) {
    Worker* w = idle_.back();
    idle_.pop_back();
    w->job = std::move(job);
    w->wake.notify_one();
    return;
  }
  if (workers_.size() < max_threads_) {
    auto w = std::make_unique<Worker>();
    w->job = std::move(job);
    Worker* raw = w.get();
    try {
      raw->thread = std::thread([this, raw] { run(raw); });
      workers_.push_back(std::move(w));
      return;
    } catch (const std::system_error& e) {  // out of threads: queue it for a running one
      job = std::move(raw->job);
      if (workers_.empty()) {  // no thread at all: serve it here rather than leak its socket
        lock.unlock();
        log_error("HTTP worker pool: cannot start a thread ({}); serving on the accepting thread", e.what());
        job();
        return;
      }
      log_warn("HTTP worker pool: cannot start thread {} ({}); the request waits for a busy one", workers_.size() + 1,
               e.what());
    }
  }
  queued_.push_back(std::move(job));
}

void WorkerPool::run(Worker* self) {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    std::function<void()> job = std::move(self->job);
    self->job = nullptr;
    lock.unlock();
    job();
    job = nullptr;  // release what the job held before waiting
    lock.lock();
    if (!queued_.empty()) {
      self->job = std::move(queued_.front());
      queued_.pop_front();
      continue;
    }
    if (stopping_) return;
    idle_.push_back(self);
    self->wake.wait(lock, [&] { return static_cast<bool>(self->job) || stopping_; });
    if (!self->job) return;  // stopping, nothing handed over
  }
}

void WorkerPool::shutdown() {
  std::vector<Worker*> all;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
    for (const auto& w : workers_) all.push_back(w.get());
    for (Worker* w : idle_) w->wake.notify_one();
    idle_.clear();
  }
  for (Worker* w : all)
    if (w->thread.joinable()) w->thread.join();
}

size_t WorkerPool::threads_idle() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return idle_.size();
}

size_t WorkerPool::threads_started() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return workers_.size();
}

}  // namespace dtrain::serve
