#include "serve/kserve_types.h"

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

}  // namespace dtrain::serve
