#pragma once
// DType, Device and Shape: the small value types every tensor carries.
#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "core/error.h"

namespace dtrain {

enum class DType : uint8_t { f32, bf16, i32, i64, u8 };

int64_t dtype_size(DType t);
const char* dtype_name(DType t);
DType parse_dtype(std::string_view name);  // "f32", "bf16", "i32", "i64", "u8"

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::f32;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::i32;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::i64;
}
template <>
constexpr DType dtype_of<uint8_t>() {
  return DType::u8;
}

// bf16 stored as the upper 16 bits of an IEEE f32, rounded to nearest even.
struct bf16 {
  uint16_t bits = 0;
};
template <>
constexpr DType dtype_of<bf16>() {
  return DType::bf16;
}
bf16 to_bf16(float x);
float from_bf16(bf16 x);

struct Device {
  enum class Kind : uint8_t { cpu, cuda };
  Kind kind = Kind::cpu;
  int index = 0;

  static Device cpu() { return {}; }
  static Device cuda(int index = 0) { return {Kind::cuda, index}; }
  static Device parse(std::string_view text);  // "cpu", "cuda", "cuda:N"
  bool is_cpu() const { return kind == Kind::cpu; }
  bool is_cuda() const { return kind == Kind::cuda; }
  std::string str() const;
  bool operator==(const Device&) const = default;
};

// A small fixed-capacity vector of dimensions (no heap allocation).
class Shape {
 public:
  static constexpr int kMaxDims = 8;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  template <typename It>
  Shape(It first, It last) {
    for (; first != last; ++first) push_back(static_cast<int64_t>(*first));
  }

  int size() const { return n_; }
  bool empty() const { return n_ == 0; }
  int64_t operator[](int i) const { return d_[i]; }
  int64_t& operator[](int i) { return d_[i]; }
  int64_t back() const { return d_[n_ - 1]; }
  const int64_t* begin() const { return d_.data(); }
  const int64_t* end() const { return d_.data() + n_; }
  void push_back(int64_t v);
  int64_t numel() const;    // product of dims (1 for a scalar shape)
  std::string str() const;  // "[2, 3]"
  bool operator==(const Shape& o) const { return n_ == o.n_ && std::equal(begin(), end(), o.begin()); }

 private:
  std::array<int64_t, kMaxDims> d_{};
  int n_ = 0;
};

}  // namespace dtrain
