// The engine's layout ops: Shape, Reshape, Transpose, Slice, Concat and Cast. They move or
// reinterpret elements of any type (shapes are INT64 tensors) and run on the host, reading their
// inputs through OpInputs::host: on a GPU only computed inputs make a round trip (small in the
// graphs dtrain writes: shapes, masks, heads reordered), constants and the caller's inputs have a
// host copy, and a Slice that is one contiguous block of its input (a prefix of the position
// table) is a view on any device. Zero-size tensors pass through every one of them.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>

#include "core/dispatch.h"
#include "core/tensor_info.h"
#include "inference/onnx_ops.h"

namespace dtrain::inference {

namespace {

Tensor on_device(const Tensor& t, Device d) { return d.is_cpu() ? t : t.to(d); }

template <typename T>
void strided_copy_as(const T* src, const int64_t* src_strides, const Shape& shape, T* dst) {
  const int rank = shape.size();
  const int64_t inner = rank ? shape[rank - 1] : 1, step = rank ? src_strides[rank - 1] : 0;
  for_each_index(shape, rank - 1, src_strides, src_strides, [&](int64_t offset, int64_t) {
    const T* from = src + offset;
    if (step == 1)
      std::copy_n(from, inner, dst);
    else
      for (int64_t i = 0; i < inner; ++i) dst[i] = from[i * step];
    dst += inner;
  });
}

// Copies the elements of `shape` read at `src_strides` (in elements of `elem` bytes) from `src` to
// `dst`, contiguous, row-major.
void strided_copy(const void* src, const int64_t* src_strides, const Shape& shape, int64_t elem, void* dst) {
  if (shape.numel() == 0) return;
  switch (elem) {
    case 1: return strided_copy_as(static_cast<const uint8_t*>(src), src_strides, shape, static_cast<uint8_t*>(dst));
    case 2: return strided_copy_as(static_cast<const uint16_t*>(src), src_strides, shape, static_cast<uint16_t*>(dst));
    case 4: return strided_copy_as(static_cast<const uint32_t*>(src), src_strides, shape, static_cast<uint32_t*>(dst));
    case 8: return strided_copy_as(static_cast<const uint64_t*>(src), src_strides, shape, static_cast<uint64_t*>(dst));
  }
  fail("strided_copy: elements of ", elem, " bytes");
}

// An axis in [0, rank), negative ones counting from the end.
int64_t normalized_axis(int64_t axis, int64_t rank, const std::string& what) {
  const int64_t a = axis < 0 ? axis + rank : axis;
  DTRAIN_CHECK(a >= 0 && a < rank, what, ": axis ", axis, " is out of range for a rank-", rank, " input");
  return a;
}

}  // namespace

Tensor contiguous_host(const Tensor& t) {
  DTRAIN_CHECK(t.device().is_cpu(), "contiguous_host: a tensor on ", t.device().str());
  if (t.is_contiguous()) return t;
  Tensor y = Tensor::empty(t.shape(), t.dtype(), Device::cpu());
  strided_copy(t.raw_data(), t.strides().begin(), t.shape(), dtype_size(t.dtype()), y.raw_data());
  return y;
}

std::vector<int64_t> host_ints(const Tensor& t, const std::string& what) {
  if (t.dtype() == DType::i64) return t.to_vector<int64_t>();
  DTRAIN_CHECK(t.dtype() == DType::i32, what, " must be INT64 (or INT32), got ", dtype_name(t.dtype()));
  const std::vector<int32_t> v = t.to_vector<int32_t>();
  return std::vector<int64_t>(v.begin(), v.end());
}

// ---- Shape: dims [start, end) of the input as INT64 (negative bounds count from the end, then clamp)

void parse_shape(const onnx::NodeProto& n, Node& node) {
  node.start = attr_int(n, "start", 0);
  node.end = attr_int(n, "end", INT64_MAX);
}

Tensor run_shape(const Node& node, const OpInputs& in, Device d) {
  const Shape& s = in[0]->shape();
  const int64_t rank = s.size();
  const auto clamp = [&](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + rank : i, 0, rank); };
  const int64_t first = clamp(node.start), last = std::max(first, clamp(node.end));
  const std::vector<int64_t> dims(s.begin() + first, s.begin() + last);
  return Tensor::from_vector(dims, Shape{last - first}, d);
}

// ---- Reshape: a view under the new shape; 0 copies the input's dim, -1 takes what is left

