#pragma once
// KServe V2 protocol datatype names ("FP32", "UINT8", "INT64", "INT32", "BF16").
#include "core/types.h"

namespace dtrain::serve {

const char* kserve_dtype(DType t);

}  // namespace dtrain::serve
