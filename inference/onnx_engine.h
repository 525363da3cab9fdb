#pragma once
// dtrain's own ONNX engine (used by `dtrain eval` and dtrain-serve): loads a model file, folds
// its constant subgraphs (DequantizeLinear of int8 weights) into f32 tensors on the target device,
// fuses a Relu (and, after a Conv, a MaxPool) into the node it follows and a Transpose of the last
// two dims into the MatMul that reads it, and runs the graph's nodes in
// order on core's kernels. The ops it runs are those dtrain's exporter writes, one entry each in
// inference/onnx_ops.cpp's table; anything else is an error at load naming the op and the node.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "core/tensor_info.h"

namespace dtrain {

class OnnxModel {
 public:
  // Throws naming the file (or `source` for bytes) and what is wrong or unsupported.
  static OnnxModel load(const std::string& path, Device device = Device::cpu());
  static OnnxModel from_bytes(const std::string& bytes, Device device = Device::cpu(),
                              const std::string& source = "<bytes>");

  const std::vector<TensorInfo>& inputs() const;  // shape -1 = dynamic (batch)
  const std::vector<TensorInfo>& outputs() const;
  const std::map<std::string, std::string>& metadata() const;  // metadata_props
  Device device() const;
  int64_t opset() const;
  // The constants (by value name, sorted) that the engine also keeps on the host because ops read
  // their values there (shapes, axes, indices, scalars: up to inference::kHostCopyElems elements),
  // so a run on a GPU copies none of them back from the device.
  const std::vector<std::string>& host_constants() const;

  // One tensor per input, in inputs() order, on any device (copied to the model's device when
  // elsewhere). Checks the count, dtypes, ranks and fixed dims, naming the input. Returns one tensor
  // per output, in outputs() order, on the model's device. Safe to call from several threads at once:
  // a run shares only the read-only weights. On a GPU the work goes to the calling thread's compute
  // stream (core/gpu.h: its StreamScope's, else the device's shared one), and the outputs belong to it.
  std::vector<Tensor> run(const std::vector<Tensor>& inputs) const;

  // A decoder's key/value cache without copies. append_in_place[i] lets input i be a strided view
  // (Tensor::as_strided) into a larger buffer the caller owns: the first P positions of a cache with
  // room for more. Where the graph appends to that input (a Concat of it and new keys along one
  // axis, read only by MatMuls and graph outputs) and the model runs on the CPU, the new elements
  // are written into the room after the view and the Concat's output, a graph output too, is the
  // grown view: per step only the new positions are written. Elsewhere such an input is copied to a
  // contiguous tensor first, with the same results.
  struct RunOptions {
    std::vector<bool> append_in_place;  // by input index; missing entries are false
  };
  std::vector<Tensor> run(const std::vector<Tensor>& inputs, const RunOptions& options) const;
  // Whether input i is one a Concat appends to in place (append_in_place then saves the copies).
  bool appends_in_place(size_t input) const;

  struct Impl;

 private:
  explicit OnnxModel(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace dtrain
