#include "serve/infer_request.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "core/error.h"
#include "serve/kserve_types.h"

using nlohmann::json;

namespace dtrain::serve {
namespace {

constexpr int kMaxNesting = 32;
constexpr size_t kMaxMessageChars = 300;

// Writes the leaves of `data` (flat or nested arrays) into `out` as the input's dtype, checking
// each value; `count` counts the leaves seen, stopping at `expected` + 1.
void flatten(const json& data, const TensorInfo& info, Tensor& out, int64_t expected, int64_t& count, int depth) {
  if (data.is_array()) {
    DTRAIN_CHECK(depth < kMaxNesting, "input '", info.name, "': data is nested deeper than ", kMaxNesting, " levels");
    for (const json& v : data) {
      flatten(v, info, out, expected, count, depth + 1);
      if (count > expected) return;
    }
    return;
  }
  if (count >= expected) {
    ++count;
    return;
  }
  const int64_t i = count++;
  switch (info.dtype) {
    case DType::f32: {
      DTRAIN_CHECK(data.is_number(), "input '", info.name, "': data[", i, "] is ", data.type_name(),
                   ", expected a number");
      const float v = static_cast<float>(data.get<double>());
      DTRAIN_CHECK(std::isfinite(v), "input '", info.name, "': data[", i,
                   "] is not a finite FP32 value (NaN/Inf or out of range)");
      out.data<float>()[i] = v;
      break;
    }
    case DType::u8: {
      DTRAIN_CHECK(data.is_number_integer() && data.get<int64_t>() >= 0 && data.get<int64_t>() <= 255 &&
                       !(data.is_number_unsigned() && data.get<uint64_t>() > 255),
                   "input '", info.name, "': data[", i, "] = ", data.dump(),
                   " is not a UINT8 value (an integer 0..255)");
      out.data<uint8_t>()[i] = static_cast<uint8_t>(data.get<int64_t>());
      break;
    }
    case DType::i64: {
      DTRAIN_CHECK(data.is_number_integer() && !(data.is_number_unsigned() &&
                                                 data.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())),
                   "input '", info.name, "': data[", i, "] = ", data.dump(), " is not an INT64 value");
      out.data<int64_t>()[i] = data.get<int64_t>();
      break;
    }
    default:
      fail("input '", info.name, "' has datatype ", kserve_dtype(info.dtype), ", which the server does not accept");
  }
}

// The input's tensor, shape checked against the model's, not yet filled.
Tensor shaped_input(const json& in, const TensorInfo& info, int64_t max_batch) {
  const json& dt = in.at("datatype");
  DTRAIN_CHECK(dt.is_string(), "input '", info.name, "': 'datatype' must be a string");
  DTRAIN_CHECK(dt.get<std::string>() == kserve_dtype(info.dtype), "input '", info.name, "' has datatype ",
               dt.get<std::string>(), ", the model takes ", kserve_dtype(info.dtype));
  const json& shape_json = in.at("shape");
  DTRAIN_CHECK(shape_json.is_array(), "input '", info.name, "': 'shape' must be an array of integers");
  DTRAIN_CHECK(shape_json.size() == info.shape.size(), "input '", info.name, "' has shape ", shape_json.dump(),
               ", the model takes ", shape_str(info.shape), " (", info.shape.size(), " dims)");
  Shape shape;
  for (size_t d = 0; d < shape_json.size(); ++d) {
    const json& v = shape_json[d];
    DTRAIN_CHECK(
        v.is_number_integer() && v.get<int64_t>() >= 0 && !(v.is_number_unsigned() && v.get<uint64_t>() > (1ull << 40)),
        "input '", info.name, "': shape ", shape_json.dump(), " must hold non-negative integers");
    const int64_t n = v.get<int64_t>();
    DTRAIN_CHECK(info.shape[d] < 0 || info.shape[d] == n, "input '", info.name, "' has shape ", shape_json.dump(),
                 ", the model takes ", shape_str(info.shape), " (dim ", d, " must be ", info.shape[d], ")");
    shape.push_back(n);
  }
  const int64_t rows = shape[0];
  DTRAIN_CHECK(rows >= 1, "input '", info.name, "': the batch dim of shape ", shape_json.dump(), " must be at least 1");
  DTRAIN_CHECK(rows <= max_batch, "input '", info.name, "': a batch of ", rows, " rows is over the maximum batch size ",
               max_batch);
  // Dims other than the batch are fixed by the model or bounded above; guard the product anyway.
  long double numel = 1;
  for (int64_t d : shape) numel *= static_cast<long double>(d);
  DTRAIN_CHECK(numel <= (1LL << 31), "input '", info.name, "': shape ", shape_json.dump(), " is too large");
  return Tensor::empty(shape, info.dtype);
}

void fill_from_json(const json& data, const json& shape_json, const TensorInfo& info, Tensor& t) {
  DTRAIN_CHECK(data.is_array(), "input '", info.name, "': 'data' must be an array");
  int64_t count = 0;
  flatten(data, info, t, t.numel(), count, 0);
  DTRAIN_CHECK(count == t.numel(), "input '", info.name, "': data has ", count > t.numel() ? "more than " : "",
               count > t.numel() ? t.numel() : count, " values, shape ", shape_json.dump(), " needs ", t.numel());
}

// Copies the input's binary_data_size bytes from `binary` at `offset` (advanced), checking the
// size against shape x datatype and FP32 values as the JSON path does.
void fill_from_binary(const json& size_json, const TensorInfo& info, Tensor& t, std::string_view binary,
                      size_t& offset) {
  DTRAIN_CHECK(size_json.is_number_integer() && size_json.get<int64_t>() >= 0, "input '", info.name,
               "': parameters.binary_data_size must be a non-negative integer, got ", size_json.dump());
  const uint64_t size = size_json.get<uint64_t>();
  DTRAIN_CHECK(size == static_cast<uint64_t>(t.nbytes()), "input '", info.name, "': binary_data_size ", size,
               " does not match shape ", t.shape().str(), " x ", kserve_dtype(info.dtype), " = ", t.nbytes(), " bytes");
  DTRAIN_CHECK(size <= binary.size() - offset, "input '", info.name, "': binary_data_size ", size, " runs past the ",
               binary.size() - offset, " bytes of binary data left in the body");
  std::memcpy(t.raw_data(), binary.data() + offset, size);
  offset += size;
  if (info.dtype != DType::f32) return;
  const float* v = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i)
    DTRAIN_CHECK(std::isfinite(v[i]), "input '", info.name, "': binary value [", i, "] is not a finite FP32 value");
}

