#pragma once
// KServe V2 inference requests and responses: parsing and validation against a model's inputs,
// and the response for one request's rows, in JSON or with the binary tensor data extension
// (Triton's: a JSON header of Inference-Header-Content-Length bytes, then the raw tensors).
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
  std::vector<bool> binary_outputs;    // per output_indices: answer as binary data
  int64_t timeout_us = 0;              // parameters.timeout: the queue timeout it asks for (0: default)
};

// An answer body: JSON, or (json_length > 0) a JSON header of json_length bytes and binary data.
struct InferResponse {
  std::string body;
  size_t json_length = 0;
};

// Parses {"id"?, "parameters"?, "inputs": [{"name", "shape", "datatype", "data"}], "outputs"?:
// [{"name", "parameters"?}]}. `data` may be flat or nested; FP32 values must be finite, UINT8
// integers 0..255. Every model input must be given once, with the model's datatype and a shape
// matching the model's except for the batch dim, which must be 1..max_batch and the same for all
// inputs. With `header_length` (the Inference-Header-Content-Length header), the body's first
// header_length bytes are the JSON and the rest the inputs' binary data, in the order of the
// inputs that carry parameters.binary_data_size (exactly shape x datatype bytes each, little
// endian, FP32 finite; all the bytes used). Outputs come back binary with their
// parameters.binary_data or the request's parameters.binary_data_output. parameters.timeout
// (microseconds) asks for a queue timeout. Throws dtrain::Error naming the problem (malformed
// JSON, the header, the input or output name, datatype, shape, value index, binary size).
InferRequest parse_infer_request(std::string_view body, const std::vector<TensorInfo>& model_inputs,
                                 const std::vector<TensorInfo>& model_outputs, int64_t max_batch,
                                 const std::optional<std::string>& header_length = std::nullopt);

// {"model_name", "model_version", "id"?, "outputs": [{"name", "datatype", "shape", "data"}]} for the
// requested outputs (a binary one has parameters.binary_data_size instead of data, its bytes after
// the JSON); `outputs` holds all model outputs (host tensors of this request's rows).
InferResponse infer_response(const std::string& model_name, int64_t version, const InferRequest& request,
                             const std::vector<TensorInfo>& model_outputs, const std::vector<Tensor>& outputs);

// {"error": message}
std::string error_json(const std::string& message);

}  // namespace dtrain::serve
