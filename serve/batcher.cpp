#include "serve/batcher.h"

#include <algorithm>
#include <cstring>
#include <exception>

#include "core/error.h"
#include "serve/thread_stream.h"

namespace dtrain::serve {

std::vector<Tensor> concat_rows(const std::vector<std::vector<Tensor>>& parts) {
  DTRAIN_CHECK(!parts.empty(), "concat_rows: nothing to concatenate");
  std::vector<Tensor> out;
  for (size_t k = 0; k < parts[0].size(); ++k) {
    const Tensor& first = parts[0][k];
    Shape shape = first.shape();
    shape[0] = 0;
    for (const auto& p : parts) shape[0] += p[k].dim(0);
    Tensor t = Tensor::empty(shape, first.dtype());
    char* dst = static_cast<char*>(t.raw_data());
    for (const auto& p : parts) {
      DTRAIN_CHECK(p[k].dtype() == first.dtype() && p[k].is_contiguous() && p[k].device().is_cpu(),
                   "concat_rows: input ", k, " differs in dtype or is not a contiguous host tensor");
      DTRAIN_CHECK(p[k].ndim() == first.ndim() &&
                       std::equal(p[k].shape().begin() + 1, p[k].shape().end(), first.shape().begin() + 1),
                   "concat_rows: input ", k, " has rows of shape ", p[k].shape().str(), " and ", first.shape().str());
      std::memcpy(dst, p[k].raw_data(), static_cast<size_t>(p[k].nbytes()));
      dst += p[k].nbytes();
    }
    out.push_back(std::move(t));
  }
  return out;
}

BatchPolicy parse_batch_policy(const std::string& text) {
  if (text == "eager") return BatchPolicy::eager;
  if (text == "delay") return BatchPolicy::delay;
  fail("'", text, "' is not a batching policy (expected eager or delay)");
}

Batcher::Batcher(RunFn run, BatcherOptions options, BatchObserver on_batch)
    : run_(std::move(run)), options_(options), on_batch_(std::move(on_batch)) {
  DTRAIN_CHECK(options_.max_batch >= 1 && options_.instances >= 1, "Batcher: max_batch and instances must be positive");
  DTRAIN_CHECK(options_.max_queue_size >= 0 && options_.queue_timeout_us >= 0,
               "Batcher: max_queue_size and queue_timeout_us must not be negative");
  for (int i = 0; i < options_.instances; ++i) workers_.emplace_back([this] { work(); });
  expirer_ = std::thread([this] { expire(); });
}

Batcher::~Batcher() {
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    stop_ = true;
  }
  queue_changed_.notify_all();
  deadline_added_.notify_all();
  for (std::thread& t : workers_) t.join();
  expirer_.join();
}

std::future<BatchResult> Batcher::submit(std::vector<Tensor> inputs, int64_t timeout_us) {
  DTRAIN_CHECK(!inputs.empty() && inputs[0].ndim() >= 1, "Batcher::submit: no inputs");
  Job job;
  job.rows = inputs[0].dim(0);
  DTRAIN_CHECK(job.rows >= 1 && job.rows <= options_.max_batch, "a batch of ", job.rows,
               " rows is over the maximum batch size ", options_.max_batch);
  job.inputs = std::move(inputs);
  job.enqueued = Clock::now();
  int64_t timeout = options_.queue_timeout_us;
  if (timeout_us > 0 && (timeout == 0 || timeout_us < timeout)) timeout = timeout_us;
  if (timeout > 0) job.deadline = job.enqueued + std::chrono::microseconds(timeout);
  const bool has_deadline = timeout > 0;
  std::future<BatchResult> result = job.done.get_future();
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    DTRAIN_CHECK(!stop_, "the model version is shutting down");
    if (options_.max_queue_size > 0 && static_cast<int64_t>(queue_.size()) >= options_.max_queue_size)
      throw QueueFull("the queue is full: " + std::to_string(queue_.size()) +
                      " requests are waiting (--max-queue-size); retry later");
    queued_rows_ += job.rows;
    queue_.push_back(std::move(job));
  }
  queue_changed_.notify_all();
  if (has_deadline) deadline_added_.notify_one();
  return result;
}