// Splits the body at the Inference-Header-Content-Length header: the JSON and the binary data.
std::pair<std::string_view, std::string_view> split_body(std::string_view body,
                                                         const std::optional<std::string>& header_length) {
  if (!header_length) return {body, {}};
  const std::string& text = *header_length;
  bool digits = !text.empty() && text.size() <= 19;
  for (char c : text) digits = digits && c >= '0' && c <= '9';
  DTRAIN_CHECK(digits, "the Inference-Header-Content-Length header '", text.substr(0, 40),
               "' is not a non-negative integer");
  const unsigned long long n = std::stoull(text);
  DTRAIN_CHECK(n >= 2 && n <= body.size(), "the Inference-Header-Content-Length header ", n,
               " does not fit the body of ", body.size(), " bytes (it gives the length of the JSON at its start)");
  return {body.substr(0, n), body.substr(n)};
}

// A JSON value that must be a boolean when present.
bool flag(const json& object, const char* key, const std::string& where) {
  if (!object.contains(key)) return false;
  DTRAIN_CHECK(object[key].is_boolean(), where, "parameters.", key, " must be true or false");
  return object[key].get<bool>();
}

void add_data(json& out, const Tensor& t) {
  json data = json::array();
  switch (t.dtype()) {
    case DType::f32:
      for (float v : t.to_vector<float>()) data.push_back(v);
      break;
    case DType::i64:
      for (int64_t v : t.to_vector<int64_t>()) data.push_back(v);
      break;
    case DType::i32:
      for (int32_t v : t.to_vector<int32_t>()) data.push_back(v);
      break;
    case DType::u8:
      for (uint8_t v : t.to_vector<uint8_t>()) data.push_back(v);
      break;
    default: fail("output of dtype ", dtype_name(t.dtype()), " cannot be written as JSON");
  }
  out["data"] = std::move(data);
}

