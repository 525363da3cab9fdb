// ONNX export: each layer maps itself onto nodes (Module::to_onnx) through GraphWriter
// (export/graph_writer.h); the graph is checked (checker + strict shape inference) before it is
// returned. A language model (export_onnx_with_past: export/gpt_decoder.cpp) maps to logits.
#include "export/onnx_export.h"

#include <onnx/onnx_pb.h>

#include "core/layers/layers.h"
#include "export/graph_writer.h"

namespace dtrain {

using onnx_export::dim;
using onnx_export::GraphWriter;

int64_t ExportedModel::size() const {
  int64_t n = 0;
  for (const auto& p : parts) n += static_cast<int64_t>(p.size());
  return n;
}

std::string ExportedModel::bytes() const {
  std::string out;
  out.reserve(static_cast<size_t>(size()));
  for (const auto& p : parts) out.append(p.data(), p.size());
  return out;
}

namespace {

// The graph input "input" and the normalisation the model sees, x * x_scale + x_shift, as dtrain's
// loader feeds it; returns the value the network reads.
std::string add_input(GraphWriter& gw, DType dtype, const Shape& shape, const ExportOptions& options,
                      ExportedModel& result) {
  std::vector<onnx_export::Dim> dims{dim("N")};
  for (int i = 1; i < shape.size(); ++i) dims.push_back(dim(shape[i]));
  result.inputs.push_back(onnx_export::add_graph_input(gw.graph(), "input", dtype, dims));
  std::string x = "input";
  if (dtype == DType::u8) x = gw.node("Cast", "input", {x}, {{"to", int64_t{onnx::TensorProto_DataType_FLOAT}}});
  if (options.x_scale != 1.0)
    x = gw.node("Mul", "input", {x, gw.scalar("input_scale", static_cast<float>(options.x_scale))});
  if (options.x_shift != 0.0)
    x = gw.node("Add", "input", {x, gw.scalar("input_shift", static_cast<float>(options.x_shift))});
  return x;
}

// "probabilities" (softmax over the last dim of the logits) and "class" (their argmax, INT64).
void add_outputs(GraphWriter& gw, const std::string& logits, const Shape& shape, ExportedModel& result) {
  DTRAIN_CHECK(shape.size() >= 2, "ONNX export: the model's output ", shape.str(), " has no class dim");
  onnx::NodeProto* sm = gw.named_node("Softmax", "probabilities/Softmax", {logits}, {"probabilities"});
  GraphWriter::attr(sm, "axis", int64_t{-1});
  onnx::NodeProto* am = gw.named_node("ArgMax", "class/ArgMax", {logits}, {"class"});
  GraphWriter::attr(am, "axis", int64_t{-1});
  GraphWriter::attr(am, "keepdims", int64_t{0});
  std::vector<onnx_export::Dim> dims{dim("N")};
  for (int i = 1; i < shape.size(); ++i) dims.push_back(dim(shape[i]));
  result.outputs.push_back(onnx_export::add_graph_output(gw.graph(), "probabilities", DType::f32, dims));
  dims.pop_back();
  result.outputs.push_back(onnx_export::add_graph_output(gw.graph(), "class", DType::i64, dims));
}

// The network's layers [begin, end) from `x` of `shape` (the shape layer `begin` sees, batch 1);
// returns the value they produce and sets `shape` to its shape.
std::string add_layers(GraphWriter& gw, const Sequential& net, int64_t begin, int64_t end, std::string x,
                       Shape& shape) {
  const auto& layers = net.children();
  for (int64_t i = begin; i < end; ++i) {
    const auto& layer = layers[static_cast<size_t>(i)];
    x = layer->to_onnx(gw, x, shape, std::to_string(i));  // the names Sequential::to_onnx gives
    shape = layer->output_shape(shape);
  }
  return x;
}

// A classifier's graph, whole or the stage [layer_begin, layer_end) of it.
void add_classifier(GraphWriter& gw, Model& model, DType input_dtype, const ExportOptions& options,
                    ExportedModel& result) {
  const auto& layers = model.net().children();
  const auto n = static_cast<int64_t>(layers.size());
  const int64_t begin = options.layer_begin, end = options.layer_end < 0 ? n : options.layer_end;
  DTRAIN_CHECK(begin >= 0 && begin < end && end <= n, "ONNX export: layers [", begin, ", ", end,
               ") are not a stage of the model '", model.config().type, "', which has ", n, " top-level layers");
  Shape shape{1};  // batch 1 stands for the dynamic N
  for (int64_t d : model.config().input_shape) shape.push_back(d);
  std::string x;
  if (begin == 0) {
    x = add_input(gw, input_dtype, shape, options, result);
  } else {
    for (int64_t i = 0; i < begin; ++i) shape = layers[static_cast<size_t>(i)]->output_shape(shape);
    std::vector<onnx_export::Dim> dims{dim("N")};
    for (int i = 1; i < shape.size(); ++i) dims.push_back(dim(shape[i]));
    result.inputs.push_back(onnx_export::add_graph_input(gw.graph(), "input", DType::f32, dims));
    x = "input";
  }
  x = add_layers(gw, model.net(), begin, end, x, shape);
  if (end == n) return add_outputs(gw, x, shape, result);
  gw.rename(x, "activation");
  std::vector<onnx_export::Dim> dims{dim("N")};
  for (int i = 1; i < shape.size(); ++i) dims.push_back(dim(shape[i]));
  result.outputs.push_back(onnx_export::add_graph_output(gw.graph(), "activation", DType::f32, dims));
}

// input_ids INT64 [N, T] -> logits [N, T, vocab], T dynamic (at most ctx).
void add_language_model(GraphWriter& gw, Model& model, const LanguageModelInfo& lm, ExportedModel& result) {
  result.inputs.push_back(onnx_export::add_graph_input(gw.graph(), "input_ids", DType::i64, {dim("N"), dim("T")}));
  gw.rename(model.net().to_onnx(gw, "input_ids", Shape{1, lm.ctx}, ""), "logits");
  result.outputs.push_back(
      onnx_export::add_graph_output(gw.graph(), "logits", DType::f32, {dim("N"), dim("T"), dim(lm.vocab)}));
  result.language_model = lm;
}

}  // namespace

namespace onnx_export {

DType check_options(const Model& model, const ExportOptions& options) {
  DTRAIN_CHECK(options.opset >= kMinExportOpset && options.opset <= kMaxExportOpset, "ONNX export: opset ",
               options.opset, " is not supported (", kMinExportOpset, "..", kMaxExportOpset, ")");
  DTRAIN_CHECK(options.quantize == "none" || options.quantize == "int8", "ONNX export: quantize '", options.quantize,
               "' is not supported (none or int8)");
  if (model.input_layout() == InputLayout::tokens) {
    DTRAIN_CHECK(options.input_dtype != "u8" && options.x_scale == 1.0 && options.x_shift == 0.0,
                 "ONNX export: the model '", model.config().type,
                 "' takes token ids, so its input is INT64; "
                 "input_dtype u8 and input normalisation do not apply");
    return DType::i64;
  }
  if (options.input_dtype == "u8") return DType::u8;
  DTRAIN_CHECK(options.input_dtype == "f32", "ONNX export: input_dtype '", options.input_dtype,
               "' is not supported (f32 or u8)");
  return DType::f32;
}

}  // namespace onnx_export

std::optional<LanguageModelInfo> language_model_info(const Sequential& net) {
  const auto& layers = net.children();
  if (layers.empty()) return std::nullopt;
  const auto* embedding = dynamic_cast<const TokenPositionEmbedding*>(layers.front().get());
  if (!embedding || !dynamic_cast<const TiedLinear*>(layers.back().get())) return std::nullopt;
  LanguageModelInfo lm{embedding->vocab(), embedding->ctx(), 0, 0, embedding->embd()};
  for (const auto& layer : layers) {
    const auto* block = dynamic_cast<const Residual*>(layer.get());
    if (!block) continue;
    for (const auto& part : block->body().children())
      if (const auto* attention = dynamic_cast<const CausalSelfAttention*>(part.get())) {
        DTRAIN_CHECK(lm.n_head == 0 || lm.n_head == attention->heads(), "ONNX export: the language model's blocks ",
                     "have ", lm.n_head, " and ", attention->heads(), " heads; one count is expected");
        lm.n_head = attention->heads();
        ++lm.n_layer;
      }
  }
  return lm.n_layer > 0 ? std::optional(lm) : std::nullopt;
}

ExportedModel export_onnx(Model& model, const ExportOptions& options) {
  const DType input_dtype = onnx_export::check_options(model, options);
  const std::optional<LanguageModelInfo> lm = language_model_info(model.net());
  DTRAIN_CHECK(!lm || options.opset >= 17, "ONNX export: the language model '", model.config().type,
               "' needs opset 17 (LayerNormalization), got ", options.opset);
  DTRAIN_CHECK(!lm || (options.layer_begin == 0 && options.layer_end < 0), "ONNX export: the language model '",
               model.config().type, "' cannot be split into stages (its key/value cache spans every block)");
  onnx::ModelProto proto;
  onnx_export::start_model(proto, options.opset, model.config().type);
  GraphWriter gw(proto.mutable_graph(), options.quantize == "int8");
  ExportedModel result;
  if (lm) {
    add_language_model(gw, model, *lm, result);
  } else {
    add_classifier(gw, model, input_dtype, options, result);
  }
  onnx_export::add_metadata(proto, model, input_dtype, options);
  onnx_export::check_model_proto(proto);
  onnx_export::serialize(proto, gw, result);
  return result;
}

void check_onnx(const std::string& bytes) {
  onnx::ModelProto proto;
  DTRAIN_CHECK(proto.ParseFromString(bytes), "ONNX checker: the bytes do not parse as an ONNX ModelProto");
  onnx_export::check_model_proto(proto);
}

}  // namespace dtrain