void parse_reshape(const onnx::NodeProto& n, Node& node) {
  DTRAIN_CHECK(attr_int(n, "allowzero", 0) == 0, node.label, ": allowzero=1 is not supported");
}

Tensor run_reshape(const Node& node, const OpInputs& in, Device) {
  const Tensor& x = *in[0];
  const std::vector<int64_t> spec = host_ints(in.host(1), node.label + ": shape");
  DTRAIN_CHECK(in[1]->ndim() == 1 && spec.size() <= Shape::kMaxDims, node.label, ": shape must be 1-D with at most ",
               Shape::kMaxDims, " entries, got ", in[1]->shape().str());
  Shape s;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < spec.size(); ++i) {
    int64_t v = spec[i];
    if (v == 0) {
      DTRAIN_CHECK(static_cast<int>(i) < x.ndim(), node.label, ": shape entry ", i, " is 0 (copy) but the input ",
                   x.shape().str(), " has no dim ", i);
      v = x.dim(static_cast<int>(i));
    } else if (v == -1) {
      DTRAIN_CHECK(infer < 0, node.label, ": shape has more than one -1");
      infer = static_cast<int>(i);
    } else {
      DTRAIN_CHECK(v > 0, node.label, ": shape entry ", i, " is ", v);
    }
    s.push_back(v);
    if (v != -1) known *= v;
  }
  if (infer >= 0) {
    DTRAIN_CHECK(known > 0 && x.numel() % known == 0, node.label, ": cannot reshape ", x.shape().str(),
                 " to a shape with -1 and ", known, " other elements");
    s[infer] = x.numel() / known;
  }
  DTRAIN_CHECK(s.numel() == x.numel(), node.label, ": cannot reshape ", x.shape().str(), " (", x.numel(),
               " elements) to ", s.str());
  return x.view(s);
}

// ---- Transpose: y's dim i is x's dim perm[i]

void parse_transpose(const onnx::NodeProto& n, Node& node) { node.perm = attr_ints(n, "perm"); }

Tensor run_transpose(const Node& node, const OpInputs& in, Device d) {
  const Tensor x = in.host(0);
  const int rank = x.ndim();
  std::vector<int64_t> perm = node.perm;
  if (perm.empty())
    for (int i = rank - 1; i >= 0; --i) perm.push_back(i);
  std::vector<bool> seen(static_cast<size_t>(rank), false);
  bool valid = static_cast<int>(perm.size()) == rank;
  for (size_t i = 0; valid && i < perm.size(); ++i) {
    valid = perm[i] >= 0 && perm[i] < rank && !seen[perm[i]];
    if (valid) seen[perm[i]] = true;
  }
  DTRAIN_CHECK(valid, node.label, ": perm ", shape_str(perm), " is not a permutation of the ", rank, " dims of input ",
               x.shape().str());
  Shape ys;
  std::array<int64_t, Shape::kMaxDims> strides{};
  for (int i = 0; i < rank; ++i) {
    ys.push_back(x.dim(static_cast<int>(perm[i])));
    strides[i] = x.strides()[static_cast<int>(perm[i])];
  }
  Tensor y = Tensor::empty(ys, x.dtype(), Device::cpu());
  strided_copy(x.raw_data(), strides.data(), ys, dtype_size(x.dtype()), y.raw_data());
  return on_device(y, d);
}

// ---- Slice: per listed axis, elements start, start + step, ... before end (ONNX's clamping)

namespace {

struct SliceAxis {
  int64_t start, count, step;
};

SliceAxis slice_axis(int64_t start, int64_t end, int64_t step, int64_t dim) {
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  if (step > 0) {
    start = std::clamp<int64_t>(start, 0, dim);
    end = std::clamp<int64_t>(end, 0, dim);
    return {start, std::max<int64_t>(0, (end - start + step - 1) / step), step};
  }
  start = std::clamp<int64_t>(start, 0, dim - 1);
  end = std::clamp<int64_t>(end, -1, dim - 1);
  return {start, std::max<int64_t>(0, (start - end - step - 1) / -step), step};
}

}  // namespace

namespace {

// Whether elements read at `strides` over `shape` are one contiguous run (dims of 1 aside).
bool contiguous_under(const Shape& shape, const int64_t* strides) {
  int64_t expected = 1;
  for (int k = shape.size() - 1; k >= 0; --k) {
    if (shape[k] == 1) continue;
    if (strides[k] != expected) return false;
    expected *= shape[k];
  }
  return true;
}

}  // namespace

