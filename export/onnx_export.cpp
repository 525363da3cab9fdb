// ONNX export: each layer maps itself onto nodes (Module::to_onnx) through GraphWriter, this
// file's OnnxGraph; values and nodes are named by the layer's path ("3/Gemm"), initializers by the
// parameter's name ("3.weight"). The graph is checked (checker + strict shape inference) before it
// is returned.
#include "export/onnx_export.h"

#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <variant>

#include "core/config.h"
#include "export/quantize.h"

namespace dtrain {

namespace {

static_assert(std::endian::native == std::endian::little, "ONNX raw_data is little-endian");

constexpr int kMinOpset = kMinExportOpset;
constexpr int kMaxOpset = kMaxExportOpset;
constexpr int64_t kIrVersion = 8;
constexpr const char* kBatchDim = "N";

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

void set_type(onnx::ValueInfoProto* vi, int elem_type, const Shape& shape) {
  auto* t = vi->mutable_type()->mutable_tensor_type();
  t->set_elem_type(elem_type);
  auto* s = t->mutable_shape();
  for (int i = 0; i < shape.size(); ++i) {
    auto* d = s->add_dim();
    if (i == 0)
      d->set_dim_param(kBatchDim);
    else
      d->set_dim_value(shape[i]);
  }
}

std::vector<int64_t> client_shape(const Shape& shape) {
  std::vector<int64_t> s(shape.begin(), shape.end());
  if (!s.empty()) s[0] = -1;
  return s;
}

// A host, contiguous view of a parameter's values.
Tensor host_values(const Parameter& p) {
  const Tensor& v = p.value;
  DTRAIN_CHECK(v.defined(), "ONNX export: parameter ", p.name, " is not allocated (build the model first)");
  return v.device().is_cpu() && v.is_contiguous() ? v : v.to(Device::cpu());
}

// An initializer whose data stays where it is (a parameter, a quantized buffer) and is spliced
// into the file after the serialized skeleton (see splice_initializer).
struct DeferredData {
  std::string name;
  std::span<const char> data;
  std::shared_ptr<const void> owner;
};

class GraphWriter final : public OnnxGraph {
 public:
  GraphWriter(onnx::GraphProto* graph, bool int8) : g_(graph), int8_(int8) {}
  // Initializers at least this large are deferred rather than copied into the proto.
  static constexpr size_t kDeferBytes = 64 * 1024;
  std::vector<DeferredData>& deferred() { return deferred_; }

  onnx::NodeProto* named_node(const std::string& op, const std::string& name, const std::vector<std::string>& inputs,
                              const std::vector<std::string>& outputs) {
    onnx::NodeProto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (const auto& i : inputs) n->add_input(i);
    for (const auto& o : outputs) n->add_output(o);
    return n;
  }
  // One-output node whose output is named like the node.
  std::string node(const std::string& op_type, const std::string& path, const std::vector<std::string>& inputs,
                   const std::vector<OnnxAttr>& attrs = {}) override {
    const std::string base = (path.empty() ? "net" : path) + "/" + op_type;
    const std::string name = base + suffix(base);
    onnx::NodeProto* n = named_node(op_type, name, inputs, {name});
    for (const OnnxAttr& a : attrs) std::visit([&](const auto& v) { attr(n, a.name, v); }, a.value);
    return name;
  }

