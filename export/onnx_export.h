#pragma once
// ONNX export of a dtrain Model: one graph with a dynamic batch axis N, the input normalisation
// folded in, and two outputs, "probabilities" (softmax over the last dim) and "class" (its
// argmax, INT64). Every core layer maps to standard ONNX ops (opset 13..17):
//   Linear -> Gemm (2-D input) or MatMul + Add, Conv2d -> Conv, MaxPool2d -> MaxPool,
//   ReLU -> Relu, GELU -> Mul, Erf, Add, Mul (opset 17 has no Gelu), Flatten -> Flatten,
//   LayerNorm -> LayerNormalization (opset 17), Embedding -> Gather, Dropout -> nothing.
// A language model (TokenPositionEmbedding first, TiedLinear last: the gpt) instead takes
// input_ids INT64 [N, T] (T dynamic, at most ctx) and outputs logits [N, T, vocab]; its
// transformer parts map as core/layers/transformer_onnx.cpp says (opset 17).
// int8 quantization stores Linear/Conv2d/Embedding weights as per-output-channel symmetric int8
// read back through DequantizeLinear (activations stay f32).
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/model.h"
#include "core/tensor_info.h"

namespace dtrain {

// The ONNX opsets the exporter writes: 13 has per-axis DequantizeLinear and Softmax over one axis;
// 17 is the newest the ONNX library here knows (and the first with LayerNormalization).
constexpr int kMinExportOpset = 13;
constexpr int kMaxExportOpset = 17;

struct ExportOptions {
  int opset = kMaxExportOpset;
  std::string quantize = "none";  // none | int8
  // What clients send: "f32" or "u8" (cast to f32 in the graph). A model whose first layer is an
  // Embedding always takes INT64 ids.
  std::string input_dtype = "f32";
  // The model sees input * x_scale + x_shift (Mul and Add nodes, left out when 1 and 0).
  double x_scale = 1.0, x_shift = 0.0;
  // Extra metadata_props (step, config, test_accuracy, ...); a key given here replaces the
  // exporter's own (dtrain_version, model, input_dtype, x_scale, x_shift, quantize).
  std::vector<std::pair<std::string, std::string>> metadata;
  // A pipeline stage (`dtrain export --split-at`): only the network's top-level layers
  // [layer_begin, layer_end) (-1: to the end). A stage that does not start at layer 0 takes
  // "input" FP32 [N, ...] (the previous stage's output, no normalisation); one that does not end
  // at the last layer outputs "activation" FP32 [N, ...] instead of probabilities and class.
  int64_t layer_begin = 0, layer_end = -1;
};

// A language model's sizes (config.json's "language_model"; dtrain-serve reads them).
struct LanguageModelInfo {
  int64_t vocab = 0, ctx = 0, n_layer = 0, n_head = 0, n_embd = 0;
  bool operator==(const LanguageModelInfo&) const = default;
};

// The serialized ModelProto as pieces whose concatenation is the file: protobuf framing and, for
// large f32 weights, views of the parameters' host memory (held by `owners`), so a 100 MB model
// reaches the disk without being copied into a buffer first. The views see the model's live
// values: write the model (or take bytes()) before changing its parameters.
struct ExportedModel {
  std::vector<TensorInfo> inputs, outputs;
  std::vector<std::span<const char>> parts;
  std::vector<std::shared_ptr<const void>> owners;
  std::optional<LanguageModelInfo> language_model;  // set for a language model's graphs
  int64_t size() const;
  std::string bytes() const;  // all parts joined
};

// Builds the graph from the model's current parameter values (any device), then validates it
// with the ONNX checker and strict shape inference. Throws naming the layer for an unsupported
// layer or option, and with the checker's message when validation fails.
ExportedModel export_onnx(Model& model, const ExportOptions& options);

// The sizes of a language model's network (TokenPositionEmbedding, blocks with a
// CausalSelfAttention, ..., TiedLinear); nullopt for any other network.
std::optional<LanguageModelInfo> language_model_info(const Sequential& net);

// A language model's decoding graph with a key/value cache (model_with_past.onnx):
//   inputs  input_ids INT64 [N, S], position_ids INT64 [N, S], attention_mask INT64 [N, P+S]
//           (1: a real token, 0: padding, which sits left of each row's cache), and per layer i
//           past_key_values.{i}.key / .value FP32 [N, n_head, P, head_dim] (P may be 0)
//   outputs logits FP32 [N, S, vocab], and per layer present.{i}.key / .value
//           FP32 [N, n_head, P+S, head_dim] (the past, then the S new tokens')
// New token s of row b attends to the positions j < P+S with attention_mask[b, j] == 1 and
// j <= P + s; its position embedding is row position_ids[b, s] of wpe. P+S is at most ctx.
// Throws naming the model when it is not a language model.
ExportedModel export_onnx_with_past(Model& model, const ExportOptions& options);

// Runs onnx::checker::check_model and strict shape inference on a serialized model; throws
// dtrain::Error carrying the checker's message when either fails.
void check_onnx(const std::string& bytes);

}  // namespace dtrain
