#pragma once
// Choosing a language model's next token from its logits over the vocabulary: greedy
// (temperature 0: the first largest logit) or sampled from softmax(logits / temperature) over the
// top_k largest (0: all), with a caller's generator (RngPurpose::generate) so a seed repeats a text.
#include <cstdint>
#include <span>

#include "core/rng.h"

namespace dtrain {

struct SamplingOptions {
  float temperature = 1.0f;  // 0: greedy; must be >= 0
  int64_t top_k = 0;         // 0: the whole vocabulary; must be >= 0
};

// The token id (an index into logits). Throws when logits is empty or the options are negative.
int64_t sample_token(std::span<const float> logits, const SamplingOptions& options, Generator& gen);

}  // namespace dtrain
