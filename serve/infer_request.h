#pragma once
// KServe V2 inference requests and responses (JSON): parsing and validation against a model's
// inputs, and the response for one request's rows.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"
#include "core/tensor_info.h"

namespace dtrain::serve {

struct InferRequest {
  std::optional<std::string> id;
  int64_t rows = 0;                    // the batch dim every input shares
  std::vector<Tensor> inputs;          // host tensors in the model's input order, [rows, ...]
  std::vector<size_t> output_indices;  // the model outputs to return (all when none were asked)
};

// Parses {"id"?, "inputs": [{"name", "shape", "datatype", "data"}], "outputs"?: [{"name"}]}.
// `data` may be flat or nested; FP32 values must be finite, UINT8 integers 0..255. Every model
// input must be given once, with the model's datatype and a shape matching the model's except for
// the batch dim, which must be 1..max_batch and the same for all inputs. Throws dtrain::Error
// naming the problem (malformed JSON, the input or output name, datatype, shape, value index).
InferRequest parse_infer_request(std::string_view body, const std::vector<TensorInfo>& model_inputs,
                                 const std::vector<TensorInfo>& model_outputs, int64_t max_batch);

// {"model_name", "model_version", "id"?, "outputs": [{"name", "datatype", "shape", "data"}]} for the
// requested outputs; `outputs` holds all model outputs (host tensors of this request's rows).
std::string infer_response_json(const std::string& model_name, int64_t version, const InferRequest& request,
                                const std::vector<TensorInfo>& model_outputs, const std::vector<Tensor>& outputs);

// {"error": message}
std::string error_json(const std::string& message);

}  // namespace dtrain::serve
