#pragma once
// Internal to inference/: the ops dtrain's ONNX engine runs, as one table. An op's entry holds all
// the engine knows of it: its ONNX name, how many inputs it takes, which may be left empty, how its
// attributes are read (rejecting what the kernels do not implement) and how it runs. A new op is
// one entry in onnx_ops.cpp.
#include <onnx/onnx_pb.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace dtrain::inference {

struct OpSpec;

// One graph node after load: its op, value slots and parsed attributes.
struct Node {
  const OpSpec* op = nullptr;
  std::string label;         // "ONNX model m.onnx: Gemm node '3/Gemm'" for messages
  std::vector<int> in, out;  // value slots; -1 for an omitted optional input
  int64_t axis = 0;
  bool trans_a = false, trans_b = false, keepdims = true;
  float alpha = 1.0f, beta = 1.0f, epsilon = 1e-5f;
  int64_t kernel = 0, stride = 1, pad = 0;  // Conv (kernel 0: from the weight) and MaxPool
  bool fuse_relu = false;                   // Conv, Gemm: apply the Relu that alone reads the output, in place
  int64_t pool_kernel = 0, pool_stride = 1, pool_pad = 0;  // Conv: a MaxPool fused after it (0: none)
  Tensor direct_w;  // Conv on the CPU: W packed for conv2d_direct at load (undefined: im2col + GEMM)
};

using OpInputs = std::vector<const Tensor*>;  // null for an omitted optional input

struct OpSpec {
  const char* name;  // the ONNX op_type
  int min_inputs, max_inputs;
  bool optional_inputs;  // inputs past the first two may be given as "" (Gemm's C, Conv's B, ...)
  void (*parse)(const onnx::NodeProto& proto, Node& node);  // reads the attributes; throws naming the node
  Tensor (*run)(const Node& node, const OpInputs& in, Device device);
};

// The op named `op_type`, or null when the engine does not run it.
const OpSpec* find_op(const std::string& op_type);
// Ops the load pass refers to by name (fusion, the CPU convolution's packing).
extern const OpSpec& kIdentityOp;
extern const OpSpec& kReluOp;
extern const OpSpec& kGemmOp;
extern const OpSpec& kConvOp;
extern const OpSpec& kMaxPoolOp;
// "Cast, Mul, Add, ...": every op of the table, for messages and docs.
std::string supported_ops();

DType dtype_from_onnx(int onnx_type, const std::string& what);
std::string onnx_type_name(DType t);  // "FLOAT", "UINT8", "INT64", ... for messages
int64_t attr_int(const onnx::NodeProto& n, const char* name, int64_t fallback);

}  // namespace dtrain::inference
