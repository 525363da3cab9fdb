#pragma once
// Internal to inference/: the ops dtrain's ONNX engine runs, as one table. An op's entry holds all
// the engine knows of it: its ONNX name, how many inputs it takes, which may be left empty, how its
// attributes are read (rejecting what the kernels do not implement) and how it runs. A new op is
// one entry in onnx_ops.cpp (its kernel beside the table, or with its kind in
// onnx_elementwise_ops.cpp or onnx_layout_ops.cpp).
#include <onnx/onnx_pb.h>

#include <array>
#include <climits>
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
  std::vector<int64_t> perm;           // Transpose (empty: reverse the dims)
  int64_t start = 0, end = INT64_MAX;  // Shape: the dims [start, end) it returns
  DType to = DType::f32;               // Cast
  bool trans_a = false, trans_b = false, keepdims = true;
  float alpha = 1.0f, beta = 1.0f, epsilon = 1e-5f;
  int64_t kernel = 0, stride = 1, pad = 0;  // Conv (kernel 0: from the weight) and MaxPool
  bool fuse_relu = false;                   // Conv, Gemm: apply the Relu that alone reads the output, in place
  int64_t pool_kernel = 0, pool_stride = 1, pool_pad = 0;  // Conv: a MaxPool fused after it (0: none)
  Tensor direct_w;  // Conv on the CPU: W packed for conv2d_direct at load (undefined: im2col + GEMM)
  // Concat whose input 0 is a graph input and whose output only MatMuls (as B) and graph outputs
  // read: when that input is a strided view with room after it (OnnxModel::RunOptions), the other
  // inputs are written into the room and the output is the grown view.
  bool append_in_place = false;
};

// A node's inputs as its op sees them: in[i] is input i (null for an omitted optional input), on
// the model's device. in.host(i) is input i's values on the host, for ops that read values there
// (shapes, axes, Gather indices, scalars): the copy the engine keeps of small constants
// (kHostCopyElems) and of inputs the caller passed on the host, the tensor itself on the CPU, and
// only for a value computed on a GPU a copy from the device.
class OpInputs {
 public:
  void clear() {
    tensors_.clear();
    host_.clear();
  }
  void push_back(const Tensor* t, const Tensor* host_copy = nullptr) {
    tensors_.push_back(t);
    host_.push_back(host_copy);
  }
  size_t size() const { return tensors_.size(); }
  const Tensor* operator[](size_t i) const { return tensors_[i]; }
  std::vector<const Tensor*>::const_iterator begin() const { return tensors_.begin(); }
  std::vector<const Tensor*>::const_iterator end() const { return tensors_.end(); }
  Tensor host(size_t i) const;

 private:
  std::vector<const Tensor*> tensors_, host_;  // host_[i]: input i's host copy, or null
};

// Constants of at most this many elements are kept on the host too when the model is on a GPU
// (shapes, axes, indices, scalars, a small model's causal-mask table): 64 KiB of f32.
constexpr int64_t kHostCopyElems = int64_t{1} << 14;

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
extern const OpSpec& kMatMulOp;
extern const OpSpec& kTransposeOp;
extern const OpSpec& kConcatOp;
// "Cast, Mul, Add, ...": every op of the table, for messages and docs.
std::string supported_ops();

// ---- NumPy broadcasting (the elementwise ops, MatMul's batch dims)
struct Broadcast {
  Shape shape;                                                    // the result's
  std::array<int64_t, Shape::kMaxDims> a_strides{}, b_strides{};  // per result dim, 0 where broadcast
};
// Throws naming `what` and both shapes when they do not broadcast.
Broadcast broadcast(const Shape& a, const Shape& b, const std::string& what);
// Calls f(offset_a, offset_b) for every index of the first `rank` dims of `shape`, row-major, with
// that index's offsets under the two strides (nothing when a dim is 0; once when rank is 0).
template <typename F>
void for_each_index(const Shape& shape, int rank, const int64_t* a_strides, const int64_t* b_strides, F&& f) {
  for (int k = 0; k < rank; ++k)
    if (shape[k] == 0) return;
  std::array<int64_t, Shape::kMaxDims> idx{};
  int64_t oa = 0, ob = 0;
  for (;;) {
    f(oa, ob);
    int k = rank - 1;
    for (; k >= 0; --k) {
      oa += a_strides[k];
      ob += b_strides[k];
      if (++idx[k] < shape[k]) break;
      oa -= a_strides[k] * shape[k];
      ob -= b_strides[k] * shape[k];
      idx[k] = 0;
    }
    if (k < 0) return;
  }
}

// ---- the elementwise ops (inference/onnx_elementwise_ops.cpp)
Tensor run_add(const Node& node, const OpInputs& in, Device device);
Tensor run_sub(const Node& node, const OpInputs& in, Device device);
Tensor run_mul(const Node& node, const OpInputs& in, Device device);
Tensor run_div(const Node& node, const OpInputs& in, Device device);
Tensor run_tanh(const Node& node, const OpInputs& in, Device device);

// ---- the layout ops (inference/onnx_layout_ops.cpp): shapes and data movement for any element
// type, computed on the host (a device tensor without a host copy makes a round trip; a Slice that
// is one contiguous block is a view on any device)
Tensor run_shape(const Node& node, const OpInputs& in, Device device);
Tensor run_reshape(const Node& node, const OpInputs& in, Device device);
Tensor run_transpose(const Node& node, const OpInputs& in, Device device);
Tensor run_slice(const Node& node, const OpInputs& in, Device device);
Tensor run_concat(const Node& node, const OpInputs& in, Device device);
Tensor run_cast(const Node& node, const OpInputs& in, Device device);
void parse_shape(const onnx::NodeProto& proto, Node& node);
void parse_reshape(const onnx::NodeProto& proto, Node& node);
void parse_transpose(const onnx::NodeProto& proto, Node& node);
void parse_concat(const onnx::NodeProto& proto, Node& node);
void parse_cast(const onnx::NodeProto& proto, Node& node);

DType dtype_from_onnx(int onnx_type, const std::string& what);
std::string onnx_type_name(DType t);  // "FLOAT", "UINT8", "INT64", ... for messages
int64_t attr_int(const onnx::NodeProto& n, const char* name, int64_t fallback);
std::vector<int64_t> attr_ints(const onnx::NodeProto& n, const char* name);
// A host tensor's elements, contiguous (the tensor itself when it already is).
Tensor contiguous_host(const Tensor& t);
// A host tensor's values as int64 (shape inputs: INT64 or INT32), naming `what` otherwise.
std::vector<int64_t> host_ints(const Tensor& t, const std::string& what);

}  // namespace dtrain::inference
