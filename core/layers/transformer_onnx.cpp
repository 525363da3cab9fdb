// The ONNX mappings of the transformer's parts (their math: core/layers/attention.cpp and
// core/layers/transformer.cpp). Opset 17; the sequence length T is dynamic (1 <= T <= ctx):
//   TokenPositionEmbedding  Gather(wte, ids) + Slice(wpe, rows [0, T))
//                           (decoding with a cache: + Gather(wpe, position_ids))
//   CausalSelfAttention     qkv [N, T, 3C] -Reshape-> [N, T, 3, H, hd] -Transpose-> [3, N, H, T, hd]
//                           -Gather 0|1|2-> q, k, v [N, H, T, hd] (with a cache: k, v = Concat(past, new));
//                           Softmax(MatMul(q, Transpose(k)) * 1/sqrt(hd) + bias) -MatMul v-> [N, H, T, hd]
//                           -Transpose-> [N, T, H, hd] -Reshape-> [N, T, C]
//                           bias: rows and columns [0, T) of a [ctx, ctx] constant, 0 where a query may
//                           attend (keys at or before it) and -1e9 elsewhere, cut by Shape, Concat, Slice
//                           (with a cache: the decoder's bias, which also masks padding)
//   Residual                Add(x, body(x))
//   TiedLinear              MatMul(x, wte^T)
#include <cmath>
#include <string>
#include <vector>

#include "core/layers/layers.h"

namespace dtrain {

namespace {

using Ints = std::vector<int64_t>;
constexpr float kMaskedScore = -1e9f;  // finite: a row with every key masked stays finite (uniform)

std::string join(const Ints& v) {
  std::string s;
  for (int64_t x : v) s.append("_").append(std::to_string(x));
  return s;
}

// A shared 1-D INT64 constant named after its values ("ints_0_0_3_2_16").
std::string ints(OnnxGraph& g, const Ints& values) {
  return g.constant("ints" + join(values), {static_cast<int64_t>(values.size())}, values);
}

// A shared INT64 scalar (a Gather index that drops the axis).
std::string index_scalar(OnnxGraph& g, int64_t i) { return g.constant("index_" + std::to_string(i), {}, Ints{i}); }

// The length of dim `axis` of `x` as an INT64 [1].
std::string dim_of(OnnxGraph& g, const std::string& x, int64_t axis, const std::string& path) {
  return g.node("Shape", path, {x}, {{"start", axis}, {"end", axis + 1}});
}

// The causal mask's bias for T queries over the same T keys: rows and columns [0, T) of a
// [max_t, max_t] constant (0 on and below the diagonal, kMaskedScore above).
std::string causal_bias(OnnxGraph& g, const std::string& qkv, int64_t max_t, const std::string& path) {
  std::vector<float> mask(static_cast<size_t>(max_t * max_t), 0.0f);
  for (int64_t i = 0; i < max_t; ++i)
    for (int64_t j = i + 1; j < max_t; ++j) mask[i * max_t + j] = kMaskedScore;
  const std::string table = g.constant("causal_mask_" + std::to_string(max_t), {max_t, max_t}, mask);
  const std::string t = dim_of(g, qkv, 1, path);
  const std::string tt = g.node("Concat", path, {t, t}, {{"axis", int64_t{0}}});
  return g.node("Slice", path, {table, ints(g, {0, 0}), tt, ints(g, {0, 1})});
}

}  // namespace

std::string CausalSelfAttention::to_onnx(OnnxGraph& g, const std::string& qkv, const Shape& input,
                                         const std::string& path) const {
  output_shape(input);  // checks the input
  const int64_t hd = head_dim();
  const OnnxGraph::AttentionCache cache = g.attention_cache(path, heads_, hd);
  const std::string bias = cache.bias.empty() ? causal_bias(g, qkv, input[1], path) : cache.bias;
  const std::string heads = g.node("Reshape", path, {qkv, ints(g, {0, 0, 3, heads_, hd})});
  const std::string parts = g.node("Transpose", path, {heads}, {{"perm", Ints{2, 0, 3, 1, 4}}});
  const std::string q = g.node("Gather", path, {parts, index_scalar(g, 0)}, {{"axis", int64_t{0}}});
  std::string k = g.node("Gather", path, {parts, index_scalar(g, 1)}, {{"axis", int64_t{0}}});
  std::string v = g.node("Gather", path, {parts, index_scalar(g, 2)}, {{"axis", int64_t{0}}});
  if (!cache.past_keys.empty()) {
    k = g.node("Concat", path, {cache.past_keys, k}, {{"axis", int64_t{2}}});
    v = g.node("Concat", path, {cache.past_values, v}, {{"axis", int64_t{2}}});
    g.attention_present(path, k, v);
  }
  const std::string kt = g.node("Transpose", path, {k}, {{"perm", Ints{0, 1, 3, 2}}});
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const std::string scores =
      g.node("Mul", path, {g.node("MatMul", path, {q, kt}), g.scalar("attention_scale_" + std::to_string(hd), scale)});
  const std::string att = g.node("Softmax", path, {g.node("Add", path, {scores, bias})}, {{"axis", int64_t{-1}}});
  const std::string y = g.node("MatMul", path, {att, v});
  const std::string rows = g.node("Transpose", path, {y}, {{"perm", Ints{0, 2, 1, 3}}});
  return g.node("Reshape", path, {rows, ints(g, {0, 0, c_})});
}

std::string Residual::to_onnx(OnnxGraph& g, const std::string& x, const Shape& input, const std::string& path) const {
  return g.node("Add", path, {x, body_->to_onnx(g, x, input, path)});
}

std::string TokenPositionEmbedding::to_onnx(OnnxGraph& g, const std::string& ids, const Shape& input,
                                            const std::string& path) const {
  (void)input;
  const std::string tokens = g.node("Gather", path, {g.weight(*wte_), ids}, {{"axis", int64_t{0}}});
  const std::string given = g.position_ids();
  const std::string positions =
      given.empty() ? g.node("Slice", path, {g.weight(*wpe_), ints(g, {0}), dim_of(g, ids, 1, path), ints(g, {0})})
                    : g.node("Gather", path, {g.weight(*wpe_), given}, {{"axis", int64_t{0}}});
  return g.node("Add", path, {tokens, positions});
}

std::string TiedLinear::to_onnx(OnnxGraph& g, const std::string& x, const Shape& input, const std::string& path) const {
  (void)input;
  return g.node("MatMul", path, {x, g.weight(*embedding_.token_weight(), /*transpose=*/true)});
}

}  // namespace dtrain
