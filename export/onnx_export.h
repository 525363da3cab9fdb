#pragma once
// ONNX export of a dtrain Model: one graph with a dynamic batch axis N, the input normalisation
// folded in, and two outputs, "probabilities" (softmax over the last dim) and "class" (its
// argmax, INT64). Every core layer maps to standard ONNX ops (opset 13..17):
//   Linear -> Gemm (2-D input) or MatMul + Add, Conv2d -> Conv, MaxPool2d -> MaxPool,
//   ReLU -> Relu, GELU -> Mul, Erf, Add, Mul (opset 17 has no Gelu), Flatten -> Flatten,
//   LayerNorm -> LayerNormalization (opset 17), Embedding -> Gather, Dropout -> nothing.
// int8 quantization stores Linear/Conv2d/Embedding weights as per-output-channel symmetric int8
// read back through DequantizeLinear (activations stay f32).
#include <memory>
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
};

// The serialized ModelProto as pieces whose concatenation is the file: protobuf framing and, for
// large f32 weights, views of the parameters' host memory (held by `owners`), so a 100 MB model
// reaches the disk without being copied into a buffer first. The views see the model's live
// values: write the model (or take bytes()) before changing its parameters.
struct ExportedModel {
  std::vector<TensorInfo> inputs, outputs;
  std::vector<std::span<const char>> parts;
  std::vector<std::shared_ptr<const void>> owners;
  int64_t size() const;
  std::string bytes() const;  // all parts joined
};

// Builds the graph from the model's current parameter values (any device), then validates it
// with the ONNX checker and strict shape inference. Throws naming the layer for an unsupported
// layer or option, and with the checker's message when validation fails.
ExportedModel export_onnx(Model& model, const ExportOptions& options);

// Runs onnx::checker::check_model and strict shape inference on a serialized model; throws
// dtrain::Error carrying the checker's message when either fails.
void check_onnx(const std::string& bytes);

}  // namespace dtrain
