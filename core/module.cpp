#include "core/module.h"

#include "core/error.h"

namespace dtrain {

std::string Module::to_onnx(OnnxGraph& graph, const std::string& x, const Shape& input, const std::string& path) const {
  (void)graph;
  (void)x;
  (void)input;
  fail("ONNX export: layer '", path.empty() ? "net" : path, "' of type '", type(),
       "' has no ONNX mapping (its class does not override Module::to_onnx)");
}

}  // namespace dtrain
