#pragma once
// Global magnitude pruning of a model's weight matrices (Linear and Conv2d weights; biases,
// LayerNorm and Embedding parameters are left alone).
#include <cstdint>

#include "core/model.h"

namespace dtrain {

struct Sparsity {
  int64_t weights = 0;  // entries in the prunable weights
  int64_t zeros = 0;    // of which are exactly zero
  double fraction() const { return weights ? static_cast<double>(zeros) / static_cast<double>(weights) : 0.0; }
};

// Zeroes the round(fraction * weights) entries of smallest magnitude, ranked over all prunable
// weights of the model together (one global threshold). fraction in [0, 1). Returns the sparsity
// afterwards (at least `fraction`; more when weights were already zero).
Sparsity prune_global_magnitude(Model& model, double fraction);
// The sparsity of the same weights, without changing them.
Sparsity weight_sparsity(Model& model);

}  // namespace dtrain
