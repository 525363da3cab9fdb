// The engine's elementwise ops: Add, Sub, Mul and Div with NumPy broadcasting (both inputs FLOAT
// or both INT64), and Tanh. The broadcasts dtrain's graphs use most (equal shapes, a scalar; for
// Add one tensor repeated along a run of the other's dims: a bias, a mask over the heads) run on
// core's kernels on any device, as does Tanh; the others, the integer ones and Div on the host
// (reading inputs through OpInputs::host: only a value computed on a GPU makes a round trip).
#include <algorithm>
#include <cmath>

#include "core/dispatch.h"
#include "inference/onnx_ops.h"

namespace dtrain::inference {

Broadcast broadcast(const Shape& a, const Shape& b, const std::string& what) {
  const int rank = std::max(a.size(), b.size());
  const Shape ca = contiguous_strides(a), cb = contiguous_strides(b);
  Broadcast r;
  for (int i = 0; i < rank; ++i) {
    const int ia = i - (rank - a.size()), ib = i - (rank - b.size());
    const int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    DTRAIN_CHECK(da == db || da == 1 || db == 1, what, ": shapes ", a.str(), " and ", b.str(), " do not broadcast (",
                 da, " vs ", db, " in dim ", i, " of the result)");
    r.shape.push_back(da == 1 ? db : da);
    r.a_strides[i] = da == 1 ? 0 : ca[ia];
    r.b_strides[i] = db == 1 ? 0 : cb[ib];
  }
  return r;
}

namespace {

enum class Arith { add, sub, mul, div };

const char* arith_name(Arith op) {
  switch (op) {
    case Arith::add: return "Add";
    case Arith::sub: return "Sub";
    case Arith::mul: return "Mul";
    case Arith::div: return "Div";
  }
  return "?";
}

template <typename T>
T apply(Arith op, T a, T b) {
  switch (op) {
    case Arith::add: return a + b;
    case Arith::sub: return a - b;
    case Arith::mul: return a * b;
    case Arith::div: return a / b;
  }
  return T{};
}

// y = a op b over the broadcast, on the host: an inner loop along the last dim of the result.
template <typename T>
Tensor broadcast_on_host(const Node& node, Arith op, const OpInputs& in, Device d) {
  const Broadcast bc = broadcast(in[0]->shape(), in[1]->shape(), node.label);
  const Tensor a = in.host(0), b = in.host(1);
  const T *pa = a.data<T>(), *pb = b.data<T>();
  if constexpr (std::is_integral_v<T>)
    if (op == Arith::div)
      for (int64_t i = 0; i < b.numel(); ++i) DTRAIN_CHECK(pb[i] != 0, node.label, ": division by zero");
  Tensor y = Tensor::empty(bc.shape, a.dtype(), Device::cpu());
  T* py = y.data<T>();
  const int rank = bc.shape.size();
  const int64_t inner = rank ? bc.shape[rank - 1] : 1;
  const int64_t sa = rank ? bc.a_strides[rank - 1] : 0, sb = rank ? bc.b_strides[rank - 1] : 0;
  if (y.numel() > 0)
    for_each_index(bc.shape, rank - 1, bc.a_strides.data(), bc.b_strides.data(), [&](int64_t oa, int64_t ob) {
      for (int64_t i = 0; i < inner; ++i) *py++ = apply(op, pa[oa + i * sa], pb[ob + i * sb]);
    });
  return d.is_cpu() ? y : y.to(d);
}

// How `small` repeats over `big` when it equals big but for one run of dims where it is 1 (leading
// 1s of small aside): big as [outer, rows, cols] and small as [outer, 1, cols] (a bias over the
// trailing dims: outer 1; a per-sample mask over the heads). rows 0: another broadcast.
struct RowBroadcast {
  int64_t outer = 1, rows = 0, cols = 1;
};

RowBroadcast row_broadcast(const Shape& big, const Shape& small) {
  const int pad = big.size() - small.size();
  if (pad < 0) return {};
  int first = big.size(), last = -1;  // the run of broadcast dims
  for (int i = 0; i < big.size(); ++i) {
    const int64_t s = i < pad ? 1 : small[i - pad];
    if (s == big[i]) continue;
    if (s != 1 || (last >= 0 && last != i - 1)) return {};
    first = std::min(first, i);
    last = i;
  }
  if (last < 0) return {1, 1, big.numel()};
  RowBroadcast r{1, 1, 1};
  for (int i = 0; i < big.size(); ++i) (i < first ? r.outer : i > last ? r.cols : r.rows) *= big[i];
  return r;
}

// f32 broadcasts core's kernels run (any device); an undefined tensor when there is none.
Tensor f32_on_kernels(Arith op, const OpInputs& in, Device d) {
  const Tensor &a = *in[0], &b = *in[1];
  if (a.shape() == b.shape() && op != Arith::div) {
    Tensor y = Tensor::empty(a.shape(), DType::f32, d);
    const int64_t n = a.numel();
    if (op == Arith::add) DTRAIN_DISPATCH(d, add, a.data<float>(), b.data<float>(), y.data<float>(), n);
    if (op == Arith::mul) DTRAIN_DISPATCH(d, mul, a.data<float>(), b.data<float>(), y.data<float>(), n);
    if (op == Arith::sub) {
      y.copy_from(a);
      DTRAIN_DISPATCH(d, axpy, -1.0f, b.data<float>(), y.data<float>(), n);
    }
    return y;
  }
  const bool commutes = op == Arith::add || op == Arith::mul;
  const bool b_small = b.numel() <= a.numel();
  if (!b_small && !commutes) return Tensor();
  const Tensor& big = b_small ? a : b;
  const Tensor& small = b_small ? b : a;
  if (small.numel() == 1 && small.ndim() <= big.ndim() && op != Arith::div) {
    const float s = in.host(b_small ? 1 : 0).to_vector<float>()[0];
    Tensor y = Tensor::empty(big.shape(), DType::f32, d);
    const float scale = op == Arith::mul ? s : 1.0f, shift = op == Arith::add ? s : op == Arith::sub ? -s : 0.0f;
    DTRAIN_DISPATCH(d, affine, big.data<float>(), y.data<float>(), big.numel(), scale, shift);
    return y;
  }
  const RowBroadcast rb = op == Arith::add ? row_broadcast(big.shape(), small.shape()) : RowBroadcast{};
  if (rb.rows > 0 && big.numel() > 0) {
    Tensor y = big.clone();
    for (int64_t o = 0; o < rb.outer; ++o)
      DTRAIN_DISPATCH(d, add_bias_rows, y.data<float>() + o * rb.rows * rb.cols, small.data<float>() + o * rb.cols,
                      rb.rows, rb.cols);
    return y;
  }
  return Tensor();
}

Tensor run_arith(const Node& node, const OpInputs& in, Device d, Arith op) {
  const Tensor &a = *in[0], &b = *in[1];
  DTRAIN_CHECK(a.dtype() == b.dtype() && (a.dtype() == DType::f32 || a.dtype() == DType::i64), node.label, ": ",
               arith_name(op), " of ", onnx_type_name(a.dtype()), " and ", onnx_type_name(b.dtype()),
               " is not supported (two FLOAT or two INT64 inputs)");
  if (a.dtype() == DType::i64) return broadcast_on_host<int64_t>(node, op, in, d);
  const Tensor y = f32_on_kernels(op, in, d);
  return y.defined() ? y : broadcast_on_host<float>(node, op, in, d);
}

}  // namespace

Tensor run_add(const Node& node, const OpInputs& in, Device d) { return run_arith(node, in, d, Arith::add); }
Tensor run_sub(const Node& node, const OpInputs& in, Device d) { return run_arith(node, in, d, Arith::sub); }
Tensor run_mul(const Node& node, const OpInputs& in, Device d) { return run_arith(node, in, d, Arith::mul); }
Tensor run_div(const Node& node, const OpInputs& in, Device d) { return run_arith(node, in, d, Arith::div); }

Tensor run_tanh(const Node& node, const OpInputs& in, Device d) {
  DTRAIN_CHECK(in[0]->dtype() == DType::f32, node.label, ": input must be FLOAT, got ", onnx_type_name(in[0]->dtype()));
  const Tensor& x = *in[0];
  Tensor y = Tensor::empty(x.shape(), DType::f32, d);
  DTRAIN_DISPATCH(d, tanh_forward, x.data<float>(), y.data<float>(), x.numel());
  return y;
}

}  // namespace dtrain::inference
