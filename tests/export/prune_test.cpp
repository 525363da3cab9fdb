// export/prune: global magnitude pruning of Linear/Conv2d weights.
#include "export/prune.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

namespace dtrain {
namespace {

std::unique_ptr<Model> small_cnn() {
  ModelConfig c;
  c.type = "cnn";
  c.input_shape = Shape{1, 8, 8};
  c.num_classes = 3;
  auto m = create_model(c);
  m->build(Device::cpu(), 5);
  return m;
}

bool is_weight_matrix(const Parameter& p) { return p.name.ends_with("weight"); }  // cnn: Conv2d and Linear only

TEST(Prune, ZeroesTheSmallestMagnitudesUnderOneGlobalThreshold) {
  auto model = small_cnn();
  std::map<std::string, std::vector<float>> before;
  for (Parameter* p : model->parameters()) before[p->name] = p->value.to_vector<float>();
  const Sparsity s = prune_global_magnitude(*model, 0.6);
  int64_t weights = 0;
  float largest_pruned = 0, smallest_kept = INFINITY;
  for (Parameter* p : model->parameters()) {
    const std::vector<float> after = p->value.to_vector<float>();
    if (!is_weight_matrix(*p)) {
      EXPECT_EQ(after, before[p->name]) << p->name << " is not a weight matrix and must stay";
      continue;
    }
    weights += static_cast<int64_t>(after.size());
    for (size_t i = 0; i < after.size(); ++i) {
      const float m = std::fabs(before[p->name][i]);
      if (after[i] == 0.0f) {
        largest_pruned = std::max(largest_pruned, m);
      } else {
        smallest_kept = std::min(smallest_kept, m);
        EXPECT_EQ(after[i], before[p->name][i]);
      }
    }
  }
  EXPECT_EQ(s.weights, weights);
  EXPECT_EQ(s.zeros, std::llround(0.6 * static_cast<double>(weights)));
  EXPECT_NEAR(s.fraction(), 0.6, 1e-4);
  EXPECT_LE(largest_pruned, smallest_kept);
  EXPECT_EQ(weight_sparsity(*model).zeros, s.zeros);
}

TEST(Prune, ZeroFractionChangesNothingAndBadFractionsAreNamed) {
  auto model = small_cnn();
  const std::vector<float> before = model->arena().values().to_vector<float>();
  EXPECT_EQ(prune_global_magnitude(*model, 0.0).zeros, 0);
  EXPECT_EQ(model->arena().values().to_vector<float>(), before);
  for (double bad : {-0.1, 1.0, 1.5}) {
    try {
      prune_global_magnitude(*model, bad);
      FAIL() << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--prune: fraction must be in [0, 1)"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace dtrain
