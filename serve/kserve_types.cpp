#include "serve/kserve_types.h"

#include "core/error.h"

namespace dtrain::serve {

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

DType parse_kserve_dtype(const std::string& name) {
  for (DType t : {DType::f32, DType::bf16, DType::i32, DType::i64, DType::u8})
    if (name == kserve_dtype(t)) return t;
  fail("'", name.substr(0, 40), "' is not a datatype this server handles (FP32, BF16, INT32, INT64, UINT8)");
}

}  // namespace dtrain::serve
