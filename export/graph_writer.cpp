// GraphWriter (core's OnnxGraph on the ONNX library) and the frame every exported graph shares:
// declared inputs and outputs, metadata, the checker, and serialization with large weights
// spliced in from where they live.
#include "export/graph_writer.h"

#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/shape_inference/implementation.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <variant>

#include "core/config.h"
#include "export/quantize.h"

namespace dtrain::onnx_export {

namespace {

static_assert(std::endian::native == std::endian::little, "ONNX raw_data is little-endian");

constexpr int64_t kIrVersion = 8;

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// A host, contiguous view of a parameter's values.
Tensor host_values(const Parameter& p) {
  const Tensor& v = p.value;
  DTRAIN_CHECK(v.defined(), "ONNX export: parameter ", p.name, " is not allocated (build the model first)");
  return v.device().is_cpu() && v.is_contiguous() ? v : v.to(Device::cpu());
}

std::string bytes_of(const std::vector<int64_t>& dims, const void* data, size_t bytes) {
  std::string s(reinterpret_cast<const char*>(dims.data()), dims.size() * sizeof(int64_t));
  return s.append("|").append(static_cast<const char*>(data), bytes);
}

}  // namespace

// ---- GraphWriter

onnx::NodeProto* GraphWriter::named_node(const std::string& op, const std::string& name,
                                         const std::vector<std::string>& inputs,
                                         const std::vector<std::string>& outputs) {
  onnx::NodeProto* n = g_->add_node();
  n->set_op_type(op);
  n->set_name(name);
  for (const auto& i : inputs) n->add_input(i);
  for (const auto& o : outputs) n->add_output(o);
  return n;
}

std::string GraphWriter::node(const std::string& op_type, const std::string& path,
                              const std::vector<std::string>& inputs, const std::vector<OnnxAttr>& attrs) {
  const std::string base = (path.empty() ? "net" : path) + "/" + op_type;
  const std::string name = base + suffix(base);
  onnx::NodeProto* n = named_node(op_type, name, inputs, {name});
  for (const OnnxAttr& a : attrs) std::visit([&](const auto& v) { attr(n, a.name, v); }, a.value);
  return name;
}

void GraphWriter::attr(onnx::NodeProto* n, const std::string& name, int64_t v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto_AttributeType_INT);
  a->set_i(v);
}

void GraphWriter::attr(onnx::NodeProto* n, const std::string& name, float v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto_AttributeType_FLOAT);
  a->set_f(v);
}

void GraphWriter::attr(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto_AttributeType_INTS);
  for (int64_t x : v) a->add_ints(x);
}

void GraphWriter::rename(const std::string& from, const std::string& to) {
  int produced = 0;
  for (auto& n : *g_->mutable_node()) {
    for (auto& o : *n.mutable_output())
      if (o == from) o = to, ++produced;
    for (auto& i : *n.mutable_input())
      if (i == from) i = to;
  }
  DTRAIN_CHECK(produced == 1, "ONNX export: value '", from, "' is produced by ", produced,
               " nodes; only a node's output can become graph output '", to, "'");
}

std::string GraphWriter::suffix(const std::string& base) {
  const int n = used_[base]++;
  std::string s;
  if (n > 0) s.append("_").append(std::to_string(n));  // (not "_" + ...: GCC 12's -Wrestrict false positive)
  return s;
}

