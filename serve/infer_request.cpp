#include "serve/infer_request.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <limits>

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

Tensor parse_input(const json& in, const TensorInfo& info, int64_t max_batch) {
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
  Tensor t = Tensor::empty(shape, info.dtype);
  const json& data = in.at("data");
  DTRAIN_CHECK(data.is_array(), "input '", info.name, "': 'data' must be an array");
  int64_t count = 0;
  flatten(data, info, t, t.numel(), count, 0);
  DTRAIN_CHECK(count == t.numel(), "input '", info.name, "': data has ", count > t.numel() ? "more than " : "",
               count > t.numel() ? t.numel() : count, " values, shape ", shape_json.dump(), " needs ", t.numel());
  return t;
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

}  // namespace

InferRequest parse_infer_request(std::string_view body, const std::vector<TensorInfo>& model_inputs,
                                 const std::vector<TensorInfo>& model_outputs, int64_t max_batch) {
  json root;
  try {
    root = json::parse(body.begin(), body.end());
  } catch (const json::exception& e) {
    // The parser quotes what it last read, which may be most of the body: keep the start.
    std::string what = e.what();
    if (what.size() > kMaxMessageChars) what = what.substr(0, kMaxMessageChars) + "...";
    fail("malformed JSON: ", what);
  }
  InferRequest r;
  try {
    DTRAIN_CHECK(root.is_object(), "the request body must be a JSON object, got ", root.type_name());
    if (root.contains("id")) {
      DTRAIN_CHECK(root["id"].is_string(), "'id' must be a string");
      r.id = root["id"].get<std::string>();
    }
    DTRAIN_CHECK(root.contains("inputs") && root["inputs"].is_array() && !root["inputs"].empty(),
                 "'inputs' must be a non-empty array");
    r.inputs.resize(model_inputs.size());
    for (const json& in : root["inputs"]) {
      DTRAIN_CHECK(in.is_object() && in.contains("name") && in["name"].is_string(),
                   "every entry of 'inputs' must be an object with a string 'name'");
      const std::string name = in["name"].get<std::string>();
      size_t k = 0;
      while (k < model_inputs.size() && model_inputs[k].name != name) ++k;
      DTRAIN_CHECK(k < model_inputs.size(), "unknown input '", name, "' (the model takes '", model_inputs[0].name,
                   "')");
      DTRAIN_CHECK(!r.inputs[k].defined(), "input '", name, "' is given twice");
      for (const char* key : {"shape", "datatype", "data"})
        DTRAIN_CHECK(in.contains(key), "input '", name, "' has no '", key, "'");
      r.inputs[k] = parse_input(in, model_inputs[k], max_batch);
      const int64_t rows = r.inputs[k].dim(0);
      DTRAIN_CHECK(r.rows == 0 || r.rows == rows, "input '", name, "' has ", rows, " rows, another input has ", r.rows);
      r.rows = rows;
    }
    for (size_t k = 0; k < model_inputs.size(); ++k)
      DTRAIN_CHECK(r.inputs[k].defined(), "missing input '", model_inputs[k].name, "'");
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
        r.output_indices.push_back(k);
      }
    }
    if (r.output_indices.empty())
      for (size_t k = 0; k < model_outputs.size(); ++k) r.output_indices.push_back(k);
  } catch (const json::exception& e) {
    fail("bad request: ", e.what());
  }
  return r;
}

std::string infer_response_json(const std::string& model_name, int64_t version, const InferRequest& request,
                                const std::vector<TensorInfo>& model_outputs, const std::vector<Tensor>& outputs) {
  json root;
  root["model_name"] = model_name;
  root["model_version"] = std::to_string(version);
  if (request.id) root["id"] = *request.id;
  json outs = json::array();
  for (size_t k : request.output_indices) {
    const Tensor& t = outputs.at(k);
    json o;
    o["name"] = model_outputs.at(k).name;
    o["datatype"] = kserve_dtype(t.dtype());
    o["shape"] = std::vector<int64_t>(t.shape().begin(), t.shape().end());
    add_data(o, t);
    outs.push_back(std::move(o));
  }
  root["outputs"] = std::move(outs);
  return root.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string error_json(const std::string& message) {
  return json{{"error", message}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace dtrain::serve
