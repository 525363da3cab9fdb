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
#include "inference/conv_direct.h"

namespace dtrain {

namespace {

enum class Op { Cast, Mul, Add, Erf, Relu, Gemm, MatMul, Conv, MaxPool, Flatten, LayerNorm, Gather, Softmax, ArgMax,
                Identity };

const std::unordered_map<std::string, Op> kOps = {
    {"Cast", Op::Cast},       {"Mul", Op::Mul},         {"Add", Op::Add},
    {"Erf", Op::Erf},         {"Relu", Op::Relu},       {"Gemm", Op::Gemm},
    {"MatMul", Op::MatMul},   {"Conv", Op::Conv},       {"MaxPool", Op::MaxPool},
    {"Flatten", Op::Flatten}, {"LayerNormalization", Op::LayerNorm}, {"Gather", Op::Gather},
    {"Softmax", Op::Softmax}, {"ArgMax", Op::ArgMax},   {"Identity", Op::Identity}};

struct Node {
  Op op = Op::Identity;
  std::string label;         // "Gemm node '3/Gemm'" for messages
  std::vector<int> in, out;  // value slots; -1 for an omitted optional input
  int64_t axis = 0;
  bool trans_a = false, trans_b = false, keepdims = true;
  float alpha = 1.0f, beta = 1.0f, epsilon = 1e-5f;
  int64_t kernel = 0, stride = 1, pad = 0;  // Conv (kernel 0: from the weight) and MaxPool
  bool fuse_relu = false;  // Conv, Gemm: apply the Relu that alone reads the output, in place
  int64_t pool_kernel = 0, pool_stride = 1, pool_pad = 0;  // Conv: a MaxPool fused after it (0: none)
  Tensor direct_w;  // Conv on the CPU: W packed for inference::conv2d_direct at load (undefined: im2col + GEMM)
};

DType dtype_from_onnx(int t, const std::string& what) {
  switch (t) {
    case onnx::TensorProto_DataType_FLOAT: return DType::f32;
    case onnx::TensorProto_DataType_UINT8: return DType::u8;
    case onnx::TensorProto_DataType_INT64: return DType::i64;
    case onnx::TensorProto_DataType_INT32: return DType::i32;
    default: fail(what, ": element type ", onnx::TensorProto_DataType_Name(t), " is not supported (FLOAT, UINT8, INT64, INT32)");
  }
}

// The ONNX name of a tensor element type ("FLOAT", "UINT8", "INT64", ...), for messages.
std::string onnx_type_name(DType t) {
  switch (t) {
    case DType::f32: return "FLOAT";
    case DType::bf16: return "BFLOAT16";
    case DType::i32: return "INT32";
    case DType::i64: return "INT64";
    case DType::u8: return "UINT8";
  }
  return "?";
}

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
      if (t.raw_data().empty()) out.assign(reinterpret_cast<const char*>(t.float_data().data()), t.float_data_size() * 4);
      break;
    case onnx::TensorProto_DataType_INT64:
      elem = 8;
      if (t.raw_data().empty()) out.assign(reinterpret_cast<const char*>(t.int64_data().data()), t.int64_data_size() * 8);
      break;
    case onnx::TensorProto_DataType_INT32:
      elem = 4;
      if (t.raw_data().empty()) out.assign(reinterpret_cast<const char*>(t.int32_data().data()), t.int32_data_size() * 4);
      break;
    case onnx::TensorProto_DataType_INT8:
    case onnx::TensorProto_DataType_UINT8:
      elem = 1;
      if (t.raw_data().empty())
        for (int32_t v : t.int32_data()) out.push_back(static_cast<char>(v));
      break;
    default:
      fail(what, ": element type ", onnx::TensorProto_DataType_Name(t.data_type()), " is not supported");
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
  const DType dt = dtype_from_onnx(c.data_type, what);
  Tensor t = Tensor::empty(shape, dt, Device::cpu());
  if (!c.bytes.empty()) std::memcpy(t.raw_data(), c.bytes.data(), c.bytes.size());
  return t;
}

// y = (x - zero_point) * scale, per tensor or per slice along `axis`.
HostConstant dequantize(const HostConstant& x, const HostConstant& scale, const HostConstant* zp, int64_t axis,
                        const std::string& what) {
  DTRAIN_CHECK(x.data_type == onnx::TensorProto_DataType_INT8 || x.data_type == onnx::TensorProto_DataType_UINT8,
               what, ": x must be INT8 or UINT8");
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
    return is_signed ? static_cast<int32_t>(static_cast<int8_t>(b[i])) : static_cast<int32_t>(static_cast<uint8_t>(b[i]));
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

const onnx::AttributeProto* find_attr(const onnx::NodeProto& n, const char* name) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}
int64_t attr_int(const onnx::NodeProto& n, const char* name, int64_t fallback) {
  const auto* a = find_attr(n, name);
  return a ? a->i() : fallback;
}
float attr_float(const onnx::NodeProto& n, const char* name, float fallback) {
  const auto* a = find_attr(n, name);
  return a ? a->f() : fallback;
}
std::vector<int64_t> attr_ints(const onnx::NodeProto& n, const char* name) {
  const auto* a = find_attr(n, name);
  return a ? std::vector<int64_t>(a->ints().begin(), a->ints().end()) : std::vector<int64_t>{};
}

// All entries equal (an empty list gives `fallback`).
int64_t uniform(const std::vector<int64_t>& v, int64_t fallback, const std::string& what) {
  if (v.empty()) return fallback;
  for (int64_t x : v) DTRAIN_CHECK(x == v[0], what, " (all entries must be equal, got a mix)");
  return v[0];
}

// Reads node attributes into `node`, rejecting the ones the kernels do not implement.
void parse_attributes(const onnx::NodeProto& n, Node& node) {
  const std::string& w = node.label;
  for (const char* unsupported : {"auto_pad"}) {
    const auto* a = find_attr(n, unsupported);
    DTRAIN_CHECK(!a || a->s() == "NOTSET", w, ": auto_pad is not supported (give explicit pads)");
  }
  switch (node.op) {
    case Op::Cast:
      DTRAIN_CHECK(attr_int(n, "to", 0) == onnx::TensorProto_DataType_FLOAT, w, ": only Cast to FLOAT is supported");
      break;
    case Op::Gemm:
      node.trans_a = attr_int(n, "transA", 0) != 0;
      node.trans_b = attr_int(n, "transB", 0) != 0;
      node.alpha = attr_float(n, "alpha", 1.0f);
      node.beta = attr_float(n, "beta", 1.0f);
      DTRAIN_CHECK(node.beta == 1.0f, w, ": beta other than 1 is not supported");
      break;
    case Op::Conv:
    case Op::MaxPool: {
      const auto ks = attr_ints(n, "kernel_shape");
      node.kernel = uniform(ks, 0, w + ": kernel_shape must be square");
      DTRAIN_CHECK(node.op == Op::Conv || node.kernel > 0, w, ": kernel_shape is required");
      node.stride = uniform(attr_ints(n, "strides"), 1, w + ": strides must be equal");
      node.pad = uniform(attr_ints(n, "pads"), 0, w + ": pads must be equal on every side");
      DTRAIN_CHECK(uniform(attr_ints(n, "dilations"), 1, w + ": dilations") == 1, w, ": dilations are not supported");
      DTRAIN_CHECK(attr_int(n, "group", 1) == 1, w, ": grouped convolution is not supported");
      DTRAIN_CHECK(attr_int(n, "ceil_mode", 0) == 0, w, ": ceil_mode is not supported");
      DTRAIN_CHECK(attr_int(n, "storage_order", 0) == 0, w, ": storage_order is not supported");
      DTRAIN_CHECK(ks.empty() || ks.size() == 2, w, ": only 2-D kernels are supported");
      DTRAIN_CHECK(node.op != Op::MaxPool || node.out.size() == 1, w, ": the Indices output is not supported");
      break;
    }
    case Op::Flatten:
      node.axis = attr_int(n, "axis", 1);
      break;
    case Op::LayerNorm:
      node.axis = attr_int(n, "axis", -1);
      node.epsilon = attr_float(n, "epsilon", 1e-5f);
      DTRAIN_CHECK(node.out.size() == 1, w, ": the Mean and InvStdDev outputs are not supported");
      break;
    case Op::Gather:
      node.axis = attr_int(n, "axis", 0);
      DTRAIN_CHECK(node.axis == 0, w, ": only axis 0 is supported");
      break;
    case Op::Softmax:
      node.axis = attr_int(n, "axis", -1);
      break;
    case Op::ArgMax:
      node.axis = attr_int(n, "axis", 0);
      node.keepdims = attr_int(n, "keepdims", 1) != 0;
      DTRAIN_CHECK(attr_int(n, "select_last_index", 0) == 0, w, ": select_last_index is not supported");
      break;
    default:
      break;
  }
}

// Input counts each op accepts (optional inputs may be omitted or given as "").
void check_arity(const Node& node, size_t inputs) {
  size_t lo = 1, hi = 1;
  switch (node.op) {
    case Op::Mul: case Op::Add: case Op::MatMul: case Op::Gather: lo = hi = 2; break;
    case Op::Gemm: case Op::Conv: lo = 2; hi = 3; break;
    case Op::LayerNorm: lo = 2; hi = 3; break;
    default: break;
  }
  DTRAIN_CHECK(inputs >= lo && inputs <= hi, node.label, ": has ", inputs, " inputs, expected ", lo,
               lo == hi ? "" : " to " + std::to_string(hi));
}

int64_t last_axis(int64_t axis, int rank, const std::string& what) {
  const int64_t a = axis < 0 ? axis + rank : axis;
  DTRAIN_CHECK(a == rank - 1, what, ": only the last axis is supported (axis ", axis, " of a rank-", rank, " input)");
  return a;
}

void check_f32(const Tensor& t, const std::string& what, const char* input) {
  DTRAIN_CHECK(t.dtype() == DType::f32, what, ": input ", input, " must be FLOAT, got ", dtype_name(t.dtype()));
}

// A scalar's value on the host (a one-element copy for device tensors).
float scalar_value(const Tensor& t) { return t.to_vector<float>()[0]; }

Tensor run_binary(const Node& node, const Tensor& a, const Tensor& b, Device d) {
  check_f32(a, node.label, "A");
  check_f32(b, node.label, "B");
  const bool add = node.op == Op::Add;
  if (a.shape() == b.shape()) {
    Tensor y = Tensor::empty(a.shape(), DType::f32, d);
    if (add)
      DTRAIN_DISPATCH(d, add, a.data<float>(), b.data<float>(), y.data<float>(), a.numel());
    else
      DTRAIN_DISPATCH(d, mul, a.data<float>(), b.data<float>(), y.data<float>(), a.numel());
    return y;
  }
  const bool b_small = b.numel() <= a.numel();
  const Tensor& big = b_small ? a : b;
  const Tensor& small = b_small ? b : a;
  if (small.numel() == 1) {
    const float s = scalar_value(small);
    Tensor y = Tensor::empty(big.shape(), DType::f32, d);
    DTRAIN_DISPATCH(d, affine, big.data<float>(), y.data<float>(), big.numel(), add ? 1.0f : s, add ? s : 0.0f);
    return y;
  }
  if (add && small.ndim() == 1 && big.ndim() >= 1 && small.dim(0) == big.dim(-1)) {  // bias over the last dim
    Tensor y = big.clone();
    DTRAIN_DISPATCH(d, add_bias_rows, y.data<float>(), small.data<float>(), big.numel() / small.dim(0), small.dim(0));
    return y;
  }
  fail(node.label, ": broadcasting ", a.shape().str(), " with ", b.shape().str(),
       " is not supported (equal shapes, a scalar, or for Add a vector over the last dim)");
}

Tensor run_gemm(const Node& node, const Tensor& a, const Tensor& b, const Tensor* c, Device d) {
  check_f32(a, node.label, "A");
  check_f32(b, node.label, "B");
  DTRAIN_CHECK(a.ndim() == 2 && b.ndim() == 2, node.label, ": A and B must be 2-D, got ", a.shape().str(), " and ",
               b.shape().str());
  const int64_t m = node.trans_a ? a.dim(1) : a.dim(0), k = node.trans_a ? a.dim(0) : a.dim(1);
  const int64_t kb = node.trans_b ? b.dim(1) : b.dim(0), n = node.trans_b ? b.dim(0) : b.dim(1);
  DTRAIN_CHECK(k == kb, node.label, ": inner dims differ: A ", a.shape().str(), " B ", b.shape().str());
  Tensor y = Tensor::empty(Shape{m, n}, DType::f32, d);
  DTRAIN_DISPATCH(d, gemm, node.trans_a, node.trans_b, m, n, k, node.alpha, a.data<float>(), a.dim(1), b.data<float>(),
                  b.dim(1), 0.0f, y.data<float>(), n);
  if (c) {
    check_f32(*c, node.label, "C");
    if (c->numel() == n && (c->ndim() == 1 || (c->ndim() == 2 && c->dim(0) == 1))) {
      DTRAIN_DISPATCH(d, add_bias_rows, y.data<float>(), c->data<float>(), m, n);
    } else if (c->numel() == 1) {
      DTRAIN_DISPATCH(d, affine, y.data<float>(), y.data<float>(), y.numel(), 1.0f, scalar_value(*c));
    } else if (c->shape() == y.shape()) {
      DTRAIN_DISPATCH(d, add, y.data<float>(), c->data<float>(), y.data<float>(), y.numel());
    } else {
      fail(node.label, ": C of shape ", c->shape().str(), " does not broadcast to ", y.shape().str());
    }
  }
  if (node.fuse_relu) DTRAIN_DISPATCH(d, relu_forward, y.data<float>(), y.data<float>(), y.numel());
  return y;
}

// A [..., K] x B [K, N] as one row-major GEMM over all leading dims.
Tensor run_matmul(const Node& node, const Tensor& a, const Tensor& b, Device d) {
  check_f32(a, node.label, "A");
  check_f32(b, node.label, "B");
  DTRAIN_CHECK(a.ndim() >= 2 && b.ndim() == 2, node.label, ": supports A [..., K] x B [K, N], got ",
               a.shape().str(), " and ", b.shape().str());
  const int64_t k = b.dim(0), n = b.dim(1);
  DTRAIN_CHECK(a.dim(-1) == k, node.label, ": inner dims differ: A ", a.shape().str(), " B ", b.shape().str());
  Shape ys = a.shape();
  ys[ys.size() - 1] = n;
  Tensor y = Tensor::empty(ys, DType::f32, d);
  DTRAIN_DISPATCH(d, gemm, false, false, a.numel() / k, n, k, 1.0f, a.data<float>(), k, b.data<float>(), n, 0.0f,
                  y.data<float>(), n);
  return y;
}

// MaxPool output height and width for an [.., h, w] input (the window must fit the padded input).
std::pair<int64_t, int64_t> pool_dims(const std::string& label, const Shape& x, int64_t k, int64_t s, int64_t p) {
  const int64_t h = x[x.size() - 2], w = x[x.size() - 1];
  DTRAIN_CHECK(h + 2 * p >= k && w + 2 * p >= k, label, ": input ", x.str(), " is smaller than the pooling window");
  DTRAIN_CHECK(h * w <= INT32_MAX, label, ": input plane too large");
  return {(h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1};
}

// On the CPU a few samples at a time, with inference::conv2d_direct where the load packed W for it,
// else im2col + GEMM, so that their columns and output stay in cache while a fused MaxPool writes
// them to Y in NCHW; the bias and a fused Relu follow on Y's (pooled) planes. On a GPU im2col +
// GEMM in chunks of samples (fewer, larger GEMMs), reordered from [M, samples*OH*OW] to NCHW.
Tensor run_conv(const Node& node, const Tensor& x, const Tensor& w, const Tensor* b, Device d) {
  check_f32(x, node.label, "X");
  check_f32(w, node.label, "W");
  DTRAIN_CHECK(x.ndim() == 4 && w.ndim() == 4 && w.dim(2) == w.dim(3) && x.dim(1) == w.dim(1), node.label,
               ": expects X [N, C, H, W] and a square W [M, C, k, k], got ", x.shape().str(), " and ", w.shape().str());
  const int64_t k = w.dim(2), s = node.stride, p = node.pad;
  DTRAIN_CHECK(node.kernel == 0 || node.kernel == k, node.label, ": kernel_shape ", node.kernel,
               " differs from the weight's ", k);
  const int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), wd = x.dim(3), oc = w.dim(0);
  DTRAIN_CHECK(h + 2 * p >= k && wd + 2 * p >= k, node.label, ": input ", x.shape().str(), " is smaller than the kernel");
  const int64_t oh = (h + 2 * p - k) / s + 1, ow = (wd + 2 * p - k) / s + 1, plane = oh * ow, ck = c * k * k;
  if (b) DTRAIN_CHECK(b->ndim() == 1 && b->dim(0) == oc, node.label, ": B must be [", oc, "], got ", b->shape().str());
  const bool pool = node.pool_kernel > 0;
  int64_t ph = oh, pw = ow;
  if (pool) std::tie(ph, pw) = pool_dims(node.label + " (its MaxPool)", Shape{oh, ow}, node.pool_kernel,
                                          node.pool_stride, node.pool_pad);
  if (d.is_cpu()) {
    // Samples per group: at most ~512 KiB of columns and ~256 KiB of GEMM output, which the pool
    // then reads back (a first layer has few columns but many output channels).
    constexpr int64_t kGroupCols = int64_t{1} << 17, kGroupOut = int64_t{1} << 16;  // floats
    const int64_t group = std::clamp<int64_t>(std::min(kGroupCols / std::max<int64_t>(1, ck * plane),
                                                       kGroupOut / std::max<int64_t>(1, oc * plane)),
                                              1, std::max<int64_t>(1, n));
    Tensor y = Tensor::empty(Shape{n, oc, ph, pw}, DType::f32, d);
    // The direct convolution (weights packed at load) writes [samples, oc, plane]; im2col + GEMM
    // writes [oc, samples, plane].
    const bool direct = node.direct_w.defined();
    Tensor cols = Tensor::empty(direct ? Shape{c * (h + 2 * p) * (wd + 2 * p)} : Shape{ck, group * plane}, DType::f32, d);
    Tensor yg = Tensor::empty(Shape{oc, group * plane}, DType::f32, d);
    const float* bias = b ? b->data<float>() : nullptr;
    for (int64_t first = 0; first < n; first += group) {
      const int64_t g = std::min(group, n - first), np = g * plane;
      const int64_t channel_step = direct ? plane : np, sample_step = direct ? oc * plane : plane;
      float* yc = yg.data<float>();
      if (direct) {
        for (int64_t i = 0; i < g; ++i)
          inference::conv2d_direct(x.data<float>() + (first + i) * c * h * wd, node.direct_w.data<float>(),
                             yc + i * oc * plane, cols.data<float>(), c, h, wd, oc, k, p);
      } else {
        cpu::im2col(x.data<float>() + first * c * h * wd, cols.data<float>(), g, c, h, wd, k, k, s, p, oh, ow);
        cpu::gemm(false, false, oc, np, ck, 1.0f, w.data<float>(), ck, cols.data<float>(), np, 0.0f, yc, np);
      }
      // The bias and the Relu commute with max (rounding is monotonic): with a pool they run on the
      // pooled planes, a quarter of the values, with the same results.
      for (int64_t i = 0; i < g; ++i) {
        float* out = y.data<float>() + (first + i) * oc * ph * pw;
        for (int64_t m = 0; m < oc; ++m) {
          const float* plane_in = yc + m * channel_step + i * sample_step;
          float* plane_out = out + m * ph * pw;
          if (pool)
            cpu::maxpool2d_forward(plane_in, plane_out, nullptr, 1, oh, ow, node.pool_kernel, node.pool_stride,
                                   node.pool_pad, ph, pw);
          else
            std::copy_n(plane_in, plane, plane_out);
        }
        if (bias) cpu::add_bias_channels(out, bias, 1, oc, ph * pw);
        if (node.fuse_relu) cpu::relu_forward(out, out, oc * ph * pw);
      }
    }
    return y;
  }
  Tensor y = Tensor::empty(Shape{n, oc, oh, ow}, DType::f32, d);
  constexpr int64_t kMaxColumnElems = int64_t{1} << 24;  // 64 MiB of f32 columns per chunk
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(n, kMaxColumnElems / std::max<int64_t>(1, ck * plane)));
  Tensor cols = Tensor::empty(Shape{ck, chunk * plane}, DType::f32, d);
  Tensor y_cn = Tensor::empty(Shape{oc, chunk * plane}, DType::f32, d);
  for (int64_t first = 0; first < n; first += chunk) {
    const int64_t m = std::min(chunk, n - first), np = m * plane;
    DTRAIN_DISPATCH(d, im2col, x.data<float>() + first * c * h * wd, cols.data<float>(), m, c, h, wd, k, k, s, p, oh, ow);
    DTRAIN_DISPATCH(d, gemm, false, false, oc, np, ck, 1.0f, w.data<float>(), ck, cols.data<float>(), np, 0.0f,
                    y_cn.data<float>(), np);
    DTRAIN_DISPATCH(d, swap_01, y_cn.data<float>(), y.data<float>() + first * oc * plane, oc, m, plane);
  }
  if (b) DTRAIN_DISPATCH(d, add_bias_channels, y.data<float>(), b->data<float>(), n, oc, plane);
  if (node.fuse_relu) DTRAIN_DISPATCH(d, relu_forward, y.data<float>(), y.data<float>(), y.numel());
  if (!pool) return y;
  Tensor pooled = Tensor::empty(Shape{n, oc, ph, pw}, DType::f32, d);
  DTRAIN_DISPATCH(d, maxpool2d_forward, y.data<float>(), pooled.data<float>(), nullptr, n * oc, oh, ow, node.pool_kernel,
                  node.pool_stride, node.pool_pad, ph, pw);
  return pooled;
}