onnx::TensorProto* GraphWriter::initializer(const std::string& name, int data_type, const std::vector<int64_t>& dims,
                                            const void* data, size_t bytes, std::shared_ptr<const void> owner) {
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

std::string GraphWriter::scalar(const std::string& name, float value) {
  if (!scalars_.count(name)) {
    initializer(name, onnx::TensorProto_DataType_FLOAT, {}, &value, sizeof value);
    scalars_.insert(name);
  }
  return name;
}

std::string GraphWriter::shared_constant(const std::string& name, int data_type, const std::vector<int64_t>& dims,
                                         const void* data, size_t bytes) {
  std::string key = bytes_of(dims, data, bytes);
  key.push_back(static_cast<char>(data_type));
  auto it = constants_.find(name);
  if (it != constants_.end()) {
    DTRAIN_CHECK(it->second == key, "ONNX export: constant '", name, "' is defined twice with different contents");
    return name;
  }
  int64_t count = 1;
  for (int64_t d : dims) count *= d;
  DTRAIN_CHECK(static_cast<int64_t>(bytes) == count * (data_type == onnx::TensorProto_DataType_INT64 ? 8 : 4),
               "ONNX export: constant '", name, "' has ", bytes, " bytes for ", count, " elements");
  initializer(name, data_type, dims, data, bytes);
  constants_.emplace(name, std::move(key));
  return name;
}

std::string GraphWriter::constant(const std::string& name, const std::vector<int64_t>& dims,
                                  const std::vector<float>& values) {
  return shared_constant(name, onnx::TensorProto_DataType_FLOAT, dims, values.data(), values.size() * sizeof(float));
}

std::string GraphWriter::constant(const std::string& name, const std::vector<int64_t>& dims,
                                  const std::vector<int64_t>& values) {
  return shared_constant(name, onnx::TensorProto_DataType_INT64, dims, values.data(), values.size() * sizeof(int64_t));
}

// A parameter that is never quantized (biases, LayerNorm), as an f32 initializer under its name.
std::string GraphWriter::param(const Parameter& p) {
  const Tensor host = host_values(p);
  std::vector<int64_t> dims(p.shape.begin(), p.shape.end());
  initializer(p.name, onnx::TensorProto_DataType_FLOAT, dims, host.data<float>(), host.nbytes(),
              std::make_shared<Tensor>(host));
  return p.name;
}

// A weight as an f32 value named `name`: an f32 initializer, or with int8 an int8 initializer
// with per-channel scales (channels = dim 0 of the parameter) read through DequantizeLinear.
// `transpose` stores a 2-D weight as [in, out] (for MatMul), its channels then along axis 1.
std::string GraphWriter::weight(const Parameter& p, bool transpose) {
  const std::string name = transpose ? p.name + "_t" : p.name;
  const Tensor host = host_values(p);
  DTRAIN_CHECK(transpose ? p.shape.size() == 2 : p.shape.size() >= 1, "ONNX export: parameter ", p.name, " has shape ",
               p.shape.str());
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

// ---- graph inputs and outputs

int onnx_type(DType t) {
  switch (t) {
    case DType::i64: return onnx::TensorProto_DataType_INT64;
    case DType::u8: return onnx::TensorProto_DataType_UINT8;
    default: return onnx::TensorProto_DataType_FLOAT;
  }
}

namespace {

TensorInfo declare(onnx::ValueInfoProto* vi, const std::string& name, DType dtype, const std::vector<Dim>& dims) {
  vi->set_name(name);
  auto* t = vi->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx_type(dtype));
  auto* s = t->mutable_shape();
  TensorInfo info{name, dtype, {}};
  for (const Dim& d : dims) {
    if (d.name.empty())
      s->add_dim()->set_dim_value(d.size);
    else
      s->add_dim()->set_dim_param(d.name);
    info.shape.push_back(d.name.empty() ? d.size : -1);
  }
  return info;
}

}  // namespace

TensorInfo add_graph_input(onnx::GraphProto* g, const std::string& name, DType dtype, const std::vector<Dim>& dims) {
  return declare(g->add_input(), name, dtype, dims);
}

TensorInfo add_graph_output(onnx::GraphProto* g, const std::string& name, DType dtype, const std::vector<Dim>& dims) {
  return declare(g->add_output(), name, dtype, dims);
}

// ---- the model around the graph

void start_model(onnx::ModelProto& proto, int opset, const std::string& name) {
  proto.set_ir_version(kIrVersion);
  proto.set_producer_name("dtrain");
  proto.set_producer_version(DTRAIN_VERSION);
  proto.set_model_version(1);
  auto* op = proto.add_opset_import();
  op->set_domain("");
  op->set_version(opset);
  proto.mutable_graph()->set_name(name);
}

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

namespace {

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

}  // namespace dtrain::onnx_export
