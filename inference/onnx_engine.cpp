// The ONNX engine. Load: parse the ModelProto, turn initializers into tensors on the device
// (DequantizeLinear of constant int8 weights is computed once, here, so int8 models run f32
// GEMMs), resolve every node's inputs to value slots and check its attributes. Run: a fresh slot
// vector per call (constants shared, read-only), nodes executed in file order (ONNX requires
// topological order; load checks it), each value dropped after its last use.
#include "inference/onnx_engine.h"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "core/dispatch.h"
#include "core/gpu.h"
#include "inference/conv_direct.h"
#include "inference/onnx_ops.h"

namespace dtrain {

namespace {

int64_t numel_of(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

// An initializer's elements as little-endian bytes, whichever field holds them.
std::string tensor_bytes(const onnx::TensorProto& t, const std::string& what) {
  DTRAIN_CHECK(t.data_location() != onnx::TensorProto_DataLocation_EXTERNAL, what,
               ": external data is not supported (save the model as one file)");
  std::vector<int64_t> dims(t.dims().begin(), t.dims().end());
  const int64_t n = numel_of(dims);
  int64_t elem = 0;
  std::string out;
  switch (t.data_type()) {
    case onnx::TensorProto_DataType_FLOAT:
      elem = 4;
      if (t.raw_data().empty())
        out.assign(reinterpret_cast<const char*>(t.float_data().data()), t.float_data_size() * 4);
      break;
    case onnx::TensorProto_DataType_INT64:
      elem = 8;
      if (t.raw_data().empty())
        out.assign(reinterpret_cast<const char*>(t.int64_data().data()), t.int64_data_size() * 8);
      break;
    case onnx::TensorProto_DataType_INT32:
      elem = 4;
      if (t.raw_data().empty())
        out.assign(reinterpret_cast<const char*>(t.int32_data().data()), t.int32_data_size() * 4);
      break;
    case onnx::TensorProto_DataType_INT8:
    case onnx::TensorProto_DataType_UINT8:
      elem = 1;
      if (t.raw_data().empty())
        for (int32_t v : t.int32_data()) out.push_back(static_cast<char>(v));
      break;
    default: fail(what, ": element type ", onnx::TensorProto_DataType_Name(t.data_type()), " is not supported");
  }
  if (!t.raw_data().empty()) out = t.raw_data();
  DTRAIN_CHECK(static_cast<int64_t>(out.size()) == n * elem, what, ": holds ", out.size(), " bytes, its shape needs ",
               n * elem);
  return out;
}

// A constant known at load: int8 tensors live only here (DType has no int8) until dequantized.
struct HostConstant {
  int data_type = 0;
  std::vector<int64_t> dims;
  std::string bytes;
};

Tensor to_tensor(const HostConstant& c, const std::string& what) {
  Shape shape(c.dims.begin(), c.dims.end());
  const DType dt = inference::dtype_from_onnx(c.data_type, what);
  Tensor t = Tensor::empty(shape, dt, Device::cpu());
  if (!c.bytes.empty()) std::memcpy(t.raw_data(), c.bytes.data(), c.bytes.size());
  return t;
}

// y = (x - zero_point) * scale, per tensor or per slice along `axis`.
HostConstant dequantize(const HostConstant& x, const HostConstant& scale, const HostConstant* zp, int64_t axis,
                        const std::string& what) {
  DTRAIN_CHECK(x.data_type == onnx::TensorProto_DataType_INT8 || x.data_type == onnx::TensorProto_DataType_UINT8, what,
               ": x must be INT8 or UINT8");
  DTRAIN_CHECK(scale.data_type == onnx::TensorProto_DataType_FLOAT, what, ": x_scale must be FLOAT");
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  const int64_t channels = numel_of(scale.dims);
  int64_t inner = 1, outer = 1, ch = 1;
  if (channels > 1 || !scale.dims.empty()) {
    if (axis < 0) axis += rank;
    if (channels > 1 || scale.dims.size() == 1) {
      DTRAIN_CHECK(axis >= 0 && axis < rank && x.dims[axis] == channels && scale.dims.size() == 1, what,
                   ": per-axis scale of ", channels, " values does not match axis ", axis, " of x");
      ch = channels;
      for (int64_t i = axis + 1; i < rank; ++i) inner *= x.dims[i];
      for (int64_t i = 0; i < axis; ++i) outer *= x.dims[i];
    }
  }
  if (ch == 1) inner = numel_of(x.dims);
  if (zp) {
    DTRAIN_CHECK(zp->data_type == x.data_type && numel_of(zp->dims) == channels, what,
                 ": x_zero_point must match x's type and x_scale's shape");
  }
  const auto* sc = reinterpret_cast<const float*>(scale.bytes.data());
  HostConstant y{onnx::TensorProto_DataType_FLOAT, x.dims, std::string(x.bytes.size() * 4, '\0')};
  auto* out = reinterpret_cast<float*>(y.bytes.data());
  const bool is_signed = x.data_type == onnx::TensorProto_DataType_INT8;
  auto value = [&](const std::string& b, int64_t i) -> int32_t {
    return is_signed ? static_cast<int32_t>(static_cast<int8_t>(b[i]))
                     : static_cast<int32_t>(static_cast<uint8_t>(b[i]));
  };
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < ch; ++c) {
      const int32_t z = zp ? value(zp->bytes, c) : 0;
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t k = (o * ch + c) * inner + i;
        out[k] = static_cast<float>(value(x.bytes, k) - z) * sc[c];
      }
    }
  return y;
}

std::vector<int64_t> shape_of(const onnx::ValueInfoProto& vi, const std::string& what) {
  DTRAIN_CHECK(vi.type().has_tensor_type(), what, " is not a tensor");
  DTRAIN_CHECK(vi.type().tensor_type().has_shape(), what, " has no shape");
  std::vector<int64_t> shape;
  for (const auto& d : vi.type().tensor_type().shape().dim())
    shape.push_back(d.has_dim_value() && d.dim_value() > 0 ? d.dim_value() : -1);
  return shape;
}

// What a load knows while it reads the graph: every value's slot by name, and the constants known
// at load (initializers and folded DequantizeLinear outputs) by slot, until they move to the device.
struct LoadState {
  std::string where;  // "ONNX model <source>"
  std::unordered_map<std::string, int> slot;
  std::unordered_map<int, HostConstant> host;
  int new_slot(const std::string& name, const std::string& what) {
    DTRAIN_CHECK(!slot.count(name), where, ": value '", name, "' (", what, ") is defined twice");
    const int id = static_cast<int>(slot.size());
    slot[name] = id;
    return id;
  }
};

}  // namespace