  static void attr(onnx::NodeProto* n, const std::string& name, int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto_AttributeType_INT);
    a->set_i(v);
  }
  static void attr(onnx::NodeProto* n, const std::string& name, float v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto_AttributeType_FLOAT);
    a->set_f(v);
  }
  static void attr(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto_AttributeType_INTS);
    for (int64_t x : v) a->add_ints(x);
  }

  // `owner` keeps `data` alive; with one, a large initializer is deferred: the proto gets a
  // one-byte placeholder (the checker reads no raw_data lengths) that the file never contains.
  onnx::TensorProto* initializer(const std::string& name, int data_type, const std::vector<int64_t>& dims,
                                 const void* data, size_t bytes, std::shared_ptr<const void> owner = nullptr) {
    onnx::TensorProto* t = g_->add_initializer();
    t->set_name(name);
    t->set_data_type(data_type);
    for (int64_t d : dims) t->add_dims(d);
    if (owner && bytes >= kDeferBytes) {
      t->set_raw_data(std::string(1, '\0'));
      deferred_.push_back({name, {static_cast<const char*>(data), bytes}, std::move(owner)});
    } else {
      t->set_raw_data(data, bytes);
    }
    return t;
  }
  // A shared f32 scalar constant (rank 0).
  std::string scalar(const std::string& name, float value) override {
    if (!scalars_.count(name)) {
      initializer(name, onnx::TensorProto_DataType_FLOAT, {}, &value, sizeof value);
      scalars_.insert(name);
    }
    return name;
  }

  // A parameter that is never quantized (biases, LayerNorm), as an f32 initializer under its name.
  std::string param(const Parameter& p) override {
    const Tensor host = host_values(p);
    std::vector<int64_t> dims(p.shape.begin(), p.shape.end());
    initializer(p.name, onnx::TensorProto_DataType_FLOAT, dims, host.data<float>(), host.nbytes(),
                std::make_shared<Tensor>(host));
    return p.name;
  }

  // A weight as an f32 value named `name`: an f32 initializer, or with int8 an int8 initializer
  // with per-channel scales (channels = dim 0 of the parameter) read through DequantizeLinear.
  // `transpose` stores a 2-D weight as [in, out] (for MatMul), its channels then along axis 1.
  std::string weight(const Parameter& p, bool transpose) override {
    const std::string name = transpose ? p.name + "_t" : p.name;
    const Tensor host = host_values(p);
    DTRAIN_CHECK(transpose ? p.shape.size() == 2 : p.shape.size() >= 1, "ONNX export: parameter ", p.name,
                 " has shape ", p.shape.str());
    const float* w = host.data<float>();
    std::vector<int64_t> dims(p.shape.begin(), p.shape.end());
    const int64_t rows = dims[0], cols = host.numel() / rows;
    if (transpose) std::swap(dims[0], dims[1]);
    if (!int8_) {
      if (!transpose) {
        initializer(name, onnx::TensorProto_DataType_FLOAT, dims, w, host.nbytes(), std::make_shared<Tensor>(host));
      } else {
        auto t = std::make_shared<std::vector<float>>(static_cast<size_t>(host.numel()));
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < cols; ++c) (*t)[c * rows + r] = w[r * cols + c];
        initializer(name, onnx::TensorProto_DataType_FLOAT, dims, t->data(), t->size() * sizeof(float), t);
      }
      return name;
    }
    QuantizedInt8 q = quantize_int8_per_channel(std::span<const float>(w, host.numel()), rows);
    auto values = std::make_shared<std::vector<int8_t>>(std::move(q.values));
    if (transpose) {
      auto t = std::make_shared<std::vector<int8_t>>(values->size());
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) (*t)[c * rows + r] = (*values)[r * cols + c];
      values = t;
    }
    const std::vector<int8_t> zero(static_cast<size_t>(rows), 0);
    initializer(name + "_quantized", onnx::TensorProto_DataType_INT8, dims, values->data(), values->size(), values);
    initializer(name + "_scale", onnx::TensorProto_DataType_FLOAT, {rows}, q.scales.data(), q.scales.size() * 4);
    initializer(name + "_zero_point", onnx::TensorProto_DataType_INT8, {rows}, zero.data(), zero.size());
    onnx::NodeProto* dq = named_node("DequantizeLinear", name + "/DequantizeLinear",
                                     {name + "_quantized", name + "_scale", name + "_zero_point"}, {name});
    attr(dq, "axis", static_cast<int64_t>(transpose ? 1 : 0));
    return name;
  }

 private:
  std::string suffix(const std::string& base) {
    const int n = used_[base]++;
    std::string s;
    if (n > 0) s.append("_").append(std::to_string(n));  // (not "_" + ...: GCC 12's -Wrestrict false positive)
    return s;
  }
  onnx::GraphProto* g_;
  bool int8_;
  std::map<std::string, int> used_;
  std::set<std::string> scalars_;
  std::vector<DeferredData> deferred_;
};

// check_model, then strict shape inference on a copy whose large initializers carry no data
// (inference reads their types and dims only; this keeps a 100 MB model from being copied).
void check_model_proto(onnx::ModelProto& model) {
  try {
    onnx::checker::check_model(model);
  } catch (const std::exception& e) {
    fail("ONNX checker rejected the model: ", e.what());
  }
  onnx::GraphProto* g = model.mutable_graph();
  std::vector<std::string> stash(static_cast<size_t>(g->initializer_size()));
  for (int i = 0; i < g->initializer_size(); ++i)
    if (g->initializer(i).raw_data().size() > 4096) g->mutable_initializer(i)->mutable_raw_data()->swap(stash[i]);
  onnx::ModelProto shell(model);
  for (int i = 0; i < g->initializer_size(); ++i)
    if (!stash[i].empty()) g->mutable_initializer(i)->mutable_raw_data()->swap(stash[i]);
  try {
    onnx::shape_inference::InferShapes(shell, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(/*check_type=*/true, /*error_mode=*/1));
  } catch (const std::exception& e) {
    fail("ONNX shape inference failed: ", e.what());
  }
}