// The request-level parameters: timeout, binary_data_output (others are ignored, as KServe allows).
bool parse_request_parameters(const json& root, InferRequest& r) {
  if (!root.contains("parameters")) return false;
  const json& p = root["parameters"];
  DTRAIN_CHECK(p.is_object(), "'parameters' must be an object");
  if (p.contains("timeout")) {
    const json& t = p["timeout"];
    DTRAIN_CHECK(
        t.is_number_integer() && t.get<int64_t>() >= 0 && !(t.is_number_unsigned() && t.get<uint64_t>() > (1ull << 40)),
        "parameters.timeout must be a non-negative integer (microseconds), got ", t.dump());
    r.timeout_us = t.get<int64_t>();
  }
  return flag(p, "binary_data_output", "");
}

void parse_outputs(const json& root, const std::vector<TensorInfo>& model_outputs, bool binary_default,
                   InferRequest& r) {
  if (root.contains("outputs")) {
    const json& outs = root["outputs"];
    DTRAIN_CHECK(outs.is_array(), "'outputs' must be an array of {\"name\": ...}");
    for (const json& o : outs) {
      DTRAIN_CHECK(o.is_object() && o.contains("name") && o["name"].is_string(),
                   "every entry of 'outputs' must be an object with a string 'name'");
      const std::string name = o["name"].get<std::string>();
      size_t k = 0;
      while (k < model_outputs.size() && model_outputs[k].name != name) ++k;
      DTRAIN_CHECK(k < model_outputs.size(), "unknown output '", name, "'");
      bool binary = binary_default;
      if (o.contains("parameters")) {
        DTRAIN_CHECK(o["parameters"].is_object(), "output '", name, "': 'parameters' must be an object");
        if (o["parameters"].contains("binary_data"))
          binary = flag(o["parameters"], "binary_data", "output '" + name + "': ");
      }
      r.output_indices.push_back(k);
      r.binary_outputs.push_back(binary);
    }
  }
  if (r.output_indices.empty())
    for (size_t k = 0; k < model_outputs.size(); ++k) {
      r.output_indices.push_back(k);
      r.binary_outputs.push_back(binary_default);
    }
}

// One entry of 'inputs': its tensor from JSON data or from the binary part at `offset` (advanced).
// `k` is set to the model input it names.
Tensor parse_input(const json& in, const std::vector<TensorInfo>& model_inputs, const InferRequest& r,
                   int64_t max_batch, bool has_binary_header, std::string_view binary, size_t& offset, size_t& k) {
  DTRAIN_CHECK(in.is_object() && in.contains("name") && in["name"].is_string(),
               "every entry of 'inputs' must be an object with a string 'name'");
  const std::string name = in["name"].get<std::string>();
  k = 0;
  while (k < model_inputs.size() && model_inputs[k].name != name) ++k;
  DTRAIN_CHECK(k < model_inputs.size(), "unknown input '", name, "' (the model takes '", model_inputs[0].name, "')");
  DTRAIN_CHECK(!r.inputs[k].defined(), "input '", name, "' is given twice");
  for (const char* key : {"shape", "datatype"}) DTRAIN_CHECK(in.contains(key), "input '", name, "' has no '", key, "'");
  const json* binary_size = nullptr;
  if (in.contains("parameters")) {
    DTRAIN_CHECK(in["parameters"].is_object(), "input '", name, "': 'parameters' must be an object");
    if (in["parameters"].contains("binary_data_size")) binary_size = &in["parameters"]["binary_data_size"];
  }
  Tensor t = shaped_input(in, model_inputs[k], max_batch);
  if (binary_size) {
    DTRAIN_CHECK(has_binary_header, "input '", name,
                 "' has parameters.binary_data_size but the request has no Inference-Header-Content-Length header");
    DTRAIN_CHECK(!in.contains("data"), "input '", name, "' has both 'data' and parameters.binary_data_size");
    fill_from_binary(*binary_size, model_inputs[k], t, binary, offset);
  } else {
    DTRAIN_CHECK(in.contains("data"), "input '", name, "' has no 'data' (nor parameters.binary_data_size)");
    fill_from_json(in["data"], in["shape"], model_inputs[k], t);
  }
  return t;
}

}  // namespace

