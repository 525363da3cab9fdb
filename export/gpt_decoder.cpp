// export_onnx_with_past: a language model's decoding graph with a key/value cache
// (model_with_past.onnx; the contract is in export/onnx_export.h). The network maps itself as it
// does for model.onnx (Module::to_onnx); this file's graph answers the layers' questions about
// the cache (OnnxGraph::attention_cache, position_ids) with graph inputs and makes every
// attention's keys and values graph outputs. The attention bias [N, 1, S, P+S], made once:
//   causal   the bottom-right [S, P+S] corner of the [ctx, ctx] causal mask (0 on and below the
//            diagonal, -1e9 above): Slice from ctx - [S, P+S] to ctx, so new token s sees j <= P + s
//   padding  (Cast(attention_mask) - 1) * 1e9, Reshape [N, 1, 1, P+S]
//   bias     Add(causal, padding)
#include <onnx/onnx_pb.h>

#include <string>
#include <vector>

#include "export/graph_writer.h"
#include "export/onnx_export.h"

namespace dtrain {

namespace {

using onnx_export::dim;
using Ints = std::vector<int64_t>;
constexpr float kMaskedScore = -1e9f;  // as core/layers/transformer_onnx.cpp's causal mask

class DecoderGraph final : public onnx_export::GraphWriter {
 public:
  DecoderGraph(onnx::GraphProto* g, bool int8, const LanguageModelInfo& lm, ExportedModel& result)
      : GraphWriter(g, int8), result_(result) {
    for (const char* name : {"input_ids", "position_ids"})
      result.inputs.push_back(onnx_export::add_graph_input(g, name, DType::i64, {dim("N"), dim("S")}));
    result.inputs.push_back(onnx_export::add_graph_input(g, "attention_mask", DType::i64, {dim("N"), dim("P_plus_S")}));
    bias_ = attention_bias(lm.ctx);
  }

  AttentionCache attention_cache(const std::string& path, int64_t heads, int64_t head_dim) override {
    const std::string prefix = "past_key_values." + std::to_string(layers_.size());
    for (const char* part : {".key", ".value"})
      result_.inputs.push_back(onnx_export::add_graph_input(graph(), prefix + part, DType::f32,
                                                            {dim("N"), dim(heads), dim("P"), dim(head_dim)}));
    layers_.push_back({path, {}, {}, heads, head_dim});
    return {bias_, prefix + ".key", prefix + ".value"};
  }

  void attention_present(const std::string& path, const std::string& keys, const std::string& values) override {
    for (Layer& layer : layers_)
      if (layer.path == path) {
        layer.keys = keys;
        layer.values = values;
        return;
      }
    fail("ONNX export with past: the attention at '", path, "' hands back keys it never asked a cache for");
  }

  std::string position_ids() override { return "position_ids"; }

  // logits, then each layer's present keys and values, as graph outputs.
  void add_outputs(const std::string& logits, int64_t vocab) {
    rename(logits, "logits");
    result_.outputs.push_back(
        onnx_export::add_graph_output(graph(), "logits", DType::f32, {dim("N"), dim("S"), dim(vocab)}));
    for (size_t i = 0; i < layers_.size(); ++i) {
      const Layer& layer = layers_[i];
      DTRAIN_CHECK(!layer.keys.empty(), "ONNX export with past: the attention at '", layer.path,
                   "' handed back no keys and values");
      const std::string prefix = "present." + std::to_string(i);
      rename(layer.keys, prefix + ".key");
      rename(layer.values, prefix + ".value");
      for (const char* part : {".key", ".value"})
        result_.outputs.push_back(onnx_export::add_graph_output(
            graph(), prefix + part, DType::f32, {dim("N"), dim(layer.heads), dim("P_plus_S"), dim(layer.head_dim)}));
    }
  }

  size_t layers() const { return layers_.size(); }

 private:
  struct Layer {
    std::string path, keys, values;
    int64_t heads, head_dim;
  };

  // The bias [N, 1, S, P+S] every attention adds to its scores (this file's header).
  std::string attention_bias(int64_t ctx) {
    const std::string path = "attention_bias";
    std::vector<float> mask(static_cast<size_t>(ctx * ctx), 0.0f);
    for (int64_t i = 0; i < ctx; ++i)
      for (int64_t j = i + 1; j < ctx; ++j) mask[i * ctx + j] = kMaskedScore;
    const std::string table = constant("causal_mask_" + std::to_string(ctx), {ctx, ctx}, mask);
    const std::string ends = constant("ints_" + std::to_string(ctx) + "_" + std::to_string(ctx), {2}, Ints{ctx, ctx});
    const auto length = [&](const char* input) {
      return node("Shape", path, {input}, {{"start", int64_t{1}}, {"end", int64_t{2}}});
    };
    const std::string sizes =
        node("Concat", path, {length("input_ids"), length("attention_mask")}, {{"axis", int64_t{0}}});
    const std::string starts = node("Sub", path, {ends, sizes});
    const std::string causal = node("Slice", path, {table, starts, ends, constant("ints_0_1", {2}, Ints{0, 1})});
    const std::string mask_f =
        node("Cast", path, {"attention_mask"}, {{"to", int64_t{onnx::TensorProto_DataType_FLOAT}}});
    const std::string padding =
        node("Mul", path, {node("Sub", path, {mask_f, scalar("mask_one", 1.0f)}), scalar("mask_scale", -kMaskedScore)});
    const std::string rows = node("Reshape", path, {padding, constant("ints_0_1_1_-1", {4}, Ints{0, 1, 1, -1})});
    return node("Add", path, {causal, rows});
  }

  ExportedModel& result_;
  std::string bias_;
  std::vector<Layer> layers_;
};

}  // namespace

ExportedModel export_onnx_with_past(Model& model, const ExportOptions& options) {
  const DType input_dtype = onnx_export::check_options(model, options);
  const std::optional<LanguageModelInfo> lm = language_model_info(model.net());
  DTRAIN_CHECK(lm, "ONNX export with past: the model '", model.config().type,
               "' is not a language model (TokenPositionEmbedding, blocks with a CausalSelfAttention, TiedLinear)");
  DTRAIN_CHECK(options.opset >= 17, "ONNX export with past: the language model '", model.config().type,
               "' needs opset 17 (LayerNormalization), got ", options.opset);
  onnx::ModelProto proto;
  onnx_export::start_model(proto, options.opset, model.config().type + "_with_past");
  ExportedModel result;
  DecoderGraph gw(proto.mutable_graph(), options.quantize == "int8", *lm, result);
  const std::string logits = model.net().to_onnx(gw, "input_ids", Shape{1, lm->ctx}, "");
  DTRAIN_CHECK(static_cast<int64_t>(gw.layers()) == lm->n_layer, "ONNX export with past: ", gw.layers(),
               " attention layers asked for a cache, the model has ", lm->n_layer);
  gw.add_outputs(logits, lm->vocab);
  result.language_model = lm;
  onnx_export::add_metadata(proto, model, input_dtype, options);
  onnx_export::check_model_proto(proto);
  onnx_export::serialize(proto, gw, result);
  return result;
}

}  // namespace dtrain
