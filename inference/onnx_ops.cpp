// The ops of dtrain's ONNX engine: kernels on core's CPU/CUDA kernel interface, attribute parsers,
// and the one table (kOps) that names them (the elementwise and layout ops' kernels are in
// onnx_elementwise_ops.cpp and onnx_layout_ops.cpp).
#include "inference/onnx_ops.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <tuple>
#include <utility>

#include "core/dispatch.h"
#include "inference/conv_direct.h"

namespace dtrain::inference {

DType dtype_from_onnx(int t, const std::string& what) {
  switch (t) {
    case onnx::TensorProto_DataType_FLOAT: return DType::f32;
    case onnx::TensorProto_DataType_UINT8: return DType::u8;
    case onnx::TensorProto_DataType_INT64: return DType::i64;
    case onnx::TensorProto_DataType_INT32: return DType::i32;
    default:
      fail(what, ": element type ", onnx::TensorProto_DataType_Name(t),
           " is not supported (FLOAT, UINT8, INT64, INT32)");
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

Tensor OpInputs::host(size_t i) const {
  if (host_[i]) return *host_[i];
  const Tensor& t = *tensors_[i];
  return t.device().is_cpu() ? t : t.to(Device::cpu());
}

namespace {

const onnx::AttributeProto* find_attr(const onnx::NodeProto& n, const char* name) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}

}  // namespace

int64_t attr_int(const onnx::NodeProto& n, const char* name, int64_t fallback) {
  const auto* a = find_attr(n, name);
  return a ? a->i() : fallback;
}

std::vector<int64_t> attr_ints(const onnx::NodeProto& n, const char* name) {
  const auto* a = find_attr(n, name);
  return a ? std::vector<int64_t>(a->ints().begin(), a->ints().end()) : std::vector<int64_t>{};
}

namespace {

float attr_float(const onnx::NodeProto& n, const char* name, float fallback) {
  const auto* a = find_attr(n, name);
  return a ? a->f() : fallback;
}

// All entries equal (an empty list gives `fallback`).
int64_t uniform(const std::vector<int64_t>& v, int64_t fallback, const std::string& what) {
  if (v.empty()) return fallback;
  for (int64_t x : v) DTRAIN_CHECK(x == v[0], what, " (all entries must be equal, got a mix)");
  return v[0];
}

int64_t last_axis(int64_t axis, int rank, const std::string& what) {
  const int64_t a = axis < 0 ? axis + rank : axis;
  DTRAIN_CHECK(a == rank - 1, what, ": only the last axis is supported (axis ", axis, " of a rank-", rank, " input)");
  return a;
}

void check_f32(const Tensor& t, const std::string& what, const char* input) {
  DTRAIN_CHECK(t.dtype() == DType::f32, what, ": input ", input, " must be FLOAT, got ", dtype_name(t.dtype()));
}

Tensor run_gemm(const Node& node, const OpInputs& in, Device d) {
  const Tensor &a = *in[0], &b = *in[1];
  const Tensor* c = in.size() > 2 ? in[2] : nullptr;
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
      DTRAIN_DISPATCH(d, affine, y.data<float>(), y.data<float>(), y.numel(), 1.0f, in.host(2).to_vector<float>()[0]);
    } else if (c->shape() == y.shape()) {
      DTRAIN_DISPATCH(d, add, y.data<float>(), c->data<float>(), y.data<float>(), y.numel());
    } else {
      fail(node.label, ": C of shape ", c->shape().str(), " does not broadcast to ", y.shape().str());
    }
  }
  if (node.fuse_relu) DTRAIN_DISPATCH(d, relu_forward, y.data<float>(), y.data<float>(), y.numel());
  return y;
}

// A [..., M, K] x B [..., K, N] with NumPy broadcasting of the batch dims: one GEMM over all
// leading dims when B is 2-D, else one per batch matrix. With trans_b (a Transpose of B's last two
// dims fused at load) B is [..., N, K]. B may be a strided view (a key/value cache grown in place,
// OnnxModel::RunOptions) as long as its rows are contiguous: its strides give each matrix's start
// and the GEMM's leading dimension.
Tensor run_matmul(const Node& node, const OpInputs& in, Device d) {
  const Tensor &a = *in[0], &b = *in[1];
  check_f32(a, node.label, "A");
  check_f32(b, node.label, "B");
  DTRAIN_CHECK(a.ndim() >= 2 && b.ndim() >= 2, node.label, ": supports A [..., M, K] x B [..., K, N], got ",
               a.shape().str(), " and ", b.shape().str(), " (1-D operands are not supported)");
  DTRAIN_CHECK(a.is_contiguous() && b.strides()[b.ndim() - 1] == 1, node.label,
               ": A must be contiguous and B's rows contiguous");
  const int64_t m = a.dim(-2), k = a.dim(-1), n = node.trans_b ? b.dim(-2) : b.dim(-1);
  DTRAIN_CHECK((node.trans_b ? b.dim(-1) : b.dim(-2)) == k, node.label, ": inner dims differ: A ", a.shape().str(),
               " B ", b.shape().str(), node.trans_b ? " (B transposed)" : "");
  const Shape a_batch(a.shape().begin(), a.shape().end() - 2), b_batch(b.shape().begin(), b.shape().end() - 2);
  const Broadcast batch = broadcast(a_batch, b_batch, node.label + " (batch dims)");
  Shape ys = batch.shape;
  ys.push_back(m);
  ys.push_back(n);
  Tensor y = Tensor::empty(ys, DType::f32, d);
  if (y.numel() == 0) return y;
  if (k == 0) return Tensor::zeros(ys, DType::f32, d);
  const int64_t ldb = b.strides()[b.ndim() - 2];
  if (b.ndim() == 2) {
    DTRAIN_DISPATCH(d, gemm, false, node.trans_b, a.numel() / k, n, k, 1.0f, a.data<float>(), k, b.data<float>(), ldb,
                    0.0f, y.data<float>(), n);
    return y;
  }
  // Element strides of B's batch dims, aligned to the result's (0 where B broadcasts).
  const int rank = batch.shape.size(), b_rank = b.ndim() - 2;
  std::array<int64_t, Shape::kMaxDims> b_strides{};
  for (int r = 0; r < rank; ++r) {
    const int kb = r - (rank - b_rank);
    b_strides[r] = kb >= 0 && b.dim(kb) > 1 ? b.strides()[kb] : 0;
  }
  const float *pa = a.data<float>(), *pb = b.data<float>();
  float* py = y.data<float>();
  for_each_index(batch.shape, rank, batch.a_strides.data(), b_strides.data(), [&](int64_t oa, int64_t ob) {
    DTRAIN_DISPATCH(d, gemm, false, node.trans_b, m, n, k, 1.0f, pa + oa * m * k, k, pb + ob, ldb, 0.0f, py, n);
    py += m * n;
  });
  return y;
}

// MaxPool output height and width for an [.., h, w] input (the window must fit the padded input).
std::pair<int64_t, int64_t> pool_dims(const std::string& label, const Shape& x, int64_t k, int64_t s, int64_t p) {
  const int64_t h = x[x.size() - 2], w = x[x.size() - 1];
  DTRAIN_CHECK(h + 2 * p >= k && w + 2 * p >= k, label, ": input ", x.str(), " is smaller than the pooling window");
  DTRAIN_CHECK(h * w <= INT32_MAX, label, ": input plane too large");
  return {(h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1};
}

// A Conv's sizes, checked against its input, weight and bias.
struct ConvGeometry {
  int64_t n, c, h, w, oc, k, oh, ow, ph, pw;  // ph, pw: after a fused MaxPool (else oh, ow)
  int64_t plane() const { return oh * ow; }
  int64_t ck() const { return c * k * k; }
};

ConvGeometry conv_geometry(const Node& node, const Tensor& x, const Tensor& w, const Tensor* b) {
  check_f32(x, node.label, "X");
  check_f32(w, node.label, "W");
  DTRAIN_CHECK(x.ndim() == 4 && w.ndim() == 4 && w.dim(2) == w.dim(3) && x.dim(1) == w.dim(1), node.label,
               ": expects X [N, C, H, W] and a square W [M, C, k, k], got ", x.shape().str(), " and ", w.shape().str());
  const int64_t k = w.dim(2), s = node.stride, p = node.pad;
  DTRAIN_CHECK(node.kernel == 0 || node.kernel == k, node.label, ": kernel_shape ", node.kernel,
               " differs from the weight's ", k);
  ConvGeometry g{x.dim(0), x.dim(1), x.dim(2), x.dim(3), w.dim(0), k, 0, 0, 0, 0};
  DTRAIN_CHECK(g.h + 2 * p >= k && g.w + 2 * p >= k, node.label, ": input ", x.shape().str(),
               " is smaller than the kernel");
  g.oh = (g.h + 2 * p - k) / s + 1;
  g.ow = (g.w + 2 * p - k) / s + 1;
  if (b)
    DTRAIN_CHECK(b->ndim() == 1 && b->dim(0) == g.oc, node.label, ": B must be [", g.oc, "], got ", b->shape().str());
  g.ph = g.oh;
  g.pw = g.ow;
  if (node.pool_kernel > 0)
    std::tie(g.ph, g.pw) =
        pool_dims(node.label + " (its MaxPool)", Shape{g.oh, g.ow}, node.pool_kernel, node.pool_stride, node.pool_pad);
  return g;
}

// The end of a CPU Conv for `count` samples of the group output `yc`: each output plane through the
// fused MaxPool (or copied) into Y in NCHW, then the bias and a fused Relu. The bias and the Relu
// commute with max (rounding is monotonic): with a pool they run on the pooled planes, a quarter of
// the values, with the same results.
void conv_cpu_epilogue(const Node& node, const ConvGeometry& g, const float* yc, int64_t count, int64_t channel_step,
                       int64_t sample_step, const float* bias, float* y) {
  const int64_t pooled = g.ph * g.pw;
  for (int64_t i = 0; i < count; ++i) {
    float* out = y + i * g.oc * pooled;
    for (int64_t m = 0; m < g.oc; ++m) {
      const float* plane_in = yc + m * channel_step + i * sample_step;
      float* plane_out = out + m * pooled;
      if (node.pool_kernel > 0)
        cpu::maxpool2d_forward(plane_in, plane_out, nullptr, 1, g.oh, g.ow, node.pool_kernel, node.pool_stride,
                               node.pool_pad, g.ph, g.pw);
      else
        std::copy_n(plane_in, g.plane(), plane_out);
    }
    if (bias) cpu::add_bias_channels(out, bias, 1, g.oc, pooled);
    if (node.fuse_relu) cpu::relu_forward(out, out, g.oc * pooled);
  }
}

// On the CPU a few samples at a time, with conv2d_direct where the load packed W for it, else
// im2col + GEMM, so that their columns and output stay in cache while the epilogue writes them to Y.
Tensor run_conv_cpu(const Node& node, const ConvGeometry& g, const Tensor& x, const Tensor& w, const Tensor* b) {
  const Device d = Device::cpu();
  const int64_t plane = g.plane(), ck = g.ck(), p = node.pad;
  // Samples per group: at most ~512 KiB of columns and ~256 KiB of GEMM output, which the pool
  // then reads back (a first layer has few columns but many output channels).
  constexpr int64_t kGroupCols = int64_t{1} << 17, kGroupOut = int64_t{1} << 16;  // floats
  const int64_t group = std::clamp<int64_t>(
      std::min(kGroupCols / std::max<int64_t>(1, ck * plane), kGroupOut / std::max<int64_t>(1, g.oc * plane)), 1,
      std::max<int64_t>(1, g.n));
  Tensor y = Tensor::empty(Shape{g.n, g.oc, g.ph, g.pw}, DType::f32, d);
  // The direct convolution (weights packed at load) writes [samples, oc, plane]; im2col + GEMM
  // writes [oc, samples, plane].
  const bool direct = node.direct_w.defined();
  Tensor cols =
      Tensor::empty(direct ? Shape{g.c * (g.h + 2 * p) * (g.w + 2 * p)} : Shape{ck, group * plane}, DType::f32, d);
  Tensor yg = Tensor::empty(Shape{g.oc, group * plane}, DType::f32, d);
  const float* bias = b ? b->data<float>() : nullptr;
  const int64_t sample_in = g.c * g.h * g.w;
  for (int64_t first = 0; first < g.n; first += group) {
    const int64_t count = std::min(group, g.n - first), np = count * plane;
    float* yc = yg.data<float>();
    if (direct) {
      for (int64_t i = 0; i < count; ++i)
        conv2d_direct(x.data<float>() + (first + i) * sample_in, node.direct_w.data<float>(), yc + i * g.oc * plane,
                      cols.data<float>(), g.c, g.h, g.w, g.oc, g.k, p);
    } else {
      cpu::im2col(x.data<float>() + first * sample_in, cols.data<float>(), count, g.c, g.h, g.w, g.k, g.k, node.stride,
                  p, g.oh, g.ow);
      cpu::gemm(false, false, g.oc, np, ck, 1.0f, w.data<float>(), ck, cols.data<float>(), np, 0.0f, yc, np);
    }
    conv_cpu_epilogue(node, g, yc, count, direct ? plane : np, direct ? g.oc * plane : plane, bias,
                      y.data<float>() + first * g.oc * g.ph * g.pw);
  }
  return y;
}

// On a GPU im2col + GEMM in chunks of samples (fewer, larger GEMMs), reordered from
// [M, samples*OH*OW] to NCHW, then the bias, a fused Relu and a fused MaxPool over the whole batch.
Tensor run_conv_device(const Node& node, const ConvGeometry& g, const Tensor& x, const Tensor& w, const Tensor* b,
                       Device d) {
  const int64_t plane = g.plane(), ck = g.ck();
  Tensor y = Tensor::empty(Shape{g.n, g.oc, g.oh, g.ow}, DType::f32, d);
  constexpr int64_t kMaxColumnElems = int64_t{1} << 24;  // 64 MiB of f32 columns per chunk
  const int64_t chunk =
      std::max<int64_t>(1, std::min<int64_t>(g.n, kMaxColumnElems / std::max<int64_t>(1, ck * plane)));
  Tensor cols = Tensor::empty(Shape{ck, chunk * plane}, DType::f32, d);
  Tensor y_cn = Tensor::empty(Shape{g.oc, chunk * plane}, DType::f32, d);
  for (int64_t first = 0; first < g.n; first += chunk) {
    const int64_t m = std::min(chunk, g.n - first), np = m * plane;
    DTRAIN_DISPATCH(d, im2col, x.data<float>() + first * g.c * g.h * g.w, cols.data<float>(), m, g.c, g.h, g.w, g.k,
                    g.k, node.stride, node.pad, g.oh, g.ow);
    DTRAIN_DISPATCH(d, gemm, false, false, g.oc, np, ck, 1.0f, w.data<float>(), ck, cols.data<float>(), np, 0.0f,
                    y_cn.data<float>(), np);
    DTRAIN_DISPATCH(d, swap_01, y_cn.data<float>(), y.data<float>() + first * g.oc * plane, g.oc, m, plane);
  }
  if (b) DTRAIN_DISPATCH(d, add_bias_channels, y.data<float>(), b->data<float>(), g.n, g.oc, plane);
  if (node.fuse_relu) DTRAIN_DISPATCH(d, relu_forward, y.data<float>(), y.data<float>(), y.numel());
  if (node.pool_kernel == 0) return y;
  Tensor pooled = Tensor::empty(Shape{g.n, g.oc, g.ph, g.pw}, DType::f32, d);
  DTRAIN_DISPATCH(d, maxpool2d_forward, y.data<float>(), pooled.data<float>(), nullptr, g.n * g.oc, g.oh, g.ow,
                  node.pool_kernel, node.pool_stride, node.pool_pad, g.ph, g.pw);
  return pooled;
}

Tensor run_conv(const Node& node, const OpInputs& in, Device d) {
  const Tensor &x = *in[0], &w = *in[1];
  const Tensor* b = in.size() > 2 ? in[2] : nullptr;
  const ConvGeometry g = conv_geometry(node, x, w, b);
  return d.is_cpu() ? run_conv_cpu(node, g, x, w, b) : run_conv_device(node, g, x, w, b, d);
}

Tensor run_maxpool(const Node& node, const OpInputs& in, Device d) {
  const Tensor& x = *in[0];
  check_f32(x, node.label, "X");
  DTRAIN_CHECK(x.ndim() == 4, node.label, ": expects X [N, C, H, W], got ", x.shape().str());
  const auto [oh, ow] = pool_dims(node.label, x.shape(), node.kernel, node.stride, node.pad);
  Tensor y = Tensor::empty(Shape{x.dim(0), x.dim(1), oh, ow}, DType::f32, d);
  DTRAIN_DISPATCH(d, maxpool2d_forward, x.data<float>(), y.data<float>(), nullptr, x.dim(0) * x.dim(1), x.dim(2),
                  x.dim(3), node.kernel, node.stride, node.pad, oh, ow);
  return y;
}

Tensor run_layernorm(const Node& node, const OpInputs& in, Device d) {
  const Tensor &x = *in[0], &scale = *in[1];
  const Tensor* bias = in.size() > 2 ? in[2] : nullptr;
  check_f32(x, node.label, "X");
  check_f32(scale, node.label, "Scale");
  last_axis(node.axis, x.ndim(), node.label);
  const int64_t cols = x.dim(-1), rows = x.numel() / cols;
  DTRAIN_CHECK(scale.numel() == cols && (!bias || bias->numel() == cols), node.label, ": Scale and B must have ", cols,
               " elements");
  if (x.numel() == 0) return Tensor::empty(x.shape(), DType::f32, d);
  Tensor zeros;
  if (!bias) zeros = Tensor::zeros(Shape{cols}, DType::f32, d);
  Tensor y = Tensor::empty(x.shape(), DType::f32, d);
  Tensor mean = Tensor::empty(Shape{rows}, DType::f32, d), rstd = Tensor::empty(Shape{rows}, DType::f32, d);
  DTRAIN_DISPATCH(d, layernorm_forward, x.data<float>(), scale.data<float>(),
                  bias ? bias->data<float>() : zeros.data<float>(), y.data<float>(), mean.data<float>(),
                  rstd.data<float>(), rows, cols, node.epsilon);
  return y;
}

Tensor run_gather(const Node& node, const OpInputs& in, Device d) {
  const Tensor &data = *in[0], &indices = *in[1];
  check_f32(data, node.label, "data");
  DTRAIN_CHECK(indices.dtype() == DType::i64, node.label, ": indices must be INT64, got ", dtype_name(indices.dtype()));
  DTRAIN_CHECK(data.ndim() >= 1, node.label, ": data must have a dim to gather from");
  const int64_t rows = data.dim(0), dim = data.numel() / std::max<int64_t>(1, rows);
  // Ids index memory, so they are range-checked on the host (constant ids and a caller's ids have a
  // host copy); negative ids count from the end, and only then are the fixed ids copied down.
  std::vector<int64_t> ids = in.host(1).to_vector<int64_t>();
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

Tensor run_identity(const Node&, const OpInputs& in, Device) { return *in[0]; }

Tensor run_erf(const Node& node, const OpInputs& in, Device d) {
  const Tensor& x = *in[0];
  check_f32(x, node.label, "X");
  Tensor y = Tensor::empty(x.shape(), DType::f32, d);
  DTRAIN_DISPATCH(d, erf_forward, x.data<float>(), y.data<float>(), x.numel());
  return y;
}

Tensor run_relu(const Node& node, const OpInputs& in, Device d) {
  const Tensor& x = *in[0];
  check_f32(x, node.label, "X");
  Tensor y = Tensor::empty(x.shape(), DType::f32, d);
  DTRAIN_DISPATCH(d, relu_forward, x.data<float>(), y.data<float>(), x.numel());
  return y;
}

Tensor run_flatten(const Node& node, const OpInputs& in, Device) {
  const Tensor& x = *in[0];
  const int64_t axis = node.axis < 0 ? node.axis + x.ndim() : node.axis;
  DTRAIN_CHECK(axis >= 0 && axis <= x.ndim(), node.label, ": axis ", node.axis, " for a rank-", x.ndim(), " input");
  int64_t outer = 1;
  for (int i = 0; i < axis; ++i) outer *= x.dim(i);
  return x.view(Shape{outer, outer ? x.numel() / outer : 0});
}

Tensor run_softmax(const Node& node, const OpInputs& in, Device d) {
  const Tensor& x = *in[0];
  check_f32(x, node.label, "input");
  last_axis(node.axis, x.ndim(), node.label);
  Tensor y = Tensor::empty(x.shape(), DType::f32, d);
  if (x.numel() == 0) return y;
  DTRAIN_DISPATCH(d, softmax_rows, x.data<float>(), y.data<float>(), x.numel() / x.dim(-1), x.dim(-1));
  return y;
}

Tensor run_argmax(const Node& node, const OpInputs& in, Device d) {
  const Tensor& x = *in[0];
  check_f32(x, node.label, "data");
  last_axis(node.axis, x.ndim(), node.label);
  Shape ys;
  for (int i = 0; i + 1 < x.ndim(); ++i) ys.push_back(x.dim(i));
  if (node.keepdims) ys.push_back(1);
  Tensor y = Tensor::empty(ys, DType::i64, d);
  DTRAIN_DISPATCH(d, argmax_rows, x.data<float>(), x.numel() / x.dim(-1), x.dim(-1), y.data<int64_t>());
  return y;
}

// ---- attribute parsers (each rejects what the kernels do not implement)

void parse_none(const onnx::NodeProto&, Node&) {}

void parse_gemm(const onnx::NodeProto& n, Node& node) {
  node.trans_a = attr_int(n, "transA", 0) != 0;
  node.trans_b = attr_int(n, "transB", 0) != 0;
  node.alpha = attr_float(n, "alpha", 1.0f);
  node.beta = attr_float(n, "beta", 1.0f);
  DTRAIN_CHECK(node.beta == 1.0f, node.label, ": beta other than 1 is not supported");
}

// Conv and MaxPool: square 2-D windows with equal strides and pads on every side.
void parse_window(const onnx::NodeProto& n, Node& node) {
  const std::string& w = node.label;
  const bool pool = n.op_type() == "MaxPool";
  const auto* auto_pad = find_attr(n, "auto_pad");
  DTRAIN_CHECK(!auto_pad || auto_pad->s() == "NOTSET", w, ": auto_pad is not supported (give explicit pads)");
  const auto ks = attr_ints(n, "kernel_shape");
  node.kernel = uniform(ks, 0, w + ": kernel_shape must be square");
  DTRAIN_CHECK(!pool || node.kernel > 0, w, ": kernel_shape is required");
  node.stride = uniform(attr_ints(n, "strides"), 1, w + ": strides must be equal");
  node.pad = uniform(attr_ints(n, "pads"), 0, w + ": pads must be equal on every side");
  DTRAIN_CHECK(uniform(attr_ints(n, "dilations"), 1, w + ": dilations") == 1, w, ": dilations are not supported");
  DTRAIN_CHECK(attr_int(n, "group", 1) == 1, w, ": grouped convolution is not supported");
  DTRAIN_CHECK(attr_int(n, "ceil_mode", 0) == 0, w, ": ceil_mode is not supported");
  DTRAIN_CHECK(attr_int(n, "storage_order", 0) == 0, w, ": storage_order is not supported");
  DTRAIN_CHECK(ks.empty() || ks.size() == 2, w, ": only 2-D kernels are supported");
  DTRAIN_CHECK(!pool || n.output_size() == 1, w, ": the Indices output is not supported");
}

void parse_flatten(const onnx::NodeProto& n, Node& node) { node.axis = attr_int(n, "axis", 1); }

void parse_layernorm(const onnx::NodeProto& n, Node& node) {
  node.axis = attr_int(n, "axis", -1);
  node.epsilon = attr_float(n, "epsilon", 1e-5f);
  DTRAIN_CHECK(n.output_size() == 1, node.label, ": the Mean and InvStdDev outputs are not supported");
}

void parse_gather(const onnx::NodeProto& n, Node& node) {
  node.axis = attr_int(n, "axis", 0);
  DTRAIN_CHECK(node.axis == 0, node.label, ": only axis 0 is supported");
}

void parse_softmax(const onnx::NodeProto& n, Node& node) { node.axis = attr_int(n, "axis", -1); }

void parse_argmax(const onnx::NodeProto& n, Node& node) {
  node.axis = attr_int(n, "axis", 0);
  node.keepdims = attr_int(n, "keepdims", 1) != 0;
  DTRAIN_CHECK(attr_int(n, "select_last_index", 0) == 0, node.label, ": select_last_index is not supported");
}

// ---- the table: every op the engine runs (those dtrain's exporter writes)

// clang-format off
const OpSpec kOps[] = {
    // name                 inputs  optional  attributes       run
    {"Identity",            1, 1,   false,    parse_none,      run_identity},
    {"Cast",                1, 1,   false,    parse_cast,      run_cast},
    {"Mul",                 2, 2,   false,    parse_none,      run_mul},
    {"Add",                 2, 2,   false,    parse_none,      run_add},
    {"Sub",                 2, 2,   false,    parse_none,      run_sub},
    {"Div",                 2, 2,   false,    parse_none,      run_div},
    {"Erf",                 1, 1,   false,    parse_none,      run_erf},
    {"Tanh",                1, 1,   false,    parse_none,      run_tanh},
    {"Relu",                1, 1,   false,    parse_none,      run_relu},
    {"Gemm",                2, 3,   true,     parse_gemm,      run_gemm},
    {"MatMul",              2, 2,   false,    parse_none,      run_matmul},
    {"Conv",                2, 3,   true,     parse_window,    run_conv},
    {"MaxPool",             1, 1,   false,    parse_window,    run_maxpool},
    {"Flatten",             1, 1,   false,    parse_flatten,   run_flatten},
    {"LayerNormalization",  2, 3,   true,     parse_layernorm, run_layernorm},
    {"Gather",              2, 2,   false,    parse_gather,    run_gather},
    {"Softmax",             1, 1,   false,    parse_softmax,   run_softmax},
    {"ArgMax",              1, 1,   false,    parse_argmax,    run_argmax},
    {"Shape",               1, 1,   false,    parse_shape,     run_shape},
    {"Reshape",             2, 2,   false,    parse_reshape,   run_reshape},
    {"Transpose",           1, 1,   false,    parse_transpose, run_transpose},
    {"Slice",               3, 5,   true,     parse_none,      run_slice},
    {"Concat",              1, 1 << 16, false, parse_concat,   run_concat},
};
// clang-format on

const OpSpec& op_named(const char* name) {
  for (const OpSpec& op : kOps)
    if (std::strcmp(op.name, name) == 0) return op;
  std::abort();  // only for the names below, all in the table
}

}  // namespace

const OpSpec& kIdentityOp = op_named("Identity");
const OpSpec& kReluOp = op_named("Relu");
const OpSpec& kGemmOp = op_named("Gemm");
const OpSpec& kConvOp = op_named("Conv");
const OpSpec& kMaxPoolOp = op_named("MaxPool");
const OpSpec& kMatMulOp = op_named("MatMul");
const OpSpec& kTransposeOp = op_named("Transpose");
const OpSpec& kConcatOp = op_named("Concat");

const OpSpec* find_op(const std::string& op_type) {
  for (const OpSpec& op : kOps)
    if (op.name == op_type) return &op;
  return nullptr;
}

std::string supported_ops() {
  std::string names;
  for (const OpSpec& op : kOps) names.append(names.empty() ? "" : ", ").append(op.name);
  return names;
}

}  // namespace dtrain::inference
