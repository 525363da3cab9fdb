#pragma once
// Internal to export/: what every exported graph shares. GraphWriter is core's OnnxGraph on the
// ONNX library (values and nodes named by the layer's path, "3/Gemm"; initializers by the
// parameter's name, "3.weight"); the rest frames a graph into a checked, serialized model.
#include <onnx/onnx_pb.h>

#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "core/model.h"
#include "core/onnx_graph.h"
#include "core/tensor_info.h"
#include "export/onnx_export.h"

namespace dtrain::onnx_export {

// An initializer whose data stays where it is (a parameter, a quantized buffer) and is spliced
// into the file after the serialized skeleton.
struct DeferredData {
  std::string name;
  std::span<const char> data;
  std::shared_ptr<const void> owner;
};

class GraphWriter : public OnnxGraph {
 public:
  GraphWriter(onnx::GraphProto* graph, bool int8) : g_(graph), int8_(int8) {}
  // Initializers at least this large are deferred rather than copied into the proto.
  static constexpr size_t kDeferBytes = 64 * 1024;
  std::vector<DeferredData>& deferred() { return deferred_; }
  onnx::GraphProto* graph() const { return g_; }

  // A node whose outputs are named by the caller.
  onnx::NodeProto* named_node(const std::string& op, const std::string& name, const std::vector<std::string>& inputs,
                              const std::vector<std::string>& outputs);
  // One-output node whose output is named like the node ("<path>/<op>", "_1", "_2", ... on repeats).
  std::string node(const std::string& op_type, const std::string& path, const std::vector<std::string>& inputs,
                   const std::vector<OnnxAttr>& attrs = {}) override;
  static void attr(onnx::NodeProto* n, const std::string& name, int64_t v);
  static void attr(onnx::NodeProto* n, const std::string& name, float v);
  static void attr(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v);
  // Renames a node's output `from` to `to` wherever a node reads it (for graph outputs).
  void rename(const std::string& from, const std::string& to);

  // `owner` keeps `data` alive; with one, a large initializer is deferred: the proto gets a
  // one-byte placeholder (the checker reads no raw_data lengths) that the file never contains.
  onnx::TensorProto* initializer(const std::string& name, int data_type, const std::vector<int64_t>& dims,
                                 const void* data, size_t bytes, std::shared_ptr<const void> owner = nullptr);
  std::string scalar(const std::string& name, float value) override;
  std::string constant(const std::string& name, const std::vector<int64_t>& dims,
                       const std::vector<float>& values) override;
  std::string constant(const std::string& name, const std::vector<int64_t>& dims,
                       const std::vector<int64_t>& values) override;
  std::string param(const Parameter& p) override;
  std::string weight(const Parameter& p, bool transpose) override;

 private:
  std::string shared_constant(const std::string& name, int data_type, const std::vector<int64_t>& dims,
                              const void* data, size_t bytes);
  std::string suffix(const std::string& base);
  onnx::GraphProto* g_;
  bool int8_;
  std::map<std::string, int> used_;
  std::map<std::string, std::string> constants_;  // name -> the bytes of its dims and values
  std::set<std::string> scalars_;
  std::vector<DeferredData> deferred_;
};

// A dim of a graph input or output: a size, or a name for a dynamic one (-1 to clients).
struct Dim {
  int64_t size = -1;
  std::string name;
};
inline Dim dim(int64_t size) { return {size, {}}; }
inline Dim dim(const char* name) { return {-1, name}; }

int onnx_type(DType t);
// Declares graph input / output `name` and returns it as clients see it.
TensorInfo add_graph_input(onnx::GraphProto* g, const std::string& name, DType dtype, const std::vector<Dim>& dims);
TensorInfo add_graph_output(onnx::GraphProto* g, const std::string& name, DType dtype, const std::vector<Dim>& dims);

// Checks the options against the model; returns the element type of its input.
DType check_options(const Model& model, const ExportOptions& options);
// An empty model: IR version, producer, the standard domain at `opset`, a graph named `name`.
void start_model(onnx::ModelProto& proto, int opset, const std::string& name);
// The exporter's metadata_props, then the caller's (a caller's key replaces the exporter's).
void add_metadata(onnx::ModelProto& proto, const Model& model, DType input_dtype, const ExportOptions& options);
// check_model, then strict shape inference; throws dtrain::Error with the checker's message.
void check_model_proto(onnx::ModelProto& model);
// The file as parts: the serialized skeleton, then each deferred initializer spliced in.
void serialize(onnx::ModelProto& proto, GraphWriter& gw, ExportedModel& result);

}  // namespace dtrain::onnx_export