InferRequest parse_infer_request(std::string_view body, const std::vector<TensorInfo>& model_inputs,
                                 const std::vector<TensorInfo>& model_outputs, int64_t max_batch,
                                 const std::optional<std::string>& header_length) {
  const auto [json_text, binary] = split_body(body, header_length);
  json root;
  try {
    root = json::parse(json_text.begin(), json_text.end());
  } catch (const json::exception& e) {
    // The parser quotes what it last read, which may be most of the body: keep the start.
    std::string what = e.what();
    if (what.size() > kMaxMessageChars) what = what.substr(0, kMaxMessageChars) + "...";
    fail(header_length ? "malformed JSON header (Inference-Header-Content-Length bytes): " : "malformed JSON: ", what);
  }
  InferRequest r;
  size_t offset = 0;  // into `binary`
  try {
    DTRAIN_CHECK(root.is_object(), "the request body must be a JSON object, got ", root.type_name());
    if (root.contains("id")) {
      DTRAIN_CHECK(root["id"].is_string(), "'id' must be a string");
      r.id = root["id"].get<std::string>();
    }
    const bool binary_outputs = parse_request_parameters(root, r);
    DTRAIN_CHECK(root.contains("inputs") && root["inputs"].is_array() && !root["inputs"].empty(),
                 "'inputs' must be a non-empty array");
    r.inputs.resize(model_inputs.size());
    for (const json& in : root["inputs"]) {
      size_t k = 0;
      Tensor t = parse_input(in, model_inputs, r, max_batch, header_length.has_value(), binary, offset, k);
      r.inputs[k] = std::move(t);
      const int64_t rows = r.inputs[k].dim(0);
      DTRAIN_CHECK(r.rows == 0 || r.rows == rows, "input '", model_inputs[k].name, "' has ", rows,
                   " rows, another input has ", r.rows);
      r.rows = rows;
    }
    for (size_t k = 0; k < model_inputs.size(); ++k)
      DTRAIN_CHECK(r.inputs[k].defined(), "missing input '", model_inputs[k].name, "'");
    DTRAIN_CHECK(offset == binary.size(), "the body holds ", binary.size(),
                 " bytes of binary data after the JSON, the inputs' binary_data_size add up to ", offset);
    parse_outputs(root, model_outputs, binary_outputs, r);
  } catch (const json::exception& e) {
    fail("bad request: ", e.what());
  }
  return r;
}

InferResponse infer_response(const std::string& model_name, int64_t version, const InferRequest& request,
                             const std::vector<TensorInfo>& model_outputs, const std::vector<Tensor>& outputs) {
  json root;
  root["model_name"] = model_name;
  root["model_version"] = std::to_string(version);
  if (request.id) root["id"] = *request.id;
  json outs = json::array();
  std::vector<const Tensor*> binary;
  for (size_t i = 0; i < request.output_indices.size(); ++i) {
    const size_t k = request.output_indices[i];
    const Tensor& t = outputs.at(k);
    json o;
    o["name"] = model_outputs.at(k).name;
    o["datatype"] = kserve_dtype(t.dtype());
    o["shape"] = std::vector<int64_t>(t.shape().begin(), t.shape().end());
    if (i < request.binary_outputs.size() && request.binary_outputs[i]) {
      DTRAIN_CHECK(t.is_contiguous() && t.device().is_cpu(), "output '", model_outputs.at(k).name,
                   "' is not a contiguous host tensor");
      o["parameters"] = {{"binary_data_size", t.nbytes()}};
      binary.push_back(&t);
    } else {
      add_data(o, t);
    }
    outs.push_back(std::move(o));
  }
  root["outputs"] = std::move(outs);
  InferResponse r;
  r.body = root.dump(-1, ' ', false, json::error_handler_t::replace);
  if (binary.empty()) return r;
  r.json_length = r.body.size();
  for (const Tensor* t : binary)
    r.body.append(static_cast<const char*>(t->raw_data()), static_cast<size_t>(t->nbytes()));
  return r;
}

std::string error_json(const std::string& message) {
  return json{{"error", message}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace dtrain::serve
