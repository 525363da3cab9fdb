#include "core/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"

namespace dtrain {

int64_t sample_token(std::span<const float> logits, const SamplingOptions& options, Generator& gen) {
  DTRAIN_CHECK(!logits.empty(), "sample_token: no logits");
  DTRAIN_CHECK(options.temperature >= 0 && options.top_k >= 0, "sample_token: temperature ", options.temperature,
               " and top_k ", options.top_k, " must be >= 0");
  const int64_t vocab = static_cast<int64_t>(logits.size());
  if (options.temperature == 0.0f) return std::distance(logits.begin(), std::max_element(logits.begin(), logits.end()));
  // The candidates: every id, or the top_k largest logits (ties broken by the smaller id).
  std::vector<int64_t> ids(static_cast<size_t>(vocab));
  std::iota(ids.begin(), ids.end(), 0);
  const int64_t k = options.top_k > 0 ? std::min(options.top_k, vocab) : vocab;
  const auto larger = [&](int64_t a, int64_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  if (k < vocab) std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), larger);
  ids.resize(static_cast<size_t>(k));
  // softmax(logits / T) over the candidates, in double, the maximum subtracted.
  float max = logits[ids[0]];
  for (int64_t id : ids) max = std::max(max, logits[id]);
  std::vector<double> weights(ids.size());
  double total = 0;
  for (size_t i = 0; i < ids.size(); ++i)
    total += weights[i] = std::exp((static_cast<double>(logits[ids[i]]) - max) / options.temperature);
  double u = static_cast<double>(gen.uniform()) * total;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (u < weights[i]) return ids[i];
    u -= weights[i];
  }
  return ids.back();
}

}  // namespace dtrain
