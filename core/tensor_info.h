#pragma once
// TensorInfo: the name, element type and shape of a model input or output as a client sees it
// (ONNX graph inputs/outputs, a model repository's config.json, the server's model metadata).
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

// "[-1, 1, 28, 28]"
std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace dtrain
