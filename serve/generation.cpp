#include "serve/generation.h"

#include <algorithm>
#include <map>

#include "core/error.h"
#include "core/log.h"
#include "serve/thread_stream.h"

namespace dtrain::serve {

GenerationStream::Event GenerationStream::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [this] { return !tokens_.empty() || done_; });
  Event e;
  e.tokens.swap(tokens_);
  e.done = done_;
  e.finish_reason = reason_;
  e.error = error_;
  return e;
}

void GenerationStream::cancel() {
  std::lock_guard<std::mutex> lock(mutex_);
  cancelled_ = true;
}

bool GenerationStream::cancelled() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cancelled_;
}

void GenerationStream::push(int64_t token) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    tokens_.push_back(token);
  }
  changed_.notify_all();
}

void GenerationStream::finish(const std::string& reason, const std::string& error) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (done_) return;
    done_ = true;
    reason_ = reason;
    error_ = error;
  }
  changed_.notify_all();
}

GenerationScheduler::GenerationScheduler(std::shared_ptr<const LanguageModel> model, GenerationOptions options,
                                         GenerationObserver observer)
    : model_(std::move(model)), options_(options), observer_(std::move(observer)) {
  DTRAIN_CHECK(options_.max_active >= 1, "GenerationScheduler: max_active must be at least 1");
  if (model_->has_cache()) cache_.emplace(model_->spec());
  thread_ = std::thread([this] { run(); });
}

GenerationScheduler::~GenerationScheduler() {
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    stop_ = true;
  }
  queue_changed_.notify_all();
  thread_.join();
}

std::shared_ptr<GenerationStream> GenerationScheduler::submit(std::vector<int64_t> prompt, int64_t max_tokens,
                                                              const SamplingOptions& sampling, uint64_t seed) {
  DTRAIN_CHECK(!prompt.empty(), "a generation needs at least one prompt token");
  auto s = std::make_unique<Sequence>();
  s->stream = std::make_shared<GenerationStream>();
  s->max_tokens = max_tokens;
  s->sampling = sampling;
  s->rng = Generator(RngKey{seed, 0, static_cast<uint32_t>(RngPurpose::generate)});
  s->submitted = Clock::now();
  const auto ctx = static_cast<size_t>(model_->spec().ctx);
  const size_t keep = std::min(prompt.size(), ctx);
  s->tokens.assign(prompt.end() - static_cast<std::ptrdiff_t>(keep), prompt.end());
  std::shared_ptr<GenerationStream> stream = s->stream;
  if (max_tokens <= 0) {
    stream->finish("length");
    return stream;
  }
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    if (stop_) {
      stream->finish("cancelled", "the model version is being unloaded");
      return stream;
    }
    pending_.push_back(std::move(s));
  }
  queue_changed_.notify_all();
  return stream;
}

int64_t GenerationScheduler::queued() const {
  std::lock_guard<std::mutex> lock(queue_mutex_);
  return static_cast<int64_t>(pending_.size());
}

void GenerationScheduler::run() {
  const ThreadStream stream(options_.device);
  while (wait_for_work()) {
    retire();
    admit();
    retire();  // a prefill may have ended a sequence (max_tokens 1, a full cache)
    step();
  }
  std::lock_guard<std::mutex> lock(queue_mutex_);
  for (auto& s : pending_) s->stream->finish("cancelled", "the model version was unloaded");
  for (auto& s : active_) s->stream->finish("cancelled", "the model version was unloaded");
  pending_.clear();
  active_.clear();
  active_count_ = 0;
}

// Waits while nothing is queued or active; false when stopping.
bool GenerationScheduler::wait_for_work() {
  std::unique_lock<std::mutex> lock(queue_mutex_);
  queue_changed_.wait(lock, [this] { return stop_ || !pending_.empty() || !active_.empty(); });
  return !stop_;
}

// Queued sequences up to max_active become active; with the cache, each is prefilled (equal prompt
// lengths in one batch, so no padding), takes a slot of the cache and its first token.
void GenerationScheduler::admit() {
  std::vector<std::unique_ptr<Sequence>> admitted;
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    while (!pending_.empty() && static_cast<int64_t>(active_.size() + admitted.size()) < options_.max_active) {
      admitted.push_back(std::move(pending_.front()));
      pending_.pop_front();
    }
  }
  if (!cache_) {
    for (auto& s : admitted) active_.push_back(std::move(s));
  } else {
    std::map<size_t, std::vector<std::unique_ptr<Sequence>>> by_length;
    for (auto& s : admitted) {
      if (s->stream->cancelled())
        s->stream->finish("cancelled");
      else
        by_length[s->tokens.size()].push_back(std::move(s));
    }
    for (auto& [length, group] : by_length) prefill(group);
  }
  active_count_ = static_cast<int64_t>(active_.size());
}

