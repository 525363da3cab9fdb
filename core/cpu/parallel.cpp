// The pool behind cpu::parallel_for (core/cpu/parallel.h): threads - 1 workers started on first
// use, each waiting on a condition variable for the next job's generation; the caller runs range 0
// and waits for the others. Resized by set_parallel_threads (called by cpu::set_blas_threads).
#include "core/cpu/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "core/kernels.h"

namespace dtrain::cpu {

namespace {

thread_local bool t_in_range = false;  // this thread is running a range: nested calls run inline

class Pool {
 public:
  static Pool& get() {
    static Pool* pool = new Pool;  // never destroyed: kernels may run during static destruction
    return *pool;
  }

  int threads() const { return threads_.load(std::memory_order_relaxed); }

  void resize(int threads) {
    std::lock_guard<std::mutex> busy(busy_);  // not while a job runs
    stop_workers();
    threads_.store(std::max(1, threads), std::memory_order_relaxed);
  }

  // Runs the job on `ranges` threads (the caller included), or inline when the pool is busy.
  void run(int64_t n, int ranges, detail::RangeFn fn, void* context) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock() || t_in_range) return fn(context, 0, n);
    start_workers(ranges - 1);
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = Job{fn, context, n, ranges};
      pending_ = ranges - 1;
      ++generation_;
    }
    wake_.notify_all();
    std::exception_ptr error;
    try {
      run_range(0);
    } catch (...) {  // wait for the other ranges first: they read the caller's captures
      error = std::current_exception();
    }
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return pending_ == 0; });
    if (!error) error = std::exchange(worker_error_, nullptr);
    worker_error_ = nullptr;
    if (error) std::rethrow_exception(error);
  }

 private:
  struct Job {
    detail::RangeFn fn = nullptr;
    void* context = nullptr;
    int64_t n = 0;
    int ranges = 0;
  };

  void run_range(int r) {
    const int64_t begin = job_.n * r / job_.ranges, end = job_.n * (r + 1) / job_.ranges;
    struct InRange {  // nested calls run inline, also while an exception leaves the range
      InRange() { t_in_range = true; }
      ~InRange() { t_in_range = false; }
    } in_range;
    if (begin < end) job_.fn(job_.context, begin, end);
  }

  // Worker `index` runs range index + 1 of each job after generation `seen` that has one.
  void worker(int index, uint64_t seen) {
    for (;;) {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (index + 1 >= job_.ranges) continue;
      lock.unlock();
      std::exception_ptr error;
      try {
        run_range(index + 1);
      } catch (...) {  // handed to the caller, which rethrows the first one
        error = std::current_exception();
      }
      lock.lock();
      if (error && !worker_error_) worker_error_ = error;
      if (--pending_ == 0) done_.notify_one();
    }
  }

  void start_workers(int wanted) {
    uint64_t current = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      current = generation_;  // a new worker must not run a job that ended before it started
    }
    while (static_cast<int>(workers_.size()) < wanted) {
      const int index = static_cast<int>(workers_.size());
      workers_.emplace_back([this, index, current] { worker(index, current); });
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : workers_) t.join();
    workers_.clear();
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = false;
  }

  Pool() : threads_(std::max(1, blas_threads())) {}

  std::atomic<int> threads_;
  std::mutex busy_;  // held by the thread whose job the pool runs
  std::mutex mu_;    // guards job_, generation_, pending_, stop_, worker_error_
  std::condition_variable wake_, done_;
  Job job_;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  std::exception_ptr worker_error_;  // the first exception a worker's range threw in this job
  std::vector<std::thread> workers_;
};

}  // namespace

int parallel_threads() { return Pool::get().threads(); }

void set_parallel_threads(int threads) { Pool::get().resize(threads); }

namespace detail {
void parallel_run(int64_t n, int64_t grain, RangeFn fn, void* context) {
  const int64_t by_grain = std::max<int64_t>(1, n / std::max<int64_t>(1, grain));
  const int ranges = static_cast<int>(std::min<int64_t>(parallel_threads(), by_grain));
  if (ranges <= 1) return fn(context, 0, n);
  Pool::get().run(n, ranges, fn, context);
}
}  // namespace detail

}  // namespace dtrain::cpu
