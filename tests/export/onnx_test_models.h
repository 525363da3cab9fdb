#pragma once
// Models and helpers shared by the ONNX tests and the onnxruntime peer check: two registered test
// models that together hold every core layer type, random inputs, and the reference outputs
// (Model::forward in eval mode, softmax and argmax on the host in double).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/model.h"
#include "core/ops.h"
#include "inference/onnx_engine.h"

namespace dtrain::test {

// "onnx_every_layer_image", input [1, 12, 12]: Conv2d, ReLU, MaxPool2d (padded), Conv2d
// (strided), GELU, MaxPool2d, Flatten, Linear, Dropout, LayerNorm, a nested Sequential, Linear.
// "onnx_every_layer_tokens", input [5] (i64 ids < 20): Embedding, LayerNorm, Linear on a 3-D
// input (MatMul + Add), GELU, Flatten, Linear.
inline void register_onnx_test_models() {
  static std::once_flag once;
  std::call_once(once, [] {
    register_model("onnx_every_layer_image", [](const ModelConfig& c) {
      auto net = std::make_unique<Sequential>();
      net->emplace<Conv2d>(1, 4, 3, 1, 1).emplace<ReLU>().emplace<MaxPool2d>(3, 2, 1);
      net->emplace<Conv2d>(4, 6, 3, 2, 0).emplace<GELU>().emplace<MaxPool2d>(2);
      net->emplace<Flatten>().emplace<Linear>(6, 16).emplace<Dropout>(0.3f).emplace<LayerNorm>(16);
      auto inner = std::make_unique<Sequential>();
      inner->emplace<Linear>(16, 12).emplace<ReLU>();
      net->add(std::move(inner));
      net->emplace<Linear>(12, c.num_classes);
      return net;
    });
    register_model(
        "onnx_every_layer_tokens",
        [](const ModelConfig& c) {
          auto net = std::make_unique<Sequential>();
          net->emplace<Embedding>(20, 8).emplace<LayerNorm>(8).emplace<Linear>(8, 6).emplace<GELU>();
          net->emplace<Flatten>().emplace<Linear>(6 * c.input_shape[0], c.num_classes);
          return net;
        },
        InputLayout::tokens);
  });
}

inline ModelConfig image_test_config() {
  ModelConfig c;
  c.type = "onnx_every_layer_image";
  c.input_shape = Shape{1, 12, 12};
  c.num_classes = 5;
  return c;
}

inline ModelConfig tokens_test_config() {
  ModelConfig c;
  c.type = "onnx_every_layer_tokens";
  c.input_shape = Shape{5};
  c.num_classes = 4;
  return c;
}

// A built model whose every parameter (LayerNorm's too) is random, so no layer is an identity.
inline std::unique_ptr<Model> make_test_model(const ModelConfig& config, uint64_t seed, bool perturb = true) {
  register_onnx_test_models();
  auto model = create_model(config);
  model->build(Device::cpu(), seed);
  if (perturb) {
    Generator g(RngKey{seed, 1, static_cast<uint32_t>(RngPurpose::test)});
    Tensor& v = model->arena().values();
    const Tensor noise = Tensor::uniform(v.shape(), -0.3f, 0.3f, g);
    ops::axpy(1.0f, noise, v);
  }
  return model;
}

inline Shape batch_shape(const ModelConfig& c, int64_t batch) {
  Shape s{batch};
  for (int64_t d : c.input_shape) s.push_back(d);
  return s;
}

inline Tensor random_u8(const Shape& shape, Generator& g) {
  std::vector<uint8_t> v(static_cast<size_t>(shape.numel()));
  for (auto& x : v) x = static_cast<uint8_t>(g.below(256));
  return Tensor::from_vector(v, shape);
}

inline Tensor random_ids(const Shape& shape, int64_t vocab, Generator& g) {
  std::vector<int64_t> v(static_cast<size_t>(shape.numel()));
  for (auto& x : v) x = static_cast<int64_t>(g.below(static_cast<uint64_t>(vocab)));
  return Tensor::from_vector(v, shape);
}

struct Reference {
  std::vector<float> probabilities;  // [rows, classes]
  std::vector<int64_t> classes;      // [rows]
};

// Model::forward (eval) on the model's own f32 input, then softmax/argmax per row on the host.
inline Reference reference_outputs(Model& model, const Tensor& x) {
  PassContext ctx;
  ctx.training = false;
  const Tensor logits = model.forward(x, ctx);
  const std::vector<float> z = logits.to_vector<float>();
  const int64_t cols = logits.dim(-1), rows = logits.numel() / cols;
  Reference r;
  for (int64_t i = 0; i < rows; ++i) {
    const float* row = z.data() + i * cols;
    double m = row[0], s = 0;
    int64_t best = 0;
    for (int64_t j = 1; j < cols; ++j)
      if (row[j] > row[best]) best = j;
    m = row[best];
    for (int64_t j = 0; j < cols; ++j) s += std::exp(static_cast<double>(row[j]) - m);
    for (int64_t j = 0; j < cols; ++j)
      r.probabilities.push_back(static_cast<float>(std::exp(static_cast<double>(row[j]) - m) / s));
    r.classes.push_back(best);
  }
  return r;
}

// ---- the gpt (a language model): logits, and decoding through model.onnx and model_with_past.onnx

// A tiny gpt: 2 blocks of 2 heads, 32 wide, a byte vocabulary, `ctx` positions.
inline ModelConfig gpt_test_config(int64_t ctx) {
  ModelConfig c;
  c.type = "gpt";
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 32;
  c.ctx = ctx;
  c.num_classes = 256;
  c.input_shape = Shape{ctx};
  return c;
}

// Model::forward (eval): logits [N, T, vocab] of ids [N, T].
inline Tensor reference_logits(Model& model, const Tensor& ids) {
  PassContext ctx;
  ctx.training = false;
  return model.forward(ids, ctx);
}

inline Tensor ids_tensor(const std::vector<int64_t>& ids, int64_t rows = 1) {
  return Tensor::from_vector(ids, Shape{rows, static_cast<int64_t>(ids.size()) / rows});
}

// One call of a model_with_past: logits [N, S, vocab] and the cache for the next call (per layer
// keys, values [N, heads, P+S, head_dim]).
struct CachedRun {
  Tensor logits;
  std::vector<Tensor> cache;
};

// An empty cache (P = 0) for `rows` rows, shaped from the graph's past_key_values inputs.
inline std::vector<Tensor> empty_cache(const OnnxModel& with_past, int64_t rows) {
  std::vector<Tensor> cache;
  for (size_t i = 3; i < with_past.inputs().size(); ++i) {
    const std::vector<int64_t>& s = with_past.inputs()[i].shape;
    cache.push_back(Tensor::zeros(Shape{rows, s[1], 0, s[3]}));
  }
  return cache;
}

inline CachedRun run_with_past(const OnnxModel& with_past, const Tensor& ids, const Tensor& positions,
                               const Tensor& mask, const std::vector<Tensor>& cache) {
  std::vector<Tensor> in{ids, positions, mask};
  in.insert(in.end(), cache.begin(), cache.end());
  std::vector<Tensor> out = with_past.run(in);
  CachedRun r{out[0], {}};
  r.cache.assign(out.begin() + 1, out.end());
  return r;
}

inline int64_t last_argmax(const Tensor& logits) {
  const std::vector<float> z = logits.to_vector<float>();
  const int64_t vocab = logits.dim(-1);
  const float* last = z.data() + z.size() - vocab;
  return std::max_element(last, last + vocab) - last;
}

// Greedy continuation of `prompt` by `steps` tokens with model.onnx: each step runs the last `ctx`
// tokens whole and takes the argmax at the last position.
inline std::vector<int64_t> greedy_full(const OnnxModel& full, std::vector<int64_t> tokens, int64_t steps,
                                        int64_t ctx) {
  for (int64_t i = 0; i < steps; ++i) {
    const size_t first = tokens.size() > static_cast<size_t>(ctx) ? tokens.size() - ctx : 0;
    const std::vector<int64_t> window(tokens.begin() + static_cast<std::ptrdiff_t>(first), tokens.end());
    tokens.push_back(last_argmax(full.run({ids_tensor(window)})[0]));
  }
  return tokens;
}

// The same with model_with_past: the prompt in one call, then one token per call on the cache
// (the prompt and the steps must fit the model's ctx).
inline std::vector<int64_t> greedy_cached(const OnnxModel& with_past, std::vector<int64_t> tokens, int64_t steps) {
  std::vector<int64_t> positions(tokens.size());
  for (size_t i = 0; i < positions.size(); ++i) positions[i] = static_cast<int64_t>(i);
  CachedRun r = run_with_past(with_past, ids_tensor(tokens), ids_tensor(positions),
                              ids_tensor(std::vector<int64_t>(tokens.size(), 1)), empty_cache(with_past, 1));
  for (int64_t i = 0; i < steps; ++i) {
    tokens.push_back(last_argmax(r.logits));
    if (i + 1 == steps) break;
    const int64_t position = static_cast<int64_t>(tokens.size()) - 1;
    r = run_with_past(with_past, ids_tensor({tokens.back()}), ids_tensor({position}),
                      ids_tensor(std::vector<int64_t>(tokens.size(), 1)), r.cache);
  }
  return tokens;
}

inline float max_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<float> x = a.to_vector<float>(), y = b.to_vector<float>();
  DTRAIN_CHECK(x.size() == y.size(), "max_abs_diff: ", a.shape().str(), " vs ", b.shape().str());
  float m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::fabs(x[i] - y[i]));
  return m;
}

}  // namespace dtrain::test
