#pragma once
// The batches a decoding step runs: sequences of different lengths share one engine run.
// With the key/value cache every sequence's cache is a slot of DecodeCache's buffers and a step
// masks each slot's positions past its own length (attention_mask 0; one new token per step, so
// causality needs no more), with position_ids from each slot's own length; without it, a step
// recomputes every context, right-padded (causal attention never looks right, so a row's logits at
// its last real position do not see the padding).
#include <cstdint>
#include <span>
#include <vector>

#include "serve/language_model.h"

namespace dtrain::serve {

// The key/value caches of the sequences being decoded, in one buffer per layer for keys and one
// for values, [slots, heads, room, head_dim] on the host: slot i holds its sequence's positions
// [0, length(i)). While buffers with room for ctx positions would take at most `small_bytes` in
// all, room is ctx and the buffers stay when idle (growing them costs fresh pages on every step
// that grows them); above that, room follows the longest sequence (its positions plus one,
// rounded up by doubling, at most ctx) and the buffers are released when no sequence is left. A decoding step feeds
// views of the first P positions of every slot (P the longest length; the mask hides each slot's positions past its own
// length) that the engine grows in place (OnnxModel::RunOptions), so a step writes one new position per slot instead of
// copying the caches. Every slot takes part in every step; slots are 0..size()-1 and removing one moves the last into
// it.
class DecodeCache {
 public:
  static constexpr int64_t kSmallBytes = int64_t{64} << 20;
  explicit DecodeCache(const LanguageModelSpec& spec, int64_t small_bytes = kSmallBytes);
  int64_t size() const { return static_cast<int64_t>(lengths_.size()); }
  int64_t length(int64_t slot) const { return lengths_.at(static_cast<size_t>(slot)); }
  // A new last slot holding row `row`'s `positions` positions of a prefill's presents (a step over
  // an empty cache, so the row has no padding).
  void add(const CachedStepResult& prefill, int64_t row, int64_t positions);
  // Drops slot `slot`; the last slot moves into its place.
  void remove(int64_t slot);
  // One decoding step's inputs: slot i feeds tokens[i] at position length(i).
  CachedStep step_inputs(const std::vector<int64_t>& tokens);
  // The step's new position of each slot (at P in the presents, wherever they live) goes to
  // length(i), which grows by one.
  void take_step(const CachedStepResult& result);
  // The buffer of layer `layer`'s keys (or values), [capacity, heads, room, head_dim].
  const Tensor& buffer(int64_t layer, bool keys) const { return (keys ? keys_ : values_).at(layer); }

 private:
  void reserve(int64_t slots, int64_t positions);
  bool small(int64_t slots) const;  // buffers of `slots` slots with room for ctx fit small_bytes_
  int64_t longest() const;

  LanguageModelSpec spec_;
  int64_t small_bytes_;
  int64_t capacity_ = 0, room_ = 0;  // slots and positions the buffers hold
  std::vector<int64_t> lengths_;
  std::vector<Tensor> keys_, values_;  // per layer
};

// The inputs of a prefill: row i feeds tokens[i] (the same count S for every row) over an empty
// cache, at positions 0..S-1.
CachedStep build_prefill(const LanguageModelSpec& spec, const std::vector<std::vector<int64_t>>& tokens);

// input_ids [B, longest] for model.onnx: each context from position 0, right-padded with token 0.
Tensor build_context_batch(const std::vector<std::span<const int64_t>>& contexts);

// Row `row`, position `position` of logits [B, T, vocab].
std::span<const float> logits_at(const Tensor& logits, int64_t row, int64_t position);

}  // namespace dtrain::serve