struct OnnxModel::Impl {
  std::string source;
  Device device;
  int64_t opset = 0;
  std::vector<TensorInfo> inputs, outputs;
  std::vector<int> input_slots, output_slots;
  std::map<std::string, std::string> metadata;
  std::vector<Tensor> constants;       // by slot; undefined for computed values
  std::vector<Tensor> host_constants;  // by slot: a small constant's values on the host (see OpInputs)
  std::vector<std::string> host_constant_names;
  std::vector<inference::Node> nodes;
  std::vector<std::vector<int>> release_after;  // per node: slots whose last reader it is
  std::vector<bool> appendable;                 // per input: a Concat appends to it in place
};

namespace {

using inference::Node;
using Impl = OnnxModel::Impl;

void read_header(const onnx::ModelProto& proto, Impl& m, const std::string& where) {
  DTRAIN_CHECK(proto.has_graph() && proto.graph().node_size() > 0, where, ": holds no graph (not an ONNX model file?)");
  for (const auto& o : proto.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") m.opset = o.version();
  DTRAIN_CHECK(m.opset > 0, where, ": declares no ONNX opset (not an ONNX model file?)");
  DTRAIN_CHECK(m.opset >= 13, where, ": opset ", m.opset, " is too old (the engine supports 13 and later)");
  for (const auto& p : proto.metadata_props()) m.metadata[p.key()] = p.value();
}

void read_initializers_and_inputs(const onnx::GraphProto& g, Impl& m, LoadState& s) {
  for (const auto& t : g.initializer()) {
    const std::string what = s.where + ": initializer '" + t.name() + "'";
    s.host[s.new_slot(t.name(), "initializer")] =
        HostConstant{t.data_type(), std::vector<int64_t>(t.dims().begin(), t.dims().end()), tensor_bytes(t, what)};
  }
  for (const auto& vi : g.input()) {
    if (s.slot.count(vi.name()) && s.host.count(s.slot[vi.name()])) continue;  // an initializer listed as an input
    const std::string what = s.where + ": input '" + vi.name() + "'";
    m.inputs.push_back(
        {vi.name(), inference::dtype_from_onnx(vi.type().tensor_type().elem_type(), what), shape_of(vi, what)});
    m.input_slots.push_back(s.new_slot(vi.name(), "graph input"));
  }
  DTRAIN_CHECK(!m.inputs.empty(), s.where, ": the graph has no inputs");
}

// Constant folding: a DequantizeLinear of initializers (int8 weights) becomes an f32 constant now.
void fold_dequantize(const onnx::NodeProto& n, const Node& node, LoadState& s) {
  DTRAIN_CHECK(n.output_size() == 1 && node.in.size() >= 2, s.where, ": ", node.label, " needs x and x_scale");
  for (int slot : node.in)
    DTRAIN_CHECK(slot < 0 || s.host.count(slot), s.where, ": ", node.label,
                 " is supported on initializers only (int8 weights), not on computed values");
  const HostConstant* zp = node.in.size() > 2 && node.in[2] >= 0 ? &s.host[node.in[2]] : nullptr;
  s.host[s.new_slot(n.output(0), "DequantizeLinear output")] = dequantize(
      s.host[node.in[0]], s.host[node.in[1]], zp, inference::attr_int(n, "axis", 1), s.where + ": " + node.label);
}

// One graph node: its input slots, its op from the table, its attributes and output slot. Returns
// false for a node folded at load (DequantizeLinear).
bool read_node(const onnx::NodeProto& n, int index, LoadState& s, Node& node) {
  node.label = n.op_type() + " node '" + (n.name().empty() ? "#" + std::to_string(index) : n.name()) + "'";
  DTRAIN_CHECK(n.domain().empty() || n.domain() == "ai.onnx", s.where, ": ", node.label, " is in domain '", n.domain(),
               "', which the engine does not support");
  for (const auto& name : n.input()) {
    if (name.empty()) {
      node.in.push_back(-1);
      continue;
    }
    auto it = s.slot.find(name);
    DTRAIN_CHECK(it != s.slot.end(), s.where, ": ", node.label, " reads '", name,
                 "', which no earlier node, input or initializer defines (the graph must be topologically sorted)");
    node.in.push_back(it->second);
  }
  while (!node.in.empty() && node.in.back() < 0) node.in.pop_back();
  if (n.op_type() == "DequantizeLinear") {
    fold_dequantize(n, node, s);
    return false;
  }
  node.op = inference::find_op(n.op_type());
  DTRAIN_CHECK(node.op, s.where, ": unsupported op '", n.op_type(), "' (node '", n.name(),
               "'); the engine runs the ops dtrain's exporter writes: ", inference::supported_ops());
  node.label = s.where + ": " + node.label;
  const size_t lo = static_cast<size_t>(node.op->min_inputs), hi = static_cast<size_t>(node.op->max_inputs);
  DTRAIN_CHECK(node.in.size() >= lo && node.in.size() <= hi, node.label, ": has ", node.in.size(), " inputs, expected ",
               lo, lo == hi ? "" : " to " + std::to_string(hi));
  DTRAIN_CHECK(std::find(node.in.begin(), node.in.end(), -1) == node.in.end() || node.op->optional_inputs, node.label,
               ": a required input is empty");
  node.op->parse(n, node);
  DTRAIN_CHECK(n.output_size() == 1, node.label, ": has ", n.output_size(), " outputs, expected 1");
  node.out.push_back(s.new_slot(n.output(0), node.label + " output"));
  return true;
}

void read_nodes_and_outputs(const onnx::GraphProto& g, Impl& m, LoadState& s) {
  for (int i = 0; i < g.node_size(); ++i) {
    Node node;
    if (read_node(g.node(i), i, s, node)) m.nodes.push_back(std::move(node));
  }
  for (const auto& vi : g.output()) {
    const std::string what = s.where + ": output '" + vi.name() + "'";
    auto it = s.slot.find(vi.name());
    DTRAIN_CHECK(it != s.slot.end(), what, " is not produced by any node");
    m.outputs.push_back(
        {vi.name(), inference::dtype_from_onnx(vi.type().tensor_type().elem_type(), what), shape_of(vi, what)});
    m.output_slots.push_back(it->second);
  }
}

// Who reads each value slot: the nodes (with the input index) and how often it is a graph output.
struct Readers {
  std::vector<std::vector<std::pair<int, int>>> uses;  // per slot: (node, input index)
  std::vector<int> outputs;                            // per slot
  Readers(const Impl& m, size_t slots) : uses(slots), outputs(slots, 0) {
    for (size_t i = 0; i < m.nodes.size(); ++i)
      for (size_t k = 0; k < m.nodes[i].in.size(); ++k)
        if (m.nodes[i].in[k] >= 0) uses[m.nodes[i].in[k]].emplace_back(static_cast<int>(i), static_cast<int>(k));
    for (int s : m.output_slots) ++outputs[s];
  }
  // The node that alone reads slot s; null when none, several or the graph's output (a stage of a
  // split model) read it.
  Node* only(Impl& m, int s) const {
    return uses[s].size() == 1 && outputs[s] == 0 ? &m.nodes[uses[s][0].first] : nullptr;
  }
};

// Fusion: a Relu that alone reads a Conv or Gemm output runs inside that node, in place, and a
// MaxPool that alone reads a Conv's (Relu'd) output runs inside the Conv, per sample while the
// sample's output is in cache. The absorbed nodes become Identity; graph outputs never fuse.
void fuse(Impl& m, size_t slots) {
  const Readers readers(m, slots);
  auto only_reader = [&](int s, const inference::OpSpec& op) -> Node* {
    Node* n = readers.only(m, s);
    return n && n->op == &op ? n : nullptr;
  };
  for (Node& node : m.nodes) {
    if (node.op != &inference::kConvOp && node.op != &inference::kGemmOp) continue;
    int tail = node.out[0];
    if (Node* relu = only_reader(tail, inference::kReluOp)) {
      node.fuse_relu = true;
      relu->op = &inference::kIdentityOp;
      tail = relu->out[0];
    }
    Node* pool = node.op == &inference::kConvOp ? only_reader(tail, inference::kMaxPoolOp) : nullptr;
    if (pool) {
      node.pool_kernel = pool->kernel;
      node.pool_stride = pool->stride;
      node.pool_pad = pool->pad;
      pool->op = &inference::kIdentityOp;
    }
  }
}

// Attention: a Transpose that swaps the last two dims and alone feeds a MatMul's B becomes the
// MatMul's trans_b (no transposed copy of the keys). Then a Concat appending to a graph input (a
// key/value cache) whose output only MatMuls (as B) and graph outputs read may grow that input in
// place (Node::append_in_place, OnnxModel::RunOptions): those readers take strided tensors.
void fuse_attention(Impl& m, size_t slots) {
  const Readers readers(m, slots);
  for (Node& t : m.nodes) {
    if (t.op != &inference::kTransposeOp || t.perm.size() < 2) continue;
    const size_t r = t.perm.size();
    bool swap_last_two = t.perm[r - 2] == static_cast<int64_t>(r - 1) && t.perm[r - 1] == static_cast<int64_t>(r - 2);
    for (size_t k = 0; swap_last_two && k + 2 < r; ++k) swap_last_two = t.perm[k] == static_cast<int64_t>(k);
    const int out = t.out[0];
    Node* mm = swap_last_two ? readers.only(m, out) : nullptr;
    if (!mm || mm->op != &inference::kMatMulOp || mm->in[1] != out || mm->in[0] == out) continue;
    mm->trans_b = true;
    mm->in[1] = t.in[0];
    t.op = nullptr;  // its output is no longer read: dropped below
  }
  std::erase_if(m.nodes, [](const Node& n) { return n.op == nullptr; });
  const Readers after(m, slots);  // the Transposes gone
  const auto& uses = after.uses;
  m.appendable.assign(m.inputs.size(), false);
  for (size_t i = 0; i < m.inputs.size(); ++i) {
    const auto& u = uses[m.input_slots[i]];
    if (u.size() != 1 || u[0].second != 0) continue;
    Node& concat = m.nodes[u[0].first];
    if (concat.op != &inference::kConcatOp || concat.in.size() < 2) continue;
    bool ok = true;
    for (const auto& [n, k] : uses[concat.out[0]]) ok = ok && m.nodes[n].op == &inference::kMatMulOp && k == 1;
    concat.append_in_place = m.appendable[i] = ok;
  }
}

// The constants move to the device; int8 initializers stay behind (only DequantizeLinear reads them).
// Small ones stay on the host as well, for the ops that read values there (OpInputs::host): on a GPU
// a run then copies no shape, axis, index or scalar back from the device. (On the CPU the host copy
// is the constant itself.)
void place_constants(Impl& m, const LoadState& s) {
  m.constants.resize(s.slot.size());
  m.host_constants.resize(s.slot.size());
  for (const auto& [slot, c] : s.host) {
    if (c.data_type == onnx::TensorProto_DataType_INT8) continue;
    const Tensor t = to_tensor(c, s.where + ": constant");
    m.constants[slot] = m.device.is_cpu() ? t : t.to(m.device);
    if (t.numel() <= inference::kHostCopyElems) m.host_constants[slot] = t;
  }
  for (const auto& [name, slot] : s.slot)
    if (m.host_constants[slot].defined()) m.host_constant_names.push_back(name);
  std::sort(m.host_constant_names.begin(), m.host_constant_names.end());
  for (const Node& node : m.nodes)
    for (int slot : node.in)
      DTRAIN_CHECK(slot < 0 || m.constants[slot].defined() || !s.host.count(slot), node.label,
                   ": reads an INT8 initializer directly (only DequantizeLinear may)");
}

// CPU Convs with a constant W take the direct convolution where it is faster than im2col + GEMM:
// AVX-512, stride 1, and at least 64 taps per output (c k^2; with fewer, as in an image model's
// first layer, the scatter of each block to NCHW costs more than it saves).
void pack_direct_convs(Impl& m) {
  const char* direct_env = std::getenv("DTRAIN_DIRECT_CONV");  // "0": im2col + GEMM everywhere
  if (!m.device.is_cpu() || (direct_env && std::string(direct_env) == "0")) return;
  for (Node& node : m.nodes) {
    if (node.op != &inference::kConvOp || node.in.size() < 2) continue;
    const Tensor& w = m.constants[node.in[1]];
    if (!w.defined() || w.dtype() != DType::f32 || w.ndim() != 4 || w.dim(2) != w.dim(3)) continue;
    if (!inference::conv2d_direct_available(w.dim(0), node.stride) || w.dim(1) * w.dim(2) * w.dim(3) < 64) continue;
    node.direct_w = Tensor::empty(w.shape(), DType::f32, m.device);
    inference::conv2d_direct_pack(w.data<float>(), node.direct_w.data<float>(), w.dim(0), w.dim(1), w.dim(2));
  }
}

// Each computed value is dropped after its last reader, unless it is a graph output.
void plan_lifetimes(Impl& m) {
  std::vector<int> last_reader(m.constants.size(), -1);
  for (size_t i = 0; i < m.nodes.size(); ++i)
    for (int s : m.nodes[i].in)
      if (s >= 0) last_reader[s] = static_cast<int>(i);
  for (int s : m.output_slots) last_reader[s] = -1;
  m.release_after.resize(m.nodes.size());
  for (size_t s = 0; s < last_reader.size(); ++s)
    if (last_reader[s] >= 0 && !m.constants[s].defined())
      m.release_after[last_reader[s]].push_back(static_cast<int>(s));
}

}  // namespace

OnnxModel OnnxModel::load(const std::string& path, Device device) {
  std::ifstream in(path, std::ios::binary);
  DTRAIN_CHECK(in.good(), "ONNX model ", path, ": cannot open the file");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  DTRAIN_CHECK(!in.bad(), "ONNX model ", path, ": read error");
  return from_bytes(bytes.str(), device, path);
}

// Parse, read the graph (folding constant DequantizeLinears), fuse, place the constants, pack the
// CPU convolutions, and plan when each value is released.
OnnxModel OnnxModel::from_bytes(const std::string& bytes, Device device, const std::string& source) {
  LoadState state;
  state.where = "ONNX model " + source;
  onnx::ModelProto proto;
  DTRAIN_CHECK(!bytes.empty(), state.where, ": the file is empty");
  DTRAIN_CHECK(proto.ParseFromString(bytes), state.where, ": not a valid ONNX file (protobuf parse failed)");
  auto impl = std::make_shared<Impl>();
  impl->source = source;
  impl->device = device;
  read_header(proto, *impl, state.where);
  read_initializers_and_inputs(proto.graph(), *impl, state);
  read_nodes_and_outputs(proto.graph(), *impl, state);
  fuse(*impl, state.slot.size());
  fuse_attention(*impl, state.slot.size());
  place_constants(*impl, state);
  pack_direct_convs(*impl);
  plan_lifetimes(*impl);
  return OnnxModel(std::move(impl));
}

const std::vector<TensorInfo>& OnnxModel::inputs() const { return impl_->inputs; }
const std::vector<TensorInfo>& OnnxModel::outputs() const { return impl_->outputs; }
const std::map<std::string, std::string>& OnnxModel::metadata() const { return impl_->metadata; }
Device OnnxModel::device() const { return impl_->device; }
const std::vector<std::string>& OnnxModel::host_constants() const { return impl_->host_constant_names; }
int64_t OnnxModel::opset() const { return impl_->opset; }

bool OnnxModel::appends_in_place(size_t input) const {
  return input < impl_->appendable.size() && impl_->appendable[input] && impl_->device.is_cpu();
}

std::vector<Tensor> OnnxModel::run(const std::vector<Tensor>& inputs) const { return run(inputs, RunOptions{}); }

std::vector<Tensor> OnnxModel::run(const std::vector<Tensor>& inputs, const RunOptions& options) const {
  const Impl& m = *impl_;
  // Kernels launch on the calling thread's current device (serve workers, eval): make it the model's.
  if (m.device.is_cuda()) gpu::set_device(m.device.index);
  const std::string where = "ONNX model " + m.source;
  DTRAIN_CHECK(inputs.size() == m.inputs.size(), where, ": run got ", inputs.size(), " inputs, the model takes ",
               m.inputs.size());
  std::vector<Tensor> values = m.constants;
  std::vector<const Tensor*> host(values.size(), nullptr);  // OpInputs::host's copies, by slot
  std::vector<Tensor> contiguous(inputs.size());            // strided inputs that do not grow in place
  for (size_t s = 0; s < host.size(); ++s)
    if (m.host_constants[s].defined()) host[s] = &m.host_constants[s];
  for (size_t i = 0; i < inputs.size(); ++i) {
    const TensorInfo& info = m.inputs[i];
    const Tensor& t = inputs[i];
    bool ok = t.defined() && t.dtype() == info.dtype && t.ndim() == static_cast<int>(info.shape.size());
    // A dynamic dim may be empty (a key/value cache of no positions yet), except the batch.
    for (int k = 0; ok && k < t.ndim(); ++k) ok = info.shape[k] < 0 ? t.dim(k) >= (k == 0) : t.dim(k) == info.shape[k];
    DTRAIN_CHECK(ok, where, ": input '", info.name, "' expects ", inference::onnx_type_name(info.dtype), " ",
                 shape_str(info.shape), " (-1: any size; the first dim >= 1), got ",
                 t.defined() ? inference::onnx_type_name(t.dtype()) + " " + t.shape().str() : std::string("nothing"));
    const bool strided_ok = i < options.append_in_place.size() && options.append_in_place[i];
    DTRAIN_CHECK(t.is_contiguous() || (strided_ok && t.device().is_cpu()), where, ": input '", info.name,
                 "' must be contiguous (a strided view only on the host, as a RunOptions::append_in_place input)");
    const Tensor& x = t.is_contiguous() || appends_in_place(i) ? t : (contiguous[i] = inference::contiguous_host(t));
    values[m.input_slots[i]] = x.device() == m.device ? x : x.to(m.device);
    if (x.device().is_cpu()) host[m.input_slots[i]] = &x;  // ids, masks: read on the host without a copy back
  }
  inference::OpInputs args;
  for (size_t i = 0; i < m.nodes.size(); ++i) {
    const Node& node = m.nodes[i];
    args.clear();
    for (int s : node.in) args.push_back(s < 0 ? nullptr : &values[s], s < 0 ? nullptr : host[s]);
    values[node.out[0]] = node.op->run(node, args, m.device);
    for (int s : m.release_after[i]) values[s] = Tensor();
  }
  std::vector<Tensor> out;
  for (int s : m.output_slots) out.push_back(values[s]);
  return out;
}

}  // namespace dtrain