void append_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

size_t varint_size(uint64_t v) {
  size_t n = 1;
  for (; v >= 0x80; v >>= 7) ++n;
  return n;
}

// Protobuf merges repeated occurrences of an embedded message field, so the bytes
//   ModelProto.graph (7) { GraphProto.initializer (5) { <TensorProto without raw_data>, raw_data (9) } }
// appended to a serialized ModelProto add one initializer to its graph. Returns that framing;
// the data follows it.
std::string splice_initializer(const onnx::TensorProto& meta, size_t data_bytes) {
  const std::string head = meta.SerializeAsString();
  const size_t tensor = head.size() + 1 + varint_size(data_bytes) + data_bytes;
  const size_t graph = 1 + varint_size(tensor) + tensor;
  std::string out;
  out.push_back(static_cast<char>((7 << 3) | 2));
  append_varint(out, graph);
  out.push_back(static_cast<char>((5 << 3) | 2));
  append_varint(out, tensor);
  out += head;
  out.push_back(static_cast<char>((9 << 3) | 2));
  append_varint(out, data_bytes);
  return out;
}

}  // namespace

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

// The graph input's element type: INT64 ids for a model of tokens, else f32 or u8 as asked.
DType input_dtype_of(const Model& model, const ExportOptions& options) {
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

int onnx_type(DType t) {
  switch (t) {
    case DType::i64: return onnx::TensorProto_DataType_INT64;
    case DType::u8: return onnx::TensorProto_DataType_UINT8;
    default: return onnx::TensorProto_DataType_FLOAT;
  }
}

// The graph input "input" and the normalisation the model sees, x * x_scale + x_shift, as dtrain's
// loader feeds it; returns the value the network reads.
std::string add_input(GraphWriter& gw, onnx::GraphProto* g, DType dtype, const Shape& shape,
                      const ExportOptions& options, ExportedModel& result) {
  set_type(g->add_input(), onnx_type(dtype), shape);
  g->mutable_input(0)->set_name("input");
  result.inputs.push_back({"input", dtype, client_shape(shape)});
  std::string x = "input";
  if (dtype == DType::u8) x = gw.node("Cast", "input", {x}, {{"to", int64_t{onnx::TensorProto_DataType_FLOAT}}});
  if (options.x_scale != 1.0)
    x = gw.node("Mul", "input", {x, gw.scalar("input_scale", static_cast<float>(options.x_scale))});
  if (options.x_shift != 0.0)
    x = gw.node("Add", "input", {x, gw.scalar("input_shift", static_cast<float>(options.x_shift))});
  return x;
}

// "probabilities" (softmax over the last dim of the logits) and "class" (their argmax, INT64).
void add_outputs(GraphWriter& gw, onnx::GraphProto* g, const std::string& logits, const Shape& shape,
                 ExportedModel& result) {
  DTRAIN_CHECK(shape.size() >= 2, "ONNX export: the model's output ", shape.str(), " has no class dim");
  onnx::NodeProto* sm = gw.named_node("Softmax", "probabilities/Softmax", {logits}, {"probabilities"});
  GraphWriter::attr(sm, "axis", int64_t{-1});
  onnx::NodeProto* am = gw.named_node("ArgMax", "class/ArgMax", {logits}, {"class"});
  GraphWriter::attr(am, "axis", int64_t{-1});
  GraphWriter::attr(am, "keepdims", int64_t{0});
  set_type(g->add_output(), onnx::TensorProto_DataType_FLOAT, shape);
  g->mutable_output(0)->set_name("probabilities");
  Shape class_shape;
  for (int i = 0; i + 1 < shape.size(); ++i) class_shape.push_back(shape[i]);
  set_type(g->add_output(), onnx::TensorProto_DataType_INT64, class_shape);
  g->mutable_output(1)->set_name("class");
  result.outputs.push_back({"probabilities", DType::f32, client_shape(shape)});
  result.outputs.push_back({"class", DType::i64, client_shape(class_shape)});
}

// The exporter's metadata_props, then the caller's (a caller's key replaces the exporter's).
void add_metadata(onnx::ModelProto& proto, const Model& model, DType input_dtype, const ExportOptions& options) {
  std::vector<std::pair<std::string, std::string>> meta{
      {"dtrain_version", DTRAIN_VERSION},       {"model", model.config().canonical()},
      {"input_dtype", dtype_name(input_dtype)}, {"x_scale", number(options.x_scale)},
      {"x_shift", number(options.x_shift)},     {"quantize", options.quantize}};
  for (const auto& [k, v] : options.metadata) {
    auto it = std::find_if(meta.begin(), meta.end(), [&](const auto& kv) { return kv.first == k; });
    if (it != meta.end())
      it->second = v;
    else
      meta.emplace_back(k, v);
  }
  for (const auto& [k, v] : meta) {
    auto* p = proto.add_metadata_props();
    p->set_key(k);
    p->set_value(v);
  }
}

// The file as parts: the serialized skeleton without the deferred initializers' placeholders, then
// each of them spliced in from where its data lives.
void serialize(onnx::ModelProto& proto, GraphWriter& gw, ExportedModel& result) {
  std::map<std::string, onnx::TensorProto> deferred_meta;
  auto* inits = proto.mutable_graph()->mutable_initializer();
  for (const DeferredData& d : gw.deferred()) {
    for (int i = 0; i < inits->size(); ++i)
      if (inits->Get(i).name() == d.name) {
        onnx::TensorProto meta = inits->Get(i);
        meta.clear_raw_data();
        deferred_meta[d.name] = std::move(meta);
        inits->DeleteSubrange(i, 1);
        break;
      }
  }
  auto skeleton = std::make_shared<std::string>();
  DTRAIN_CHECK(proto.SerializeToString(skeleton.get()), "ONNX export: serializing the model failed");
  result.parts.emplace_back(skeleton->data(), skeleton->size());
  result.owners.push_back(skeleton);
  for (DeferredData& d : gw.deferred()) {
    auto framing = std::make_shared<std::string>(splice_initializer(deferred_meta.at(d.name), d.data.size()));
    result.parts.emplace_back(framing->data(), framing->size());
    result.parts.push_back(d.data);
    result.owners.push_back(framing);
    result.owners.push_back(std::move(d.owner));
  }
  DTRAIN_CHECK(result.size() < (int64_t{2} << 30), "ONNX export: the model is ", result.size(),
               " bytes, over protobuf's 2 GiB limit");
}

}  // namespace

