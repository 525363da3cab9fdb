#pragma once
// KServe V2 protocol datatype names ("FP32", "UINT8", "INT64", "INT32", "BF16").
#include <string>

#include "core/types.h"

namespace dtrain::serve {

const char* kserve_dtype(DType t);
// "FP32" -> DType::f32, ...; throws dtrain::Error naming `name` for any other datatype.
DType parse_kserve_dtype(const std::string& name);

}  // namespace dtrain::serve
