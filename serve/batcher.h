#pragma once
// Dynamic batching for one model version: requests queue up, and each of `instances` workers takes
// the oldest request plus whatever else fits in `max_batch` rows, runs them as one batch and splits
// the output rows back to each caller. The eager policy (the default) runs what is queued as soon
// as a worker is idle, so batches form only while every worker is busy; the delay policy (Triton's)
// waits up to `max_queue_delay_us` after the oldest request arrived for the batch to fill. A queue
// policy as Triton's: at most `max_queue_size` requests wait (submit throws QueueFull beyond), and
// a request still queued after its timeout is answered `timed_out` without running.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"

namespace dtrain::serve {

struct BatchResult {
  std::vector<Tensor> outputs;  // this request's rows of every output (host)
  std::string error;            // non-empty when the batch failed
  double queue_s = 0;           // from submit to the start of its batch
  double compute_s = 0;         // the batch's run time
  int64_t batch_rows = 0;       // rows in the batch it ran in
  bool timed_out = false;       // left the queue unrun at its timeout (`error` says so)
};

enum class BatchPolicy { eager, delay };

// "eager" | "delay" -> the policy; throws dtrain::Error naming the text otherwise.
BatchPolicy parse_batch_policy(const std::string& text);

struct BatcherOptions {
  int64_t max_batch = 64;
  int64_t max_queue_delay_us = 2000;  // the delay policy's wait for a batch to fill
  int instances = 1;
  BatchPolicy policy = BatchPolicy::eager;
  int64_t max_queue_size = 0;     // requests waiting at most (0: no limit)
  int64_t queue_timeout_us = 0;   // how long a request may wait in the queue (0: no limit)
  Device device = Device::cpu();  // the model's: a worker on a CUDA device runs on its own stream
};

// submit's answer when the queue already holds max_queue_size requests.
class QueueFull : public Error {
 public:
  using Error::Error;
};

class Batcher {
 public:
  // Runs one batch: inputs in model order, each [rows, ...]; returns outputs [rows, ...].
  using RunFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;
  // Called after each batch with its rows and run time (metrics).
  using BatchObserver = std::function<void(int64_t rows, double compute_s)>;

  Batcher(RunFn run, BatcherOptions options, BatchObserver on_batch = {});
  ~Batcher();  // runs what is queued, then joins the workers
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // `inputs` are host tensors [rows, ...] with 1 <= rows <= max_batch (the same rows each).
  // `timeout_us` > 0 sets this request's queue timeout when it is below the default (or there is
  // none): a request may shorten its wait, never lengthen it, as Triton's allow_timeout_override.
  std::future<BatchResult> submit(std::vector<Tensor> inputs, int64_t timeout_us = 0);
  int64_t queue_depth() const;  // requests waiting for a worker

 private:
  using Clock = std::chrono::steady_clock;
  struct Job {
    std::vector<Tensor> inputs;
    int64_t rows = 0;
    Clock::time_point enqueued;
    Clock::time_point deadline = Clock::time_point::max();
    std::promise<BatchResult> done;
  };
  void work();
  void expire();  // the timeout thread: answers queued jobs whose deadline passed
  void run_batch(std::vector<Job>& jobs);

  RunFn run_;
  BatcherOptions options_;
  BatchObserver on_batch_;
  mutable std::mutex queue_mutex_;  // guards queue_, queued_rows_, stop_
  std::condition_variable queue_changed_;
  std::condition_variable deadline_added_;  // wakes the timeout thread: a job with a deadline, or stop
  std::deque<Job> queue_;
  int64_t queued_rows_ = 0;
  bool stop_ = false;
  std::vector<std::thread> workers_;
  std::thread expirer_;
};

// Rows [0, a.rows) of a, then b, ...: one tensor per input (host, contiguous).
std::vector<Tensor> concat_rows(const std::vector<std::vector<Tensor>>& parts);

}  // namespace dtrain::serve