Tensor run_maxpool(const Node& node, const Tensor& x, Device d) {
  check_f32(x, node.label, "X");
  DTRAIN_CHECK(x.ndim() == 4, node.label, ": expects X [N, C, H, W], got ", x.shape().str());
  const auto [oh, ow] = pool_dims(node.label, x.shape(), node.kernel, node.stride, node.pad);
  Tensor y = Tensor::empty(Shape{x.dim(0), x.dim(1), oh, ow}, DType::f32, d);
  DTRAIN_DISPATCH(d, maxpool2d_forward, x.data<float>(), y.data<float>(), nullptr, x.dim(0) * x.dim(1), x.dim(2),
                  x.dim(3), node.kernel, node.stride, node.pad, oh, ow);
  return y;
}

Tensor run_layernorm(const Node& node, const Tensor& x, const Tensor& scale, const Tensor* bias, Device d) {
  check_f32(x, node.label, "X");
  check_f32(scale, node.label, "Scale");
  last_axis(node.axis, x.ndim(), node.label);
  const int64_t cols = x.dim(-1), rows = x.numel() / cols;
  DTRAIN_CHECK(scale.numel() == cols && (!bias || bias->numel() == cols), node.label, ": Scale and B must have ",
               cols, " elements");
  Tensor zeros;
  if (!bias) zeros = Tensor::zeros(Shape{cols}, DType::f32, d);
  Tensor y = Tensor::empty(x.shape(), DType::f32, d);
  Tensor mean = Tensor::empty(Shape{rows}, DType::f32, d), rstd = Tensor::empty(Shape{rows}, DType::f32, d);
  DTRAIN_DISPATCH(d, layernorm_forward, x.data<float>(), scale.data<float>(),
                  bias ? bias->data<float>() : zeros.data<float>(), y.data<float>(), mean.data<float>(),
                  rstd.data<float>(), rows, cols, node.epsilon);
  return y;
}