int64_t Batcher::queue_depth() const {
  std::lock_guard<std::mutex> lock(queue_mutex_);
  return static_cast<int64_t>(queue_.size());
}

void Batcher::work() {
  const ThreadStream stream(options_.device);
  const auto delay = std::chrono::microseconds(options_.max_queue_delay_us);
  for (;;) {
    std::vector<Job> jobs;
    {
      std::unique_lock<std::mutex> lock(queue_mutex_);
      queue_changed_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping with nothing left
      // The delay policy waits for the batch to fill, up to the oldest request's delay (not when
      // stopping); the eager one takes what is queued now.
      while (options_.policy == BatchPolicy::delay && !stop_ && !queue_.empty() && queued_rows_ < options_.max_batch &&
             Clock::now() < queue_.front().enqueued + delay)
        queue_changed_.wait_until(lock, queue_.front().enqueued + delay);
      if (queue_.empty()) continue;  // another worker took them
      int64_t rows = 0;
      while (!queue_.empty() && rows + queue_.front().rows <= options_.max_batch) {
        rows += queue_.front().rows;
        queued_rows_ -= queue_.front().rows;
        jobs.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    queue_changed_.notify_all();
    run_batch(jobs);
  }
}

void Batcher::expire() {
  std::unique_lock<std::mutex> lock(queue_mutex_);
  while (!stop_) {
    Clock::time_point next = Clock::time_point::max();
    for (const Job& j : queue_) next = std::min(next, j.deadline);
    if (next == Clock::time_point::max())
      deadline_added_.wait(lock);
    else
      deadline_added_.wait_until(lock, next);
    const Clock::time_point now = Clock::now();
    std::vector<Job> expired;
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (it->deadline > now) {
        ++it;
        continue;
      }
      queued_rows_ -= it->rows;
      expired.push_back(std::move(*it));
      it = queue_.erase(it);
    }
    if (expired.empty()) continue;
    lock.unlock();
    queue_changed_.notify_all();  // a delay-policy worker may be waiting on the front job
    for (Job& j : expired) {
      BatchResult r;
      r.timed_out = true;
      r.queue_s = std::chrono::duration<double>(now - j.enqueued).count();
      r.error = "the request waited " + std::to_string(static_cast<int64_t>(r.queue_s * 1e6)) +
                " us in the queue, over its timeout: every engine worker stayed busy";
      j.done.set_value(std::move(r));
    }
    lock.lock();
  }
}

void Batcher::run_batch(std::vector<Job>& jobs) {
  const auto start = Clock::now();
  int64_t rows = 0;
  for (const Job& j : jobs) rows += j.rows;
  std::vector<Tensor> outputs;
  std::string error;
  try {
    std::vector<std::vector<Tensor>> parts;
    for (const Job& j : jobs) parts.push_back(j.inputs);
    outputs = run_(jobs.size() == 1 ? jobs[0].inputs : concat_rows(parts));
    for (Tensor& t : outputs) {
      if (!t.device().is_cpu()) t = t.to(Device::cpu());
      DTRAIN_CHECK(t.ndim() >= 1 && t.dim(0) == rows, "the model returned an output of shape ", t.shape().str(),
                   " for a batch of ", rows, " rows");
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  const double compute_s = std::chrono::duration<double>(Clock::now() - start).count();
  if (on_batch_) on_batch_(rows, compute_s);
  int64_t first = 0;
  for (Job& j : jobs) {
    BatchResult r;
    r.error = error;
    r.queue_s = std::chrono::duration<double>(start - j.enqueued).count();
    r.compute_s = compute_s;
    r.batch_rows = rows;
    if (error.empty())
      for (const Tensor& t : outputs) r.outputs.push_back(t.slice(first, first + j.rows));
    first += j.rows;
    j.done.set_value(std::move(r));
  }
}

}  // namespace dtrain::serve