Tensor run_slice(const Node& node, const OpInputs& in, Device d) {
  const Tensor x = in[0]->is_contiguous() ? *in[0] : in.host(0);  // the strides below are x's
  const int rank = x.ndim();
  const std::vector<int64_t> starts = host_ints(in.host(1), node.label + ": starts");
  const std::vector<int64_t> ends = host_ints(in.host(2), node.label + ": ends");
  std::vector<int64_t> axes, steps(starts.size(), 1);
  if (in.size() > 3 && in[3]) axes = host_ints(in.host(3), node.label + ": axes");
  if (in.size() > 4 && in[4]) steps = host_ints(in.host(4), node.label + ": steps");
  if (axes.empty())
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  DTRAIN_CHECK(ends.size() == starts.size() && axes.size() == starts.size() && steps.size() == starts.size(),
               node.label, ": starts, ends, axes and steps differ in length (", starts.size(), ", ", ends.size(), ", ",
               axes.size(), ", ", steps.size(), ")");
  Shape ys = x.shape();
  std::array<int64_t, Shape::kMaxDims> strides{};
  for (int i = 0; i < rank; ++i) strides[i] = x.strides()[i];
  int64_t offset = 0;
  for (size_t i = 0; i < starts.size(); ++i) {
    const int a = static_cast<int>(normalized_axis(axes[i], rank, node.label));
    DTRAIN_CHECK(steps[i] != 0, node.label, ": step 0 on axis ", axes[i]);
    const SliceAxis s = slice_axis(starts[i], ends[i], steps[i], x.dim(a));
    ys[a] = s.count;
    if (s.count > 0) offset += s.start * strides[a];
    strides[a] *= s.step;
  }
  if (x.device() == in[0]->device() && x.is_contiguous() && contiguous_under(ys, strides.data()))
    return x.flat_range(ys.numel() > 0 ? offset : 0, ys.numel()).view(ys);
  const Tensor h = x.device().is_cpu() ? x : in.host(0);
  Tensor y = Tensor::empty(ys, x.dtype(), Device::cpu());
  const int64_t elem = dtype_size(x.dtype());
  strided_copy(static_cast<const char*>(h.raw_data()) + offset * elem, strides.data(), ys, elem, y.raw_data());
  return on_device(y, d);
}

// ---- Concat: the inputs one after the other along `axis` (they agree on every other dim)

void parse_concat(const onnx::NodeProto& n, Node& node) {
  DTRAIN_CHECK(n.attribute_size() == 1 && n.attribute(0).name() == "axis", node.label, ": needs its axis attribute");
  node.axis = attr_int(n, "axis", 0);
}

namespace {

// Concat into the room after a strided input 0 (Node::append_in_place): the output is input 0's
// view grown along `axis`, the other inputs written after it in each outer block. Returns an
// undefined tensor when input 0 has no such room (the caller then copies as usual).
Tensor append_in_place(const OpInputs& in, int axis, const Shape& ys) {
  const Tensor& first = *in[0];
  const int rank = first.ndim();
  const Shape& st = first.strides();
  int64_t inner = 1;
  for (int k = rank - 1; k > axis; --k) {
    if (st[k] != inner) return {};
    inner *= ys[k];
  }
  if (st[axis] != inner || (axis > 0 && st[axis - 1] < ys[axis] * inner)) return {};
  for (size_t i = 1; i < in.size(); ++i)
    if (!in[i]->device().is_cpu() || !in[i]->is_contiguous()) return {};
  if (ys.numel() == 0 || !first.storage_holds(ys, st, first.offset())) return {};
  const Tensor y = first.as_strided(ys, st, first.offset());
  const int64_t elem = dtype_size(first.dtype());
  char* base = static_cast<char*>(y.raw_data());
  int64_t done = first.dim(axis) * inner;  // elements of each outer block already in place
  for (size_t i = 1; i < in.size(); ++i) {
    const int64_t chunk = in[i]->dim(axis) * inner;
    const char* src = static_cast<const char*>(in[i]->numel() ? in[i]->raw_data() : nullptr);
    for_each_index(ys, axis, st.begin(), st.begin(), [&](int64_t offset, int64_t) {
      if (chunk > 0) std::memcpy(base + (offset + done) * elem, src, static_cast<size_t>(chunk * elem));
      src += chunk * elem;
    });
    done += chunk;
  }
  return y;
}

}  // namespace

