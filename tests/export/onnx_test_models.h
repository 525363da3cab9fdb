#pragma once
// Models and helpers shared by the ONNX tests and the onnxruntime peer check: two registered test
// models that together hold every core layer type, random inputs, and the reference outputs
// (Model::forward in eval mode, softmax and argmax on the host in double).
#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/model.h"
#include "core/ops.h"

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

}  // namespace dtrain::test
