#pragma once
// Continuous batching for one language model version. A scheduler thread holds the active
// sequences, each with its own random stream (core/sampling.h, as `dtrain generate` samples: the
// same seed and logits give the same tokens) and, with model_with_past.onnx, its own key/value
// cache.
// Each iteration drops finished and cancelled sequences, admits queued ones up to max_active (with
// the cache, a prefill: prompts of equal length together), then runs one decoding step for every
// active sequence as one batch, samples a token for each and hands it to the sequence's stream.
// The caches live in one DecodeCache (serve/decode_batch.h) that a step grows in place.
// Without model_with_past.onnx every step recomputes each context with model.onnx.
//
// Context limit: a prompt keeps its last ctx tokens. With the cache a sequence ends with "length"
// once its cache holds ctx positions; recomputing, the context slides (the last ctx tokens).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/rng.h"
#include "core/sampling.h"
#include "core/types.h"
#include "serve/decode_batch.h"
#include "serve/language_model.h"

namespace dtrain::serve {

// One request's tokens as they are generated, then its end. The scheduler pushes, the HTTP
// thread reads; either side may end it (finish, cancel).
class GenerationStream {
 public:
  struct Event {
    std::vector<int64_t> tokens;  // tokens generated since the previous call
    bool done = false;            // no more tokens will come
    std::string finish_reason;    // when done: "length" or "cancelled"
    std::string error;            // when done: why the engine failed, if it did
  };
  // Blocks until there are new tokens or the generation ended.
  Event next();
  // The client is gone: the scheduler drops the sequence at its next iteration.
  void cancel();
  bool cancelled() const;

  void push(int64_t token);
  void finish(const std::string& reason, const std::string& error = {});

 private:
  mutable std::mutex mutex_;  // guards everything below
  std::condition_variable changed_;
  std::vector<int64_t> tokens_;
  bool done_ = false, cancelled_ = false;
  std::string reason_, error_;
};

struct GenerationOptions {
  int64_t max_active = 64;        // sequences decoded together at most; more wait in the queue
  Device device = Device::cpu();  // the model's: on a CUDA device the scheduler runs on its own stream
};

// Called on the scheduler thread (each may be empty).
struct GenerationObserver {
  std::function<void(int64_t rows, double seconds)> prefill;  // one prefill batch
  std::function<void(int64_t rows, double seconds)> step;     // one decoding step (engine + sampling)
  std::function<void(double seconds)> first_token;            // submit to a request's first token
  std::function<void(int64_t tokens)> generated;              // tokens handed out
};

class GenerationScheduler {
 public:
  GenerationScheduler(std::shared_ptr<const LanguageModel> model, GenerationOptions options,
                      GenerationObserver observer = {});
  ~GenerationScheduler();  // ends what is queued or active with an error, then joins the thread
  GenerationScheduler(const GenerationScheduler&) = delete;
  GenerationScheduler& operator=(const GenerationScheduler&) = delete;

  // `prompt`: tokens (at least one); max_tokens 0 ends at once with "length". Tokens are drawn
  // from the stream RngKey{seed, 0, RngPurpose::generate}.
  std::shared_ptr<GenerationStream> submit(std::vector<int64_t> prompt, int64_t max_tokens,
                                           const SamplingOptions& sampling, uint64_t seed);
  int64_t queued() const;
  int64_t active() const { return active_count_; }
  bool uses_cache() const { return model_->has_cache(); }

 private:
  using Clock = std::chrono::steady_clock;
  struct Sequence {
    std::shared_ptr<GenerationStream> stream;
    std::vector<int64_t> tokens;  // the prompt's last ctx tokens, then the generated ones
    int64_t max_tokens = 0, generated = 0;
    SamplingOptions sampling;
    Generator rng;
    Clock::time_point submitted;
    bool done = false;
  };
  using Batch = std::vector<Sequence*>;

  void run();
  bool wait_for_work();
  void admit();
  void prefill(std::vector<std::unique_ptr<Sequence>>& group);
  void step();
  void step_cached();
  void step_recompute(const Batch& batch);
  void take_token(Sequence& s, std::span<const float> logits);
  void fail_batch(const Batch& batch, const std::exception& e);
  void retire();

  std::shared_ptr<const LanguageModel> model_;
  GenerationOptions options_;
  GenerationObserver observer_;
  mutable std::mutex queue_mutex_;  // guards pending_, stop_
  std::condition_variable queue_changed_;
  std::deque<std::unique_ptr<Sequence>> pending_;
  bool stop_ = false;
  // The scheduler thread's own. With the cache, active_[i]'s keys and values are cache_'s slot i.
  std::vector<std::unique_ptr<Sequence>> active_;
  std::optional<DecodeCache> cache_;
  std::atomic<int64_t> active_count_{0};
  std::thread thread_;
};

}  // namespace dtrain::serve