ExportedModel export_onnx(Model& model, const ExportOptions& options) {
  DTRAIN_CHECK(options.opset >= kMinOpset && options.opset <= kMaxOpset, "ONNX export: opset ", options.opset,
               " is not supported (", kMinOpset, "..", kMaxOpset, ")");
  DTRAIN_CHECK(options.quantize == "none" || options.quantize == "int8", "ONNX export: quantize '", options.quantize,
               "' is not supported (none or int8)");
  const DType input_dtype = input_dtype_of(model, options);
  onnx::ModelProto proto;
  proto.set_ir_version(kIrVersion);
  proto.set_producer_name("dtrain");
  proto.set_producer_version(DTRAIN_VERSION);
  proto.set_model_version(1);
  auto* opset = proto.add_opset_import();
  opset->set_domain("");
  opset->set_version(options.opset);
  onnx::GraphProto* g = proto.mutable_graph();
  g->set_name(model.config().type);
  GraphWriter gw(g, options.quantize == "int8");

  ExportedModel result;
  Shape shape{1};  // batch 1 stands for the dynamic N
  for (int64_t d : model.config().input_shape) shape.push_back(d);
  const std::string x = add_input(gw, g, input_dtype, shape, options, result);
  const std::string logits = model.net().to_onnx(gw, x, shape, "");
  add_outputs(gw, g, logits, model.net().output_shape(shape), result);
  add_metadata(proto, model, input_dtype, options);
  check_model_proto(proto);
  serialize(proto, gw, result);
  return result;
}

void check_onnx(const std::string& bytes) {
  onnx::ModelProto proto;
  DTRAIN_CHECK(proto.ParseFromString(bytes), "ONNX checker: the bytes do not parse as an ONNX ModelProto");
  check_model_proto(proto);
}

}  // namespace dtrain
