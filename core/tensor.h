#pragma once
// Tensor: a view {storage, offset, shape, strides, dtype} onto one Storage.
// Copies between devices are explicit (to(device), copy_from).
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/rng.h"
#include "core/storage.h"
#include "core/types.h"

namespace dtrain {

class Tensor {
 public:
  Tensor() = default;  // undefined tensor: defined() is false

  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, float value, Device device = Device::cpu());
  // f32 tensors filled from a counter-based stream; the generator advances by numel.
  static Tensor uniform(const Shape& shape, float low, float high, Generator& gen, Device device = Device::cpu());
  static Tensor randn(const Shape& shape, float mean, float stddev, Generator& gen, Device device = Device::cpu());
  // A host tensor holding a copy of `values`, moved to `device`.
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device = Device::cpu());

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int ndim() const { return shape_.size(); }
  int64_t dim(int i) const { return shape_[i < 0 ? i + shape_.size() : i]; }
  int64_t numel() const { return shape_.numel(); }
  int64_t nbytes() const { return numel() * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::cpu(); }
  int64_t offset() const { return offset_; }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  void* raw_data() const;
  // Typed pointer to the first element; throws if T does not match dtype().
  template <typename T>
  T* data() const;

  // Same elements under a new shape (contiguous only; one dim may be -1).
  Tensor view(const Shape& shape) const;
  // Rows [start, end) along dim 0 (shares storage).
  Tensor slice(int64_t start, int64_t end) const;
  // A view of this tensor's storage with its own shape, strides and offset (in elements of dtype(),
  // from the storage's start), checked to lie inside the storage: a window of a larger buffer, such
  // as the first P positions of a key/value cache with room for more. Most operations take
  // contiguous tensors only and say so; the ONNX engine's appendable inputs and MatMul read strided ones.
  Tensor as_strided(const Shape& shape, const Shape& strides, int64_t offset) const;
  // Whether such a view (non-negative sizes and strides) lies inside this tensor's storage.
  bool storage_holds(const Shape& shape, const Shape& strides, int64_t offset) const;
  // A 1-D view of `count` elements starting at flat element `start` (contiguous only).
  Tensor flat_range(int64_t start, int64_t count) const;
  // `count` elements of `dtype` on the same bytes, from byte `byte_offset` of this contiguous
  // tensor (a staging buffer that carries one wire format or another).
  Tensor bytes_as(DType dtype, int64_t byte_offset, int64_t count) const;

  Tensor to(Device device) const;  // copy to another device (a new storage even if the same device)
  Tensor clone() const { return to(device()); }
  void copy_from(const Tensor& src);  // same shape and dtype; any devices
  void fill(float value);             // f32 only
  void zero();                        // any dtype
  // Host copy of the elements as T (T must match dtype()).
  template <typename T>
  std::vector<T> to_vector() const;

 private:
  Tensor(std::shared_ptr<Storage> s, int64_t offset, Shape shape, DType dtype);
  Tensor(std::shared_ptr<Storage> s, int64_t offset, Shape shape, Shape strides, DType dtype);
  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;  // in elements
  Shape shape_;
  Shape strides_;  // in elements
  DType dtype_ = DType::f32;
};

Shape contiguous_strides(const Shape& shape);

template <typename T>
T* Tensor::data() const {
  DTRAIN_CHECK(dtype_of<T>() == dtype_, "tensor has dtype ", dtype_name(dtype_), ", accessed as ",
               dtype_name(dtype_of<T>()));
  return static_cast<T*>(raw_data());
}

template <typename T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  DTRAIN_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), "from_vector: ", values.size(),
               " values for shape ", shape.str());
  Tensor host = empty(shape, dtype_of<T>(), Device::cpu());
  std::copy(values.begin(), values.end(), host.data<T>());
  return device.is_cpu() ? host : host.to(device);
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  DTRAIN_CHECK(dtype_of<T>() == dtype_, "to_vector: tensor has dtype ", dtype_name(dtype_));
  Tensor host = device().is_cpu() && is_contiguous() ? *this : to(Device::cpu());
  const T* p = host.data<T>();
  return std::vector<T>(p, p + numel());
}

}  // namespace dtrain
