#include "serve/decode_batch.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace dtrain::serve {

namespace {

// Copies position `from` of slot/row `row` of a [rows, heads, positions, hd] tensor (any strides
// with contiguous rows of hd) to position `to` of slot `slot` of a cache buffer.
void copy_position(const Tensor& src, int64_t row, int64_t from, Tensor& buffer, int64_t slot, int64_t to) {
  const Shape& ss = src.strides();
  const Shape& bs = buffer.strides();
  const int64_t heads = buffer.dim(1), hd = buffer.dim(3);
  const float* s = src.data<float>() + row * ss[0] + from * ss[2];
  float* d = buffer.data<float>() + slot * bs[0] + to * bs[2];
  if (s == d) return;
  for (int64_t h = 0; h < heads; ++h) std::copy_n(s + h * ss[1], hd, d + h * bs[1]);
}

}  // namespace

DecodeCache::DecodeCache(const LanguageModelSpec& spec, int64_t small_bytes) : spec_(spec), small_bytes_(small_bytes) {}

bool DecodeCache::small(int64_t slots) const {
  const int64_t per_slot =
      2 * spec_.n_layer * spec_.n_head * spec_.ctx * spec_.head_dim() * static_cast<int64_t>(sizeof(float));
  return slots * per_slot <= small_bytes_;
}

// Room for `slots` sequences of `positions` positions (ctx while small()): each dimension grows by
// doubling, the slots' positions moving over. Zeroed, so masked positions hold finite values and
// the masked scores stay finite.
void DecodeCache::reserve(int64_t slots, int64_t positions) {
  if (slots <= capacity_ && positions <= room_) return;
  const int64_t capacity = slots <= capacity_ ? capacity_ : std::max(slots, 2 * capacity_);
  const int64_t room = small(capacity)      ? spec_.ctx
                       : positions <= room_ ? room_
                                            : std::min(spec_.ctx, std::max(positions, 2 * room_));
  const int64_t h = spec_.n_head, hd = spec_.head_dim();
  for (std::vector<Tensor>* buffers : {&keys_, &values_}) {
    buffers->resize(static_cast<size_t>(spec_.n_layer));
    for (Tensor& b : *buffers) {
      Tensor grown = Tensor::zeros(Shape{capacity, h, room, hd});
      for (int64_t s = 0; b.defined() && s < size(); ++s)
        for (int64_t i = 0; i < h; ++i)
          std::copy_n(b.data<float>() + (s * h + i) * room_ * hd, lengths_[s] * hd,
                      grown.data<float>() + (s * h + i) * room * hd);
      b = std::move(grown);
    }
  }
  capacity_ = capacity;
  room_ = room;
}

int64_t DecodeCache::longest() const {
  int64_t p = 0;
  for (int64_t l : lengths_) p = std::max(p, l);
  return p;
}

void DecodeCache::add(const CachedStepResult& prefill, int64_t row, int64_t positions) {
  DTRAIN_CHECK(positions >= 1 && positions <= spec_.ctx, "a prefill of ", positions,
               " positions does not fit a cache of ctx ", spec_.ctx);
  const int64_t slot = size();
  reserve(slot + 1, positions);
  for (int64_t l = 0; l < spec_.n_layer; ++l)
    for (bool k : {true, false}) {
      const Tensor& present = (k ? prefill.present_keys : prefill.present_values).at(static_cast<size_t>(l));
      DTRAIN_CHECK(present.ndim() == 4 && present.dim(0) > row && present.dim(1) == spec_.n_head &&
                       present.dim(2) == positions && present.dim(3) == spec_.head_dim(),
                   "model_with_past 'present.", l, k ? ".key" : ".value", "' has shape ", present.shape().str(),
                   ", which cannot hold row ", row, " with ", positions, " positions");
      for (int64_t p = 0; p < positions; ++p) copy_position(present, row, p, (k ? keys_ : values_)[l], slot, p);
    }
  lengths_.push_back(positions);
}

