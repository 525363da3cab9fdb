#pragma once
// TensorInfo: the name, element type and shape of a model input or output as a client sees it
// (ONNX graph inputs/outputs, config.json, the server's model metadata).
#include <cstdint>
#include <string>
#include <vector>

#include "core/types.h"

namespace dtrain {

struct TensorInfo {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;  // -1 marks a dynamic dim (the batch axis)
  bool operator==(const TensorInfo&) const = default;
};

// KServe V2 datatype names: "FP32", "UINT8", "INT64", "INT32", "BF16".
const char* kserve_dtype(DType t);
// "[-1, 1, 28, 28]"
std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace dtrain
