// The transformer's layers (core/layers/attention.cpp, transformer.cpp), the tanh GELU and the
// gpt model: finite-difference gradients, causality, a naive attention reference, weight-decay
// groups and a short training run.
#include <gtest/gtest.h>

#include <cmath>

#include "core/loss.h"
#include "core/model.h"
#include "gradcheck.h"

namespace dtrain {
namespace {

using testing::build;
using testing::test_gen;

// softmax(q k^T / sqrt(hd)) v per head with an explicit causal loop, in double.
std::vector<double> naive_attention(const std::vector<float>& qkv, int64_t b, int64_t t, int64_t c, int64_t heads) {
  const int64_t hd = c / heads;
  std::vector<double> out(static_cast<size_t>(b * t * c), 0.0);
  auto at = [&](int64_t n, int64_t i, int64_t part, int64_t h, int64_t d) {
    return static_cast<double>(qkv[((n * t + i) * 3 + part) * c + h * hd + d]);
  };
  for (int64_t n = 0; n < b; ++n)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < t; ++i) {
        std::vector<double> s(static_cast<size_t>(i + 1));
        double max = -1e300, sum = 0;
        for (int64_t j = 0; j <= i; ++j) {
          for (int64_t d = 0; d < hd; ++d) s[j] += at(n, i, 0, h, d) * at(n, j, 1, h, d);
          s[j] /= std::sqrt(static_cast<double>(hd));
          max = std::max(max, s[j]);
        }
        for (double& v : s) sum += (v = std::exp(v - max));
        for (int64_t j = 0; j <= i; ++j)
          for (int64_t d = 0; d < hd; ++d) out[(n * t + i) * c + h * hd + d] += s[j] / sum * at(n, j, 2, h, d);
      }
  return out;
}

TEST(CausalSelfAttention, MatchesANaiveCausalSoftmaxAttention) {
  CausalSelfAttention attention(8, 2);
  Generator g = test_gen(1);
  const Tensor qkv = Tensor::randn(Shape{2, 5, 24}, 0, 1, g);
  PassContext ctx;
  const std::vector<float> y = attention.forward(qkv, ctx).to_vector<float>();
  const std::vector<double> ref = naive_attention(qkv.to_vector<float>(), 2, 5, 8, 2);
  ASSERT_EQ(y.size(), ref.size());
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], ref[i], 1e-5) << i;
}

TEST(CausalSelfAttention, GradientsMatchFiniteDifferences) {
  CausalSelfAttention attention(8, 2);
  ParameterArena arena;
  Generator g = test_gen(2);
  testing::check_module_gradients(attention, arena, Tensor::randn(Shape{2, 5, 24}, 0, 1, g), testing::training_ctx);
}

TEST(CausalSelfAttention, APositionNeverSeesLaterOnes) {
  CausalSelfAttention attention(4, 1);
  Generator g = test_gen(3);
  Tensor qkv = Tensor::randn(Shape{1, 6, 12}, 0, 1, g);
  PassContext ctx;
  const std::vector<float> before = attention.forward(qkv, ctx).to_vector<float>();
  float* last = qkv.data<float>() + 5 * 12;
  for (int j = 0; j < 12; ++j) last[j] += 3.0f;
  const std::vector<float> after = attention.forward(qkv, ctx).to_vector<float>();
  for (int i = 0; i < 5 * 4; ++i) EXPECT_EQ(before[i], after[i]) << i;
}

TEST(CausalSelfAttention, BadShapesAndHeadsNameTheLayer) {
  EXPECT_THROW(CausalSelfAttention(10, 4), Error);
  CausalSelfAttention attention(8, 2);
  PassContext ctx;
  try {
    attention.forward(Tensor::zeros(Shape{2, 5, 8}), ctx);
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "CausalSelfAttention(8, heads 2): input shape [2, 5, 8], expected [N, T, 24] (q | k | v)");
  }
}

TEST(GeluTanh, MatchesTheFormulaAndItsGradient) {
  GELU gelu(true);
  const std::vector<float> x{-3.0f, -1.0f, -0.1f, 0.0f, 0.5f, 2.0f};
  PassContext ctx;
  const std::vector<float> y = gelu.forward(Tensor::from_vector(x, Shape{6}), ctx).to_vector<float>();
  for (size_t i = 0; i < x.size(); ++i) {
    const double v = x[i];
    EXPECT_NEAR(y[i], 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))), 1e-6);
  }
  ParameterArena arena;
  Generator g = test_gen(4);
  testing::check_module_gradients(gelu, arena, Tensor::randn(Shape{3, 7}, 0, 1.5f, g), testing::training_ctx);
}

TEST(Residual, GradientsMatchFiniteDifferences) {
  auto body = std::make_unique<Sequential>();
  body->emplace<LayerNorm>(6).emplace<Linear>(6, 6).emplace<GELU>(true);
  Residual residual(std::move(body));
  ParameterArena arena;
  build(residual, arena);
  EXPECT_EQ(arena.parameters()[0]->name, "0.weight");
  Generator g = test_gen(5);
  testing::check_module_gradients(residual, arena, Tensor::randn(Shape{2, 3, 6}, 0, 1, g), testing::training_ctx);
}