Tensor run_concat(const Node& node, const OpInputs& in, Device d) {
  const Tensor& first = *in[0];
  const int rank = first.ndim();
  DTRAIN_CHECK(rank >= 1, node.label, ": inputs must have at least one dim");
  const int axis = static_cast<int>(normalized_axis(node.axis, rank, node.label));
  Shape ys = first.shape();
  ys[axis] = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const Tensor& t = *in[i];
    bool same = t.dtype() == first.dtype() && t.ndim() == rank;
    for (int k = 0; same && k < rank; ++k) same = k == axis || t.dim(k) == first.dim(k);
    DTRAIN_CHECK(same, node.label, ": input ", i, " (", onnx_type_name(t.dtype()), " ", t.shape().str(),
                 ") does not match input 0 (", onnx_type_name(first.dtype()), " ", first.shape().str(),
                 ") outside axis ", axis);
    ys[axis] += t.dim(axis);
  }
  if (node.append_in_place && !first.is_contiguous() && d.is_cpu())
    if (Tensor grown = append_in_place(in, axis, ys); grown.defined()) return grown;
  Tensor y = Tensor::empty(ys, first.dtype(), Device::cpu());
  int64_t outer = 1, inner = dtype_size(first.dtype());
  for (int k = 0; k < axis; ++k) outer *= ys[k];
  for (int k = axis + 1; k < rank; ++k) inner *= ys[k];
  char* out = static_cast<char*>(y.raw_data());
  int64_t done = 0;  // bytes of each outer row written so far
  for (size_t i = 0; i < in.size(); ++i) {
    const Tensor x = contiguous_host(in.host(i));
    const int64_t chunk = x.dim(axis) * inner;
    const char* src = static_cast<const char*>(x.numel() ? x.raw_data() : nullptr);
    for (int64_t o = 0; o < outer && chunk > 0; ++o)
      std::memcpy(out + o * ys[axis] * inner + done, src + o * chunk, static_cast<size_t>(chunk));
    done += chunk;
  }
  return on_device(y, d);
}

// ---- Cast: to FLOAT from FLOAT, UINT8, INT32 or INT64; to INT64 from INT64, INT32 or FLOAT (truncating)

void parse_cast(const onnx::NodeProto& n, Node& node) {
  const int64_t to = attr_int(n, "to", 0);
  DTRAIN_CHECK(to == onnx::TensorProto_DataType_FLOAT || to == onnx::TensorProto_DataType_INT64, node.label,
               ": Cast to ", onnx::TensorProto_DataType_Name(static_cast<int>(to)),
               " is not supported (FLOAT or INT64)");
  node.to = to == onnx::TensorProto_DataType_FLOAT ? DType::f32 : DType::i64;
}

namespace {

template <typename To, typename From>
void convert(const Tensor& x, Tensor& y) {
  const From* src = x.data<From>();
  To* dst = y.data<To>();
  for (int64_t i = 0; i < x.numel(); ++i) dst[i] = static_cast<To>(src[i]);
}

}  // namespace

Tensor run_cast(const Node& node, const OpInputs& in, Device d) {
  const Tensor& x = *in[0];
  if (x.dtype() == node.to) return x;
  if (x.dtype() == DType::u8 && node.to == DType::f32) {
    Tensor y = Tensor::empty(x.shape(), DType::f32, d);
    DTRAIN_DISPATCH(d, u8_to_f32, x.data<uint8_t>(), y.data<float>(), x.numel(), 1.0f, 0.0f);
    return y;
  }
  const Tensor h = in.host(0);
  Tensor y = Tensor::empty(x.shape(), node.to, Device::cpu());
  if (node.to == DType::f32 && h.dtype() == DType::i64)
    convert<float, int64_t>(h, y);
  else if (node.to == DType::f32 && h.dtype() == DType::i32)
    convert<float, int32_t>(h, y);
  else if (node.to == DType::i64 && h.dtype() == DType::i32)
    convert<int64_t, int32_t>(h, y);
  else if (node.to == DType::i64 && h.dtype() == DType::f32)
    convert<int64_t, float>(h, y);
  else
    fail(node.label, ": Cast from ", onnx_type_name(x.dtype()), " to ", onnx_type_name(node.to), " is not supported");
  return on_device(y, d);
}

}  // namespace dtrain::inference