void DecodeCache::remove(int64_t slot) {
  const int64_t last = size() - 1;
  DTRAIN_CHECK(slot >= 0 && slot <= last, "DecodeCache::remove: no slot ", slot, " of ", size());
  if (slot != last) {
    const int64_t block = spec_.n_head * room_ * spec_.head_dim();  // one slot of one buffer
    for (std::vector<Tensor>* buffers : {&keys_, &values_})
      for (Tensor& b : *buffers) std::copy_n(b.data<float>() + last * block, block, b.data<float>() + slot * block);
    lengths_[static_cast<size_t>(slot)] = lengths_.back();
  }
  lengths_.pop_back();
  if (lengths_.empty() && !small(capacity_)) {  // idle: give the memory back
    keys_.clear();
    values_.clear();
    capacity_ = room_ = 0;
  }
}

CachedStep DecodeCache::step_inputs(const std::vector<int64_t>& tokens) {
  const int64_t rows = size(), past = longest(), h = spec_.n_head, hd = spec_.head_dim();
  DTRAIN_CHECK(static_cast<int64_t>(tokens.size()) == rows && rows >= 1, "a decoding step feeds one token for each of ",
               rows, " cached sequences, got ", tokens.size());
  DTRAIN_CHECK(past < spec_.ctx, "a decoding step over ", past, " cached positions leaves no room in ctx ", spec_.ctx);
  reserve(rows, past + 1);  // the room the engine writes the new position into
  CachedStep step;
  step.input_ids = Tensor::from_vector(tokens, Shape{rows, 1});
  step.position_ids = Tensor::from_vector(lengths_, Shape{rows, 1});
  step.attention_mask = Tensor::empty(Shape{rows, past + 1}, DType::i64);
  auto* mask = step.attention_mask.data<int64_t>();
  for (int64_t b = 0; b < rows; ++b)
    for (int64_t p = 0; p <= past; ++p) mask[b * (past + 1) + p] = p < lengths_[b] || p == past ? 1 : 0;
  const Shape view{rows, h, past, hd}, strides{h * room_ * hd, room_ * hd, hd, 1};
  for (int64_t l = 0; l < spec_.n_layer; ++l) {
    step.past_keys.push_back(keys_[l].as_strided(view, strides, 0));
    step.past_values.push_back(values_[l].as_strided(view, strides, 0));
  }
  return step;
}

void DecodeCache::take_step(const CachedStepResult& result) {
  const int64_t past = longest();
  for (int64_t l = 0; l < spec_.n_layer; ++l)
    for (bool k : {true, false}) {
      const Tensor& present = (k ? result.present_keys : result.present_values).at(static_cast<size_t>(l));
      DTRAIN_CHECK(present.ndim() == 4 && present.dim(0) == size() && present.dim(1) == spec_.n_head &&
                       present.dim(2) == past + 1 && present.dim(3) == spec_.head_dim() && present.strides()[3] == 1,
                   "model_with_past 'present.", l, k ? ".key" : ".value", "' has shape ", present.shape().str(),
                   ", a step over ", size(), " caches of up to ", past, " positions makes ", past + 1);
      for (int64_t b = 0; b < size(); ++b) copy_position(present, b, past, (k ? keys_ : values_)[l], b, lengths_[b]);
    }
  for (int64_t& l : lengths_) ++l;
}

CachedStep build_prefill(const LanguageModelSpec& spec, const std::vector<std::vector<int64_t>>& tokens) {
  const auto rows = static_cast<int64_t>(tokens.size());
  const auto fed = static_cast<int64_t>(tokens.at(0).size());
  CachedStep step;
  step.input_ids = Tensor::empty(Shape{rows, fed}, DType::i64);
  step.position_ids = Tensor::empty(Shape{rows, fed}, DType::i64);
  step.attention_mask = Tensor::empty(Shape{rows, fed}, DType::i64);
  auto* ids = step.input_ids.data<int64_t>();
  auto* positions = step.position_ids.data<int64_t>();
  auto* mask = step.attention_mask.data<int64_t>();
  for (int64_t b = 0; b < rows; ++b) {
    DTRAIN_CHECK(static_cast<int64_t>(tokens[b].size()) == fed,
                 "every row of a prefill feeds the same number of tokens");
    for (int64_t s = 0; s < fed; ++s) {
      ids[b * fed + s] = tokens[b][s];
      positions[b * fed + s] = s;
      mask[b * fed + s] = 1;
    }
  }
  for (int64_t l = 0; l < spec.n_layer; ++l) {
    step.past_keys.push_back(Tensor::zeros(Shape{rows, spec.n_head, 0, spec.head_dim()}));
    step.past_values.push_back(Tensor::zeros(Shape{rows, spec.n_head, 0, spec.head_dim()}));
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
