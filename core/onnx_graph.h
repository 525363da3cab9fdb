#pragma once
// OnnxGraph: the ONNX graph being built, as a layer sees it when it maps itself onto ONNX nodes
// (Module::to_onnx). export/ implements it on the ONNX library; core never links ONNX.
//
// Values are named strings. A node's output is named "<path>/<op>" (with "_1", "_2", ... when a
// layer emits the same op twice), where path is the layer's name in the model ("3", "2.1").
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace dtrain {

struct Parameter;

struct OnnxAttr {
  std::string name;
  std::variant<int64_t, float, std::vector<int64_t>> value;
};

class OnnxGraph {
 public:
  virtual ~OnnxGraph() = default;
  // Adds a node `op_type` (standard ONNX domain) with one output; returns the output's name.
  virtual std::string node(const std::string& op_type, const std::string& path, const std::vector<std::string>& inputs,
                           const std::vector<OnnxAttr>& attrs = {}) = 0;
  // A weight (Linear, Conv2d, Embedding) as an f32 value: its initializer, or, when the export
  // quantizes, int8 per-output-channel values read through DequantizeLinear. transpose stores a
  // 2-D weight [out, in] as [in, out] (for MatMul).
  virtual std::string weight(const Parameter& p, bool transpose = false) = 0;
  // A parameter that is never quantized (a bias, a norm's scale) as an f32 initializer.
  virtual std::string param(const Parameter& p) = 0;
  // A shared f32 scalar constant named `name`.
  virtual std::string scalar(const std::string& name, float value) = 0;
};

}  // namespace dtrain
