#include "core/io/tensor_info.h"

namespace dtrain {

const char* kserve_dtype(DType t) {
  switch (t) {
    case DType::f32: return "FP32";
    case DType::bf16: return "BF16";
    case DType::i32: return "INT32";
    case DType::i64: return "INT64";
    case DType::u8: return "UINT8";
  }
  return "?";
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace dtrain
