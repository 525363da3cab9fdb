#include "serve/decode_batch.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace dtrain::serve {

SequenceCache::SequenceCache(const LanguageModelSpec& spec)
    : heads_(spec.n_head),
      head_dim_(spec.head_dim()),
      keys_(static_cast<size_t>(spec.n_layer)),
      values_(static_cast<size_t>(spec.n_layer)) {}

void SequenceCache::take_presents(const CachedStepResult& result, int64_t row, int64_t new_tokens) {
  const int64_t length = length_ + new_tokens;
  for (size_t l = 0; l < keys_.size(); ++l) {
    for (bool keys : {true, false}) {
      const Tensor& present = keys ? result.present_keys.at(l) : result.present_values.at(l);
      const int64_t total = present.dim(2);
      DTRAIN_CHECK(present.dim(0) > row && present.dim(1) == heads_ && present.dim(3) == head_dim_ && total >= length,
                   "model_with_past 'present.", l, keys ? ".key" : ".value", "' has shape ", present.shape().str(),
                   ", which cannot hold row ", row, " with ", length, " positions");
      std::vector<float> cache(static_cast<size_t>(heads_ * length * head_dim_));
      const float* src = present.data<float>();
      for (int64_t h = 0; h < heads_; ++h) {
        const float* from = src + ((row * heads_ + h) * total + (total - length)) * head_dim_;
        std::copy(from, from + length * head_dim_, cache.begin() + h * length * head_dim_);
      }
      (keys ? keys_ : values_)[l] = std::move(cache);
    }
  }
  length_ = length;
}

void SequenceCache::copy_into(float* past, int64_t row, int64_t past_length, int64_t layer, bool keys) const {
  const std::vector<float>& cache = (keys ? keys_ : values_)[static_cast<size_t>(layer)];
  for (int64_t h = 0; h < heads_; ++h) {
    float* to = past + ((row * heads_ + h) * past_length + (past_length - length_)) * head_dim_;
    std::copy_n(cache.begin() + h * length_ * head_dim_, length_ * head_dim_, to);
  }
}

CachedStep build_cached_step(const LanguageModelSpec& spec, const std::vector<const SequenceCache*>& caches,
                             const std::vector<std::vector<int64_t>>& tokens) {
  const auto rows = static_cast<int64_t>(caches.size());
  const auto fed = static_cast<int64_t>(tokens.at(0).size());
  int64_t past = 0;
  for (const SequenceCache* c : caches) past = std::max(past, c->length());
  CachedStep step;
  step.input_ids = Tensor::empty(Shape{rows, fed}, DType::i64);
  step.position_ids = Tensor::empty(Shape{rows, fed}, DType::i64);
  step.attention_mask = Tensor::empty(Shape{rows, past + fed}, DType::i64);
  auto* ids = step.input_ids.data<int64_t>();
  auto* positions = step.position_ids.data<int64_t>();
  auto* mask = step.attention_mask.data<int64_t>();
  for (int64_t b = 0; b < rows; ++b) {
    const int64_t length = caches[b]->length();
    DTRAIN_CHECK(static_cast<int64_t>(tokens[b].size()) == fed, "every row of a step feeds the same number of tokens");
    for (int64_t s = 0; s < fed; ++s) {
      ids[b * fed + s] = tokens[b][s];
      positions[b * fed + s] = length + s;
    }
    for (int64_t p = 0; p < past + fed; ++p) mask[b * (past + fed) + p] = p >= past - length ? 1 : 0;
  }
  const Shape cache_shape{rows, spec.n_head, past, spec.head_dim()};
  for (int64_t l = 0; l < spec.n_layer; ++l) {
    for (bool keys : {true, false}) {
      Tensor t = Tensor::zeros(cache_shape);
      for (int64_t b = 0; b < rows; ++b) caches[b]->copy_into(t.data<float>(), b, past, l, keys);
      (keys ? step.past_keys : step.past_values).push_back(std::move(t));
    }
  }
  return step;
}

Tensor build_context_batch(const std::vector<std::span<const int64_t>>& contexts) {
  size_t longest = 0;
  for (const auto& c : contexts) longest = std::max(longest, c.size());
  Tensor ids = Tensor::zeros(Shape{static_cast<int64_t>(contexts.size()), static_cast<int64_t>(longest)}, DType::i64);
  for (size_t b = 0; b < contexts.size(); ++b)
    std::copy(contexts[b].begin(), contexts[b].end(), ids.data<int64_t>() + b * longest);
  return ids;
}

std::span<const float> logits_at(const Tensor& logits, int64_t row, int64_t position) {
  DTRAIN_CHECK(logits.ndim() == 3 && row < logits.dim(0) && position < logits.dim(1), "logits of shape ",
               logits.shape().str(), " have no row ", row, " position ", position);
  const int64_t vocab = logits.dim(2);
  return {logits.data<float>() + (row * logits.dim(1) + position) * vocab, static_cast<size_t>(vocab)};
}

}  // namespace dtrain::serve