Tensor run_gather(const Node& node, const Tensor& data, const Tensor& indices, Device d) {
  check_f32(data, node.label, "data");
  DTRAIN_CHECK(indices.dtype() == DType::i64, node.label, ": indices must be INT64, got ", dtype_name(indices.dtype()));
  DTRAIN_CHECK(data.ndim() >= 1, node.label, ": data must have a dim to gather from");
  const int64_t rows = data.dim(0), dim = data.numel() / std::max<int64_t>(1, rows);
  // Ids index memory, so they are range-checked on the host; negative ids count from the end.
  std::vector<int64_t> ids = indices.to_vector<int64_t>();
  bool wrapped = false;
  for (size_t i = 0; i < ids.size(); ++i) {
    DTRAIN_CHECK(ids[i] >= -rows && ids[i] < rows, node.label, ": index ", ids[i], " at position ", i,
                 " is out of range [", -rows, ", ", rows, ")");
    if (ids[i] < 0) {
      ids[i] += rows;
      wrapped = true;
    }
  }
  const Tensor idx = wrapped ? Tensor::from_vector(ids, indices.shape(), d) : indices;
  Shape ys = indices.shape();
  for (int i = 1; i < data.ndim(); ++i) {
    DTRAIN_CHECK(ys.size() < Shape::kMaxDims, node.label, ": output has too many dims");
    ys.push_back(data.dim(i));
  }
  Tensor y = Tensor::empty(ys, DType::f32, d);
  DTRAIN_DISPATCH(d, embedding_forward, idx.data<int64_t>(), data.data<float>(), y.data<float>(), idx.numel(), dim);
  return y;
}

