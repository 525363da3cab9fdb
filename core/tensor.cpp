#include "core/tensor.h"

#include <cstring>

#include "core/dispatch.h"
#include "core/gpu.h"

namespace dtrain {

Shape contiguous_strides(const Shape& shape) {
  Shape s = shape;
  int64_t stride = 1;
  for (int i = shape.size() - 1; i >= 0; --i) {
    s[i] = stride;
    stride *= shape[i];
  }
  return s;
}

Tensor::Tensor(std::shared_ptr<Storage> s, int64_t offset, Shape shape, DType dtype)
    : storage_(std::move(s)), offset_(offset), shape_(shape), strides_(contiguous_strides(shape)), dtype_(dtype) {}

Tensor::Tensor(std::shared_ptr<Storage> s, int64_t offset, Shape shape, Shape strides, DType dtype)
    : storage_(std::move(s)), offset_(offset), shape_(shape), strides_(strides), dtype_(dtype) {}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) DTRAIN_CHECK(d >= 0, "negative dimension in shape ", shape.str());
  return Tensor(Storage::allocate(shape.numel() * dtype_size(dtype), device), 0, shape, dtype);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero();
  return t;
}

Tensor Tensor::full(const Shape& shape, float value, Device device) {
  Tensor t = empty(shape, DType::f32, device);
  t.fill(value);
  return t;
}

Tensor Tensor::uniform(const Shape& shape, float low, float high, Generator& gen, Device device) {
  Tensor t = empty(shape, DType::f32, device);
  const uint64_t first = gen.advance(static_cast<uint64_t>(t.numel()));
  const RngStream s = rng_stream(gen.key());
  DTRAIN_DISPATCH(device, uniform_fill, t.data<float>(), t.numel(), low, high, s, first);
  return t;
}

Tensor Tensor::randn(const Shape& shape, float mean, float stddev, Generator& gen, Device device) {
  Tensor t = empty(shape, DType::f32, device);
  const uint64_t first = gen.advance(static_cast<uint64_t>(t.numel()));
  const RngStream s = rng_stream(gen.key());
  DTRAIN_DISPATCH(device, normal_fill, t.data<float>(), t.numel(), mean, stddev, s, first);
  return t;
}

bool Tensor::is_contiguous() const { return strides_ == contiguous_strides(shape_); }

void* Tensor::raw_data() const {
  DTRAIN_CHECK(defined(), "access to an undefined tensor");
  return static_cast<char*>(storage_->data()) + offset_ * dtype_size(dtype_);
}

Tensor Tensor::view(const Shape& shape) const {
  DTRAIN_CHECK(is_contiguous(), "view of a non-contiguous tensor");
  Shape s = shape;
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      DTRAIN_CHECK(infer < 0, "view ", shape.str(), ": more than one -1");
      infer = i;
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    DTRAIN_CHECK(known > 0 && numel() % known == 0, "view ", shape.str(), " does not fit ", numel(), " elements");
    s[infer] = numel() / known;
  }
  DTRAIN_CHECK(s.numel() == numel(), "view ", shape.str(), " of a tensor of shape ", shape_.str());
  return Tensor(storage_, offset_, s, dtype_);
}

Tensor Tensor::slice(int64_t start, int64_t end) const {
  DTRAIN_CHECK(ndim() >= 1 && 0 <= start && start <= end && end <= shape_[0], "slice [", start, ", ", end,
               ") out of range for shape ", shape_.str());
  Shape s = shape_;
  s[0] = end - start;
  return Tensor(storage_, offset_ + start * strides_[0], s, strides_, dtype_);
}

Tensor Tensor::as_strided(const Shape& shape, const Shape& strides, int64_t offset) const {
  DTRAIN_CHECK(defined(), "as_strided of an undefined tensor");
  DTRAIN_CHECK(shape.size() == strides.size() && offset >= 0, "as_strided: shape ", shape.str(), " and strides ",
               strides.str(), " differ in rank (or offset ", offset, " < 0)");
  for (int i = 0; i < shape.size(); ++i)
    DTRAIN_CHECK(shape[i] >= 0 && strides[i] >= 0, "as_strided: negative size or stride in ", shape.str(), " / ",
                 strides.str());
  DTRAIN_CHECK(storage_holds(shape, strides, offset), "as_strided: shape ", shape.str(), " strides ", strides.str(),
               " from element ", offset, " reach past the storage's ", storage_->bytes() / dtype_size(dtype_),
               " elements");
  return Tensor(storage_, offset, shape, strides, dtype_);
}