// A tiny gpt; its input is [N, T] token ids.
std::unique_ptr<Model> tiny_gpt(int64_t layers = 1, float dropout = 0.0f) {
  ModelConfig c;
  c.type = "gpt";
  c.n_layer = layers;
  c.n_head = 2;
  c.n_embd = 8;
  c.ctx = 6;
  c.num_classes = 11;
  c.dropout = dropout;
  c.input_shape = Shape{6};
  auto model = create_model(c);
  model->build(Device::cpu(), 3);
  return model;
}

Tensor random_ids(int64_t n, int64_t t, int64_t vocab, uint64_t seed) {
  Generator g = test_gen(seed);
  std::vector<int64_t> ids(static_cast<size_t>(n * t));
  for (int64_t& id : ids) id = static_cast<int64_t>(g.below(static_cast<uint64_t>(vocab)));
  return Tensor::from_vector(ids, Shape{n, t});
}

TEST(Gpt, EveryParameterGradientMatchesFiniteDifferences) {
  auto model = tiny_gpt(2);
  // GPT-2's embeddings start at std 0.02, where the first LayerNorm magnifies a finite-difference
  // step of 1e-2 fifty-fold: check at unit scale instead.
  Generator g = test_gen(9);
  for (Parameter* p : model->parameters())
    if (p->name == "0.wte" || p->name == "0.wpe") p->value.copy_from(Tensor::randn(p->shape, 0, 1, g));
  testing::GradCheckOptions o;
  o.check_input = false;
  testing::check_module_gradients(model->net(), model->arena(), random_ids(2, 5, 11, 6), testing::training_ctx, o);
}

TEST(Gpt, TiesTheHeadToTheTokenEmbeddingAndGroupsWeightDecay) {
  auto model = tiny_gpt(1);
  PassContext ctx;
  const Tensor logits = model->forward(random_ids(2, 6, 11, 7), ctx);
  EXPECT_EQ(logits.shape(), (Shape{2, 6, 11}));
  std::vector<std::string> decayed;
  for (const Parameter* p : model->parameters())
    if (p->weight_decay) decayed.push_back(p->name);
  // Only the Linear weights decay: qkv, proj, fc1, fc2 of the one block.
  EXPECT_EQ(decayed, (std::vector<std::string>{"1.1.weight", "1.3.weight", "2.1.weight", "2.3.weight"}));
  EXPECT_EQ(model->parameters().front()->name, "0.wte");
  int64_t covered = 0;
  for (const DecayRange& r : model->arena().decay_ranges()) {
    EXPECT_EQ(r.offset, covered);
    covered += r.numel;
  }
  EXPECT_EQ(covered, model->arena().numel());
}

TEST(Gpt, ContextLongerThanCtxIsRefusedWithTheLimit) {
  auto model = tiny_gpt(1);
  PassContext ctx;
  EXPECT_THROW(model->forward(random_ids(1, 7, 11, 8), ctx), Error);
  EXPECT_EQ(model->forward(random_ids(1, 3, 11, 8), ctx).shape(), (Shape{1, 3, 11}));
}

// A periodic sequence is learnable: after a few hundred Adam-like SGD steps the next-token loss
// is far below log(vocab).
TEST(Gpt, LearnsAPeriodicSequence) {
  auto model = tiny_gpt(1);
  std::vector<int64_t> ids, next;
  for (int n = 0; n < 8; ++n)
    for (int t = 0; t < 6; ++t) {
      ids.push_back((n + t) % 5);
      next.push_back((n + t + 1) % 5);
    }
  const Tensor x = Tensor::from_vector(ids, Shape{8, 6}), y = Tensor::from_vector(next, Shape{48});
  float first = 0, last = 0;
  for (int step = 0; step < 300; ++step) {
    PassContext ctx;
    model->arena().zero_grad();
    const Tensor logits = model->forward(x, ctx);
    const LossOutput loss = softmax_cross_entropy(logits.view(Shape{48, 11}), y, 1.0f / 48);
    model->backward(loss.grad.view(logits.shape()), ctx);
    model->arena().values().data<float>();
    float* p = model->arena().values().data<float>();
    const float* gr = model->arena().grads().data<float>();
    for (int64_t i = 0; i < model->arena().numel(); ++i) p[i] -= 0.5f * gr[i];
    const std::vector<float> per = loss.per_sample.to_vector<float>();
    float mean = 0;
    for (float v : per) mean += v / 48;
    (step == 0 ? first : last) = mean;
  }
  EXPECT_NEAR(first, std::log(11.0f), 0.3f);
  EXPECT_LT(last, 0.2f);
}

}  // namespace
}  // namespace dtrain
