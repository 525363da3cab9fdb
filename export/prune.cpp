#include "export/prune.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace dtrain {

namespace {

void collect_weights(const Module& m, std::vector<Parameter*>& out) {
  if (auto* s = dynamic_cast<const Sequential*>(&m)) {
    for (const auto& child : s->children()) collect_weights(*child, out);
  } else if (auto* l = dynamic_cast<const Linear*>(&m)) {
    out.push_back(l->weight());
  } else if (auto* c = dynamic_cast<const Conv2d*>(&m)) {
    out.push_back(c->weight());
  }
}

std::vector<Parameter*> prunable_weights(Model& model) {
  std::vector<Parameter*> ws;
  collect_weights(model.net(), ws);
  for (const Parameter* p : ws)
    DTRAIN_CHECK(p != nullptr && p->value.defined(), "pruning: the model's parameters are not built yet");
  return ws;
}

}  // namespace

Sparsity weight_sparsity(Model& model) {
  Sparsity s;
  for (Parameter* p : prunable_weights(model)) {
    const std::vector<float> v = p->value.to_vector<float>();
    s.weights += static_cast<int64_t>(v.size());
    s.zeros += std::count(v.begin(), v.end(), 0.0f);
  }
  return s;
}

Sparsity prune_global_magnitude(Model& model, double fraction) {
  DTRAIN_CHECK(fraction >= 0.0 && fraction < 1.0, "--prune: fraction must be in [0, 1), got ", fraction);
  const std::vector<Parameter*> ws = prunable_weights(model);
  std::vector<std::vector<float>> values;
  std::vector<float> magnitudes;
  for (Parameter* p : ws) {
    values.push_back(p->value.to_vector<float>());
    for (float x : values.back()) magnitudes.push_back(std::fabs(x));
  }
  const auto total = static_cast<int64_t>(magnitudes.size());
  int64_t to_zero = std::llround(fraction * static_cast<double>(total));
  if (to_zero > 0) {
    // Everything below the k-th smallest magnitude goes, then ties at it in order until k are gone.
    std::nth_element(magnitudes.begin(), magnitudes.begin() + (to_zero - 1), magnitudes.end());
    const float threshold = magnitudes[static_cast<size_t>(to_zero - 1)];
    for (auto& v : values)
      for (float& x : v)
        if (std::fabs(x) < threshold) {
          x = 0.0f;
          --to_zero;
        }
    for (auto& v : values)
      for (float& x : v)
        if (to_zero > 0 && std::fabs(x) == threshold) {
          x = 0.0f;
          --to_zero;
        }
    for (size_t i = 0; i < ws.size(); ++i) ws[i]->value.copy_from(Tensor::from_vector(values[i], ws[i]->value.shape()));
  }
  return weight_sparsity(model);
}

}  // namespace dtrain