// The group's prompts over an empty cache; each sequence that gets through joins active_ with the
// cache's new slot.
void GenerationScheduler::prefill(std::vector<std::unique_ptr<Sequence>>& group) {
  const auto start = Clock::now();
  Batch batch;
  std::vector<std::vector<int64_t>> tokens;
  for (auto& s : group) {
    batch.push_back(s.get());
    tokens.push_back(s->tokens);
  }
  try {
    const CachedStepResult r = model_->run_cached(build_prefill(model_->spec(), tokens));
    const auto fed = static_cast<int64_t>(tokens[0].size());
    for (size_t b = 0; b < group.size(); ++b) {
      cache_->add(r, static_cast<int64_t>(b), fed);
      active_.push_back(std::move(group[b]));
      take_token(*active_.back(), logits_at(r.logits, static_cast<int64_t>(b), fed - 1));
    }
  } catch (const std::exception& e) {
    fail_batch(batch, e);
  }
  if (observer_.prefill)
    observer_.prefill(static_cast<int64_t>(batch.size()), std::chrono::duration<double>(Clock::now() - start).count());
}

// One token for every active sequence, in one engine run (with the cache every slot takes part; one
// cancelled since the last retire() is decoded once more and its token dropped).
void GenerationScheduler::step() {
  Batch batch;
  for (auto& s : active_)
    if (!s->done && !s->stream->cancelled()) batch.push_back(s.get());
  if (batch.empty()) return;
  const auto start = Clock::now();
  try {
    if (cache_)
      step_cached();
    else
      step_recompute(batch);
  } catch (const std::exception& e) {
    fail_batch(batch, e);
  }
  if (observer_.step)
    observer_.step(static_cast<int64_t>(cache_ ? active_.size() : batch.size()),
                   std::chrono::duration<double>(Clock::now() - start).count());
}

void GenerationScheduler::step_cached() {
  std::vector<int64_t> tokens;
  for (auto& s : active_) tokens.push_back(s->tokens.back());
  const CachedStepResult r = model_->run_cached(cache_->step_inputs(tokens));
  cache_->take_step(r);
  for (size_t b = 0; b < active_.size(); ++b)
    if (!active_[b]->done && !active_[b]->stream->cancelled())
      take_token(*active_[b], logits_at(r.logits, static_cast<int64_t>(b), 0));
}

void GenerationScheduler::step_recompute(const Batch& batch) {
  const auto ctx = static_cast<size_t>(model_->spec().ctx);
  std::vector<std::span<const int64_t>> contexts;
  for (Sequence* s : batch) {
    const size_t keep = std::min(s->tokens.size(), ctx);
    contexts.emplace_back(s->tokens.data() + s->tokens.size() - keep, keep);
  }
  const Tensor logits = model_->run_full(build_context_batch(contexts));
  for (size_t b = 0; b < batch.size(); ++b)
    take_token(*batch[b], logits_at(logits, static_cast<int64_t>(b), static_cast<int64_t>(contexts[b].size()) - 1));
}

// Samples the sequence's next token from `logits`, hands it out, and ends the sequence when it
// has max_tokens or its cache is full.
void GenerationScheduler::take_token(Sequence& s, std::span<const float> logits) {
  const int64_t token = sample_token(logits, s.sampling, s.rng);
  s.tokens.push_back(token);
  ++s.generated;
  s.stream->push(token);
  if (observer_.generated) observer_.generated(1);
  if (s.generated == 1 && observer_.first_token)
    observer_.first_token(std::chrono::duration<double>(Clock::now() - s.submitted).count());
  // With the cache it holds every token but the newest.
  const bool cache_full = cache_ && static_cast<int64_t>(s.tokens.size()) - 1 >= model_->spec().ctx;
  if (s.generated >= s.max_tokens || cache_full) {
    s.done = true;
    s.stream->finish("length");
  }
}

void GenerationScheduler::fail_batch(const Batch& batch, const std::exception& e) {
  log_error("generation failed for {} sequence(s): {}", batch.size(), e.what());
  for (Sequence* s : batch) {
    s->done = true;
    s->stream->finish("error", e.what());
  }
}

// Drops finished and cancelled sequences (a cancelled one's stream ends with "cancelled"); the
// last active sequence takes a dropped one's place, as its cache slot does.
void GenerationScheduler::retire() {
  for (size_t i = 0; i < active_.size();) {
    Sequence& s = *active_[i];
    if (!s.done && s.stream->cancelled()) s.stream->finish("cancelled");
    if (!s.done && !s.stream->cancelled()) {
      ++i;
      continue;
    }
    if (cache_) cache_->remove(static_cast<int64_t>(i));
    if (i + 1 < active_.size()) active_[i] = std::move(active_.back());
    active_.pop_back();
  }
  active_count_ = static_cast<int64_t>(active_.size());
}

}  // namespace dtrain::serve
