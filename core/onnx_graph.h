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
  // A shared constant named `name` of shape `dims` ({} for a scalar) holding f32 or INT64 `values`
  // (shapes, axes, indices, masks): made on the first call, returned by later calls with the same
  // name and contents; the same name with other contents throws.
  virtual std::string constant(const std::string& name, const std::vector<int64_t>& dims,
                               const std::vector<float>& values) = 0;
  virtual std::string constant(const std::string& name, const std::vector<int64_t>& dims,
                               const std::vector<int64_t>& values) = 0;

  // ---- decoding with a key/value cache (export's model_with_past.onnx). A plain graph has no
  // cache and answers empty names; the decoder's graph answers with its inputs.
  // The additive attention bias and the past of the attention at `path`: bias [N, 1, S, P+S] (0
  // where a new token may attend, a large negative where it may not: padding, later tokens),
  // past keys and values [N, heads, P, head_dim] that come before the S new tokens' own.
  struct AttentionCache {
    std::string bias, past_keys, past_values;
  };
  virtual AttentionCache attention_cache(const std::string& /*path*/, int64_t /*heads*/, int64_t /*head_dim*/) {
    return {};
  }
  // The attention at `path` hands back its keys and values [N, heads, P+S, head_dim] (the past, then the new).
  virtual void attention_present(const std::string& /*path*/, const std::string& /*keys*/,
                                 const std::string& /*values*/) {}
  // INT64 [N, S]: the position of each input token (empty: positions 0, 1, ... of each row).
  virtual std::string position_ids() { return {}; }
};

}  // namespace dtrain