bool Tensor::storage_holds(const Shape& shape, const Shape& strides, int64_t offset) const {
  if (shape.numel() == 0) return true;
  int64_t last = offset;  // the last element the view reaches
  for (int i = 0; i < shape.size(); ++i) last += (shape[i] - 1) * strides[i];
  return last < storage_->bytes() / dtype_size(dtype_);
}

Tensor Tensor::flat_range(int64_t start, int64_t count) const {
  DTRAIN_CHECK(is_contiguous(), "flat_range of a non-contiguous tensor");
  DTRAIN_CHECK(start >= 0 && count >= 0 && start + count <= numel(), "flat_range [", start, ", ", start + count,
               ") out of range for ", numel(), " elements");
  return Tensor(storage_, offset_ + start, Shape{count}, dtype_);
}

Tensor Tensor::bytes_as(DType dtype, int64_t byte_offset, int64_t count) const {
  DTRAIN_CHECK(is_contiguous(), "bytes_as of a non-contiguous tensor");
  const int64_t begin = offset_ * dtype_size(dtype_) + byte_offset, size = dtype_size(dtype);
  DTRAIN_CHECK(byte_offset >= 0 && count >= 0 && byte_offset + count * size <= nbytes() && begin % size == 0,
               "bytes_as: ", count, " ", dtype_name(dtype), " from byte ", byte_offset, " of a tensor of ", nbytes(),
               " bytes (at an offset that is a multiple of ", size, ")");
  return Tensor(storage_, begin / size, Shape{count}, dtype);
}

Tensor Tensor::to(Device device) const {
  Tensor out = empty(shape_, dtype_, device);
  out.copy_from(*this);
  return out;
}

void Tensor::copy_from(const Tensor& src) {
  DTRAIN_CHECK(src.defined() && defined(), "copy_from: undefined tensor");
  DTRAIN_CHECK(src.shape_ == shape_ && src.dtype_ == dtype_, "copy_from: source ", src.shape_.str(), " ",
               dtype_name(src.dtype_), " into ", shape_.str(), " ", dtype_name(dtype_));
  DTRAIN_CHECK(src.is_contiguous() && is_contiguous(), "copy_from: non-contiguous tensors");
  const int64_t bytes = nbytes();
  if (bytes == 0) return;
  const Device from = src.device(), to = device();
  if (from.is_cpu() && to.is_cpu()) {
    std::memmove(raw_data(), src.raw_data(), static_cast<size_t>(bytes));
  } else if (from.is_cpu()) {
    gpu::memcpy(raw_data(), src.raw_data(), bytes, gpu::CopyKind::host_to_device, to.index);
  } else if (to.is_cpu()) {
    gpu::memcpy(raw_data(), src.raw_data(), bytes, gpu::CopyKind::device_to_host, from.index);
  } else {
    DTRAIN_CHECK(from == to, "copy_from: between two GPUs (", from.str(), " -> ", to.str(), ") is not supported");
    gpu::memcpy(raw_data(), src.raw_data(), bytes, gpu::CopyKind::device_to_device, to.index);
  }
}

void Tensor::fill(float value) {
  DTRAIN_CHECK(dtype_ == DType::f32, "fill: tensor has dtype ", dtype_name(dtype_), ", expected f32");
  DTRAIN_CHECK(is_contiguous(), "fill of a non-contiguous tensor");
  DTRAIN_DISPATCH(device(), fill, data<float>(), numel(), value);
}

void Tensor::zero() {
  DTRAIN_CHECK(is_contiguous(), "zero of a non-contiguous tensor");
  if (dtype_ == DType::f32) return fill(0.0f);
  if (device().is_cpu()) {
    std::memset(raw_data(), 0, static_cast<size_t>(nbytes()));
  } else {
    Tensor host = zeros(shape_, dtype_, Device::cpu());
    copy_from(host);
  }
}

}  // namespace dtrain