Tensor run_node(const Node& node, const std::vector<const Tensor*>& in, Device d) {
  auto opt = [&](size_t i) -> const Tensor* { return i < in.size() ? in[i] : nullptr; };
  const Tensor& x = *in[0];
  switch (node.op) {
    case Op::Identity: return x;
    case Op::Cast: {
      if (x.dtype() == DType::f32) return x;
      DTRAIN_CHECK(x.dtype() == DType::u8, node.label, ": Cast from ", dtype_name(x.dtype()),
                   " to FLOAT is not supported");
      Tensor y = Tensor::empty(x.shape(), DType::f32, d);
      DTRAIN_DISPATCH(d, u8_to_f32, x.data<uint8_t>(), y.data<float>(), x.numel(), 1.0f, 0.0f);
      return y;
    }
    case Op::Mul:
    case Op::Add: return run_binary(node, x, *in[1], d);
    case Op::Erf:
    case Op::Relu: {
      check_f32(x, node.label, "X");
      Tensor y = Tensor::empty(x.shape(), DType::f32, d);
      if (node.op == Op::Erf)
        DTRAIN_DISPATCH(d, erf_forward, x.data<float>(), y.data<float>(), x.numel());
      else
        DTRAIN_DISPATCH(d, relu_forward, x.data<float>(), y.data<float>(), x.numel());
      return y;
    }
    case Op::Gemm: return run_gemm(node, x, *in[1], opt(2), d);
    case Op::MatMul: return run_matmul(node, x, *in[1], d);
    case Op::Conv: return run_conv(node, x, *in[1], opt(2), d);
    case Op::MaxPool: return run_maxpool(node, x, d);
    case Op::Flatten: {
      const int64_t axis = node.axis < 0 ? node.axis + x.ndim() : node.axis;
      DTRAIN_CHECK(axis >= 0 && axis <= x.ndim(), node.label, ": axis ", node.axis, " for a rank-", x.ndim(), " input");
      int64_t outer = 1;
      for (int i = 0; i < axis; ++i) outer *= x.dim(i);
      return x.view(Shape{outer, outer ? x.numel() / outer : 0});
    }
    case Op::LayerNorm: return run_layernorm(node, x, *in[1], opt(2), d);
    case Op::Gather: return run_gather(node, x, *in[1], d);
    case Op::Softmax: {
      check_f32(x, node.label, "input");
      last_axis(node.axis, x.ndim(), node.label);
      Tensor y = Tensor::empty(x.shape(), DType::f32, d);
      DTRAIN_DISPATCH(d, softmax_rows, x.data<float>(), y.data<float>(), x.numel() / x.dim(-1), x.dim(-1));
      return y;
    }
    case Op::ArgMax: {
      check_f32(x, node.label, "data");
      last_axis(node.axis, x.ndim(), node.label);
      Shape ys;
      for (int i = 0; i + 1 < x.ndim(); ++i) ys.push_back(x.dim(i));
      if (node.keepdims) ys.push_back(1);
      Tensor y = Tensor::empty(ys, DType::i64, d);
      DTRAIN_DISPATCH(d, argmax_rows, x.data<float>(), x.numel() / x.dim(-1), x.dim(-1), y.data<int64_t>());
      return y;
    }
  }
  fail(node.label, ": not implemented");
}

}  // namespace

