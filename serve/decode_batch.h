#pragma once
// The batches a decoding step runs: sequences of different lengths share one engine run.
// With the key/value cache each sequence keeps its own cache, and a step left-pads the caches to
// the longest (attention_mask 0 over the padding, position_ids from each row's own length);
// without it, a step recomputes every context, right-padded (causal attention never looks right,
// so a row's logits at its last real position do not see the padding).
#include <cstdint>
#include <span>
#include <vector>

#include "serve/language_model.h"

namespace dtrain::serve {

// One sequence's key/value cache: per layer, keys and values [heads, length, head_dim] on the host.
class SequenceCache {
 public:
  explicit SequenceCache(const LanguageModelSpec& spec);
  int64_t length() const { return length_; }
  // Row `row` of a step's presents holds this cache (after the row's padding) then `new_tokens`
  // positions: they become the cache.
  void take_presents(const CachedStepResult& result, int64_t row, int64_t new_tokens);
  // Writes layer `layer`'s keys (or values) into row `row` of a [B, heads, P, hd] past, right-aligned.
  void copy_into(float* past, int64_t row, int64_t past_length, int64_t layer, bool keys) const;

 private:
  int64_t heads_, head_dim_, length_ = 0;
  std::vector<std::vector<float>> keys_, values_;  // per layer [heads, length, hd]
};

// The inputs of one model_with_past step: row i feeds tokens[i] (the same count S for every row)
// on top of caches[i], at positions caches[i]->length() onwards.
CachedStep build_cached_step(const LanguageModelSpec& spec, const std::vector<const SequenceCache*>& caches,
                             const std::vector<std::vector<int64_t>>& tokens);

// input_ids [B, longest] for model.onnx: each context from position 0, right-padded with token 0.
Tensor build_context_batch(const std::vector<std::span<const int64_t>>& contexts);

// Row `row`, position `position` of logits [B, T, vocab].
std::span<const float> logits_at(const Tensor& logits, int64_t row, int64_t position);

}  // namespace dtrain::serve