struct OnnxModel::Impl {
  std::string source;
  Device device;
  int64_t opset = 0;
  std::vector<TensorInfo> inputs, outputs;
  std::vector<int> input_slots, output_slots;
  std::map<std::string, std::string> metadata;
  std::vector<Tensor> constants;  // by slot; undefined for computed values
  std::vector<Node> nodes;
  std::vector<std::vector<int>> release_after;  // per node: slots whose last reader it is
};

OnnxModel OnnxModel::load(const std::string& path, Device device) {
  std::ifstream in(path, std::ios::binary);
  DTRAIN_CHECK(in.good(), "ONNX model ", path, ": cannot open the file");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  DTRAIN_CHECK(!in.bad(), "ONNX model ", path, ": read error");
  return from_bytes(bytes.str(), device, path);
}

OnnxModel OnnxModel::from_bytes(const std::string& bytes, Device device, const std::string& source) {
  const std::string where = "ONNX model " + source;
  onnx::ModelProto proto;
  DTRAIN_CHECK(proto.ParseFromString(bytes), where, ": not a valid ONNX file (protobuf parse failed)");
  auto impl = std::make_shared<Impl>();
  impl->source = source;
  impl->device = device;
  for (const auto& o : proto.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") impl->opset = o.version();
  DTRAIN_CHECK(impl->opset >= 13, where, ": opset ", impl->opset, " is too old (the engine supports 13 and later)");
  for (const auto& p : proto.metadata_props()) impl->metadata[p.key()] = p.value();
  const onnx::GraphProto& g = proto.graph();

  std::unordered_map<std::string, int> slot;
  auto new_slot = [&](const std::string& name, const std::string& what) {
    DTRAIN_CHECK(!slot.count(name), where, ": value '", name, "' (", what, ") is defined twice");
    const int id = static_cast<int>(slot.size());
    slot[name] = id;
    return id;
  };
  std::unordered_map<int, HostConstant> host;  // constants by slot, until moved to the device
  for (const auto& t : g.initializer()) {
    const std::string what = where + ": initializer '" + t.name() + "'";
    host[new_slot(t.name(), "initializer")] =
        HostConstant{t.data_type(), std::vector<int64_t>(t.dims().begin(), t.dims().end()), tensor_bytes(t, what)};
  }
  for (const auto& vi : g.input()) {
    if (slot.count(vi.name()) && host.count(slot[vi.name()])) continue;  // an initializer listed as an input
    const std::string what = where + ": input '" + vi.name() + "'";
    impl->inputs.push_back({vi.name(), dtype_from_onnx(vi.type().tensor_type().elem_type(), what), shape_of(vi, what)});
    impl->input_slots.push_back(new_slot(vi.name(), "graph input"));
  }
  DTRAIN_CHECK(!impl->inputs.empty(), where, ": the graph has no inputs");

  for (int i = 0; i < g.node_size(); ++i) {
    const onnx::NodeProto& n = g.node(i);
    Node node;
    node.label = n.op_type() + " node '" + (n.name().empty() ? "#" + std::to_string(i) : n.name()) + "'";
    DTRAIN_CHECK(n.domain().empty() || n.domain() == "ai.onnx", where, ": ", node.label, " is in domain '",
                 n.domain(), "', which the engine does not support");
    for (const auto& name : n.input()) {
      if (name.empty()) {
        node.in.push_back(-1);
        continue;
      }
      auto it = slot.find(name);
      DTRAIN_CHECK(it != slot.end(), where, ": ", node.label, " reads '", name,
                   "', which no earlier node, input or initializer defines (the graph must be topologically sorted)");
      node.in.push_back(it->second);
    }
    while (!node.in.empty() && node.in.back() < 0) node.in.pop_back();
    if (n.op_type() == "DequantizeLinear") {  // folded now: weights become f32 constants
      DTRAIN_CHECK(n.output_size() == 1 && node.in.size() >= 2, where, ": ", node.label, " needs x and x_scale");
      for (int s : node.in)
        DTRAIN_CHECK(s < 0 || host.count(s), where, ": ", node.label,
                     " is supported on initializers only (int8 weights), not on computed values");
      const HostConstant* zp = node.in.size() > 2 && node.in[2] >= 0 ? &host[node.in[2]] : nullptr;
      host[new_slot(n.output(0), "DequantizeLinear output")] =
          dequantize(host[node.in[0]], host[node.in[1]], zp, attr_int(n, "axis", 1), where + ": " + node.label);
      continue;
    }
    auto op = kOps.find(n.op_type());
    DTRAIN_CHECK(op != kOps.end(), where, ": unsupported op '", n.op_type(), "' (node '", n.name(),
                 "'); the engine runs the ops dtrain's exporter writes");
    node.op = op->second;
    for (int k = 0; k < n.output_size(); ++k) node.out.push_back(new_slot(n.output(k), node.label + " output"));
    node.label = where + ": " + node.label;
    check_arity(node, node.in.size());
    DTRAIN_CHECK(std::find(node.in.begin(), node.in.end(), -1) == node.in.end() || node.op == Op::Gemm ||
                     node.op == Op::Conv || node.op == Op::LayerNorm,
                 node.label, ": a required input is empty");
    DTRAIN_CHECK(node.out.size() == 1, node.label, ": has ", node.out.size(), " outputs, expected 1");
    parse_attributes(n, node);
    impl->nodes.push_back(std::move(node));
  }

  for (const auto& vi : g.output()) {
    const std::string what = where + ": output '" + vi.name() + "'";
    auto it = slot.find(vi.name());
    DTRAIN_CHECK(it != slot.end(), what, " is not produced by any node");
    impl->outputs.push_back({vi.name(), dtype_from_onnx(vi.type().tensor_type().elem_type(), what), shape_of(vi, what)});
    impl->output_slots.push_back(it->second);
  }

  // Fusion: a Relu that alone reads a Conv or Gemm output runs inside that node, in place, and a
  // MaxPool that alone reads a Conv's (Relu'd) output runs inside the Conv, per sample while the
  // sample's output is in cache. The absorbed nodes become Identity; graph outputs never fuse.
  std::vector<int> readers(slot.size(), 0), reader(slot.size(), -1);
  for (size_t i = 0; i < impl->nodes.size(); ++i)
    for (int s : impl->nodes[i].in)
      if (s >= 0) ++readers[s], reader[s] = static_cast<int>(i);
  for (int s : impl->output_slots) ++readers[s];
  auto only_reader = [&](int s, Op op) -> Node* {
    return readers[s] == 1 && impl->nodes[reader[s]].op == op ? &impl->nodes[reader[s]] : nullptr;
  };
  for (Node& node : impl->nodes) {
    if (node.op != Op::Conv && node.op != Op::Gemm) continue;
    int tail = node.out[0];
    if (Node* relu = only_reader(tail, Op::Relu)) {
      node.fuse_relu = true;
      relu->op = Op::Identity;
      tail = relu->out[0];
    }
    Node* pool = node.op == Op::Conv ? only_reader(tail, Op::MaxPool) : nullptr;
    if (pool) {
      node.pool_kernel = pool->kernel;
      node.pool_stride = pool->stride;
      node.pool_pad = pool->pad;
      pool->op = Op::Identity;
    }
  }

  impl->constants.resize(slot.size());
  for (auto& [s, c] : host) {
    if (c.data_type == onnx::TensorProto_DataType_INT8) continue;  // only DequantizeLinear reads these
    const Tensor t = to_tensor(c, where + ": constant");
    impl->constants[s] = device.is_cpu() ? t : t.to(device);
  }
  // CPU Convs with a constant W take the direct convolution where it is faster than im2col +
  // GEMM: AVX-512, stride 1, and at least 64 taps per output (c k^2; with fewer, as in an image
  // model's first layer, the scatter of each block to NCHW costs more than it saves).
  const char* direct_env = std::getenv("DTRAIN_DIRECT_CONV");  // "0": im2col + GEMM everywhere
  if (device.is_cpu() && !(direct_env && std::string(direct_env) == "0"))
    for (Node& node : impl->nodes) {
      if (node.op != Op::Conv || node.in.size() < 2) continue;
      const Tensor& w = impl->constants[node.in[1]];
      if (!w.defined() || w.dtype() != DType::f32 || w.ndim() != 4 || w.dim(2) != w.dim(3)) continue;
      if (!inference::conv2d_direct_available(w.dim(0), node.stride) || w.dim(1) * w.dim(2) * w.dim(3) < 64) continue;
      node.direct_w = Tensor::empty(w.shape(), DType::f32, device);
      inference::conv2d_direct_pack(w.data<float>(), node.direct_w.data<float>(), w.dim(0), w.dim(1), w.dim(2));
    }
  // Each computed value is dropped after its last reader, unless it is a graph output.
  std::vector<int> last_reader(slot.size(), -1);
  for (size_t i = 0; i < impl->nodes.size(); ++i)
    for (int s : impl->nodes[i].in)
      if (s >= 0) last_reader[s] = static_cast<int>(i);
  for (int s : impl->output_slots) last_reader[s] = -1;
  impl->release_after.resize(impl->nodes.size());
  for (size_t s = 0; s < last_reader.size(); ++s)
    if (last_reader[s] >= 0 && !impl->constants[s].defined()) impl->release_after[last_reader[s]].push_back(static_cast<int>(s));
  for (const Node& node : impl->nodes)
    for (int s : node.in)
      DTRAIN_CHECK(s < 0 || impl->constants[s].defined() || !host.count(s), node.label,
                   ": reads an INT8 initializer directly (only DequantizeLinear may)");
  return OnnxModel(std::move(impl));
}

const std::vector<TensorInfo>& OnnxModel::inputs() const { return impl_->inputs; }
const std::vector<TensorInfo>& OnnxModel::outputs() const { return impl_->outputs; }
const std::map<std::string, std::string>& OnnxModel::metadata() const { return impl_->metadata; }
Device OnnxModel::device() const { return impl_->device; }
int64_t OnnxModel::opset() const { return impl_->opset; }

std::vector<Tensor> OnnxModel::run(const std::vector<Tensor>& inputs) const {
  const Impl& m = *impl_;
  const std::string where = "ONNX model " + m.source;
  DTRAIN_CHECK(inputs.size() == m.inputs.size(), where, ": run got ", inputs.size(), " inputs, the model takes ",
               m.inputs.size());
  std::vector<Tensor> values = m.constants;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const TensorInfo& info = m.inputs[i];
    const Tensor& t = inputs[i];
    bool ok = t.defined() && t.dtype() == info.dtype && t.ndim() == static_cast<int>(info.shape.size());
    for (int k = 0; ok && k < t.ndim(); ++k) ok = info.shape[k] < 0 ? t.dim(k) >= 1 : t.dim(k) == info.shape[k];
    DTRAIN_CHECK(ok, where, ": input '", info.name, "' expects ", onnx_type_name(info.dtype), " ", shape_str(info.shape),
                 " (-1: any size >= 1), got ",
                 t.defined() ? onnx_type_name(t.dtype()) + " " + t.shape().str() : std::string("nothing"));
    DTRAIN_CHECK(t.is_contiguous(), where, ": input '", info.name, "' must be contiguous");
    values[m.input_slots[i]] = t.device() == m.device ? t : t.to(m.device);
  }
  std::vector<const Tensor*> args;
  for (size_t i = 0; i < m.nodes.size(); ++i) {
    const Node& node = m.nodes[i];
    args.clear();
    for (int s : node.in) args.push_back(s < 0 ? nullptr : &values[s]);
    values[node.out[0]] = run_node(node, args, m.device);
    for (int s : m.release_after[i]) values[s] = Tensor();
  }
  std::vector<Tensor> out;
  for (int s : m.output_slots) out.push_back(values[s]);
  return out;
}

}  // namespace dtrain
