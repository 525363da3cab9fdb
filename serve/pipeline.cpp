#include "serve/pipeline.h"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstring>
#include <fstream>
#include <set>

#include "serve/kserve_types.h"

using nlohmann::json;

namespace dtrain::serve {
namespace {

// {"NAME": "TENSOR", ...} as pairs, checking both are non-empty strings.
std::vector<std::pair<std::string, std::string>> tensor_map(const json& j, const std::string& where) {
  DTRAIN_CHECK(j.is_object() && !j.empty(), where, " must be a non-empty object {\"name\": \"tensor\", ...}");
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [key, value] : j.items()) {
    DTRAIN_CHECK(!key.empty() && value.is_string() && !value.get<std::string>().empty(), where, ".", key,
                 " must name a tensor (a non-empty string)");
    out.emplace_back(key, value.get<std::string>());
  }
  return out;
}

PipelineStage parse_stage(const json& s, const std::string& where) {
  DTRAIN_CHECK(s.is_object(), where, " must be an object");
  PipelineStage stage;
  DTRAIN_CHECK(s.contains("model") && s["model"].is_string() && !s["model"].get<std::string>().empty(), where,
               ".model must be a model name");
  stage.model = s["model"].get<std::string>();
  DTRAIN_CHECK(stage.model.find('/') == std::string::npos && stage.model[0] != '.', where, ".model '", stage.model,
               "' is not a plain model name");
  if (s.contains("version")) {
    DTRAIN_CHECK(s["version"].is_number_integer() && s["version"].get<int64_t>() >= 0, where,
                 ".version must be a non-negative integer (0: the newest)");
    stage.version = s["version"].get<int64_t>();
  }
  if (s.contains("url")) {
    DTRAIN_CHECK(s["url"].is_string() && s["url"].get<std::string>().rfind("http://", 0) == 0 &&
                     s["url"].get<std::string>().size() > 7,
                 where, ".url must be http://HOST:PORT of another dtrain-serve");
    stage.url = s["url"].get<std::string>();
    while (!stage.url.empty() && stage.url.back() == '/') stage.url.pop_back();
  }
  DTRAIN_CHECK(s.contains("inputs") && s.contains("outputs"), where, " needs \"inputs\" and \"outputs\"");
  stage.inputs = tensor_map(s["inputs"], where + ".inputs");
  stage.outputs = tensor_map(s["outputs"], where + ".outputs");
  return stage;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// The JSON header and binary tail of a request carrying `inputs` as binary tensors.
std::string binary_request(const NamedTensors& inputs, size_t& header_length) {
  json header{{"inputs", json::array()}, {"parameters", {{"binary_data_output", true}}}};
  std::string tail;
  for (const auto& [name, t] : inputs) {
    const Tensor c = t.device().is_cpu() && t.is_contiguous() ? t : t.to(Device::cpu());
    header["inputs"].push_back({{"name", name},
                                {"datatype", kserve_dtype(c.dtype())},
                                {"shape", std::vector<int64_t>(c.shape().begin(), c.shape().end())},
                                {"parameters", {{"binary_data_size", c.nbytes()}}}});
    tail.append(static_cast<const char*>(c.raw_data()), static_cast<size_t>(c.nbytes()));
  }
  std::string body = header.dump();
  header_length = body.size();
  return body + tail;
}

// The outputs of a binary answer (Inference-Header-Content-Length, binary_data_size per output).
NamedTensors parse_binary_answer(const httplib::Result& r, const std::string& who) {
  const std::string& body = r->body;
  size_t n = body.size();
  if (r->has_header("Inference-Header-Content-Length")) {
    const std::string h = r->get_header_value("Inference-Header-Content-Length");
    DTRAIN_CHECK(!h.empty() && h.size() < 19 && h.find_first_not_of("0123456789") == std::string::npos, who,
                 " answered a bad Inference-Header-Content-Length '", h.substr(0, 40), "'");
    n = std::stoull(h);
    DTRAIN_CHECK(n <= body.size(), who, " answered a header length past its body");
  }
  const json answer = json::parse(body.begin(), body.begin() + static_cast<std::ptrdiff_t>(n));
  NamedTensors out;
  size_t offset = n;
  for (const json& o : answer.at("outputs")) {
    Shape shape;
    for (const json& d : o.at("shape")) shape.push_back(d.get<int64_t>());
    Tensor t = Tensor::empty(shape, parse_kserve_dtype(o.at("datatype").get<std::string>()));
    const uint64_t size = o.at("parameters").at("binary_data_size").get<uint64_t>();
    DTRAIN_CHECK(size == static_cast<uint64_t>(t.nbytes()) && size <= body.size() - offset, who, " answered output '",
                 o.at("name").get<std::string>(), "' with ", size, " bytes for shape ", shape.str());
    std::memcpy(t.raw_data(), body.data() + offset, size);
    offset += size;
    out[o.at("name").get<std::string>()] = std::move(t);
  }
  return out;
}

}  // namespace

Pipeline parse_pipeline(const json& root, const std::string& origin, const std::vector<TensorInfo>& inputs,
                        const std::vector<TensorInfo>& outputs) {
  Pipeline p;
  try {
    DTRAIN_CHECK(root.is_object() && root.contains("stages") && root["stages"].is_array() && !root["stages"].empty(),
                 origin, ": \"stages\" must be a non-empty array");
    std::set<std::string> known;
    for (const TensorInfo& in : inputs) known.insert(in.name);
    for (size_t k = 0; k < root["stages"].size(); ++k) {
      const std::string where = origin + ": stages[" + std::to_string(k) + "]";
      PipelineStage stage = parse_stage(root["stages"][k], where);
      for (const auto& [name, tensor] : stage.inputs)
        DTRAIN_CHECK(known.count(tensor), where, ".inputs.", name, " reads '", tensor,
                     "', which is neither a pipeline input nor an earlier stage's output");
      for (const auto& [name, tensor] : stage.outputs)
        DTRAIN_CHECK(known.insert(tensor).second, where, ".outputs.", name, " writes '", tensor,
                     "', which a pipeline input or an earlier stage already names");
      p.stages.push_back(std::move(stage));
    }
    for (const TensorInfo& out : outputs)
      DTRAIN_CHECK(known.count(out.name), origin, ": no stage writes the pipeline output '", out.name, "'");
  } catch (const json::exception& e) {
    fail(origin, ": ", e.what());
  }
  return p;
}

Pipeline read_pipeline(const std::string& path, const std::vector<TensorInfo>& inputs,
                       const std::vector<TensorInfo>& outputs) {
  std::ifstream in(path);
  DTRAIN_CHECK(in.good(), "cannot read ", path);
  json root;
  try {
    root = json::parse(in);
  } catch (const json::exception& e) {
    fail(path, " is not valid JSON: ", e.what());
  }
  return parse_pipeline(root, path, inputs, outputs);
}

std::vector<Tensor> run_pipeline(const Pipeline& pipeline, const std::vector<TensorInfo>& input_infos,
                                 const std::vector<Tensor>& inputs, const std::vector<TensorInfo>& output_infos,
                                 const LocalStageRunner& local, const StageObserver& observe) {
  DTRAIN_CHECK(inputs.size() == input_infos.size(), "pipeline: ", inputs.size(), " inputs for ", input_infos.size());
  NamedTensors tensors;
  for (size_t i = 0; i < inputs.size(); ++i) tensors[input_infos[i].name] = inputs[i];
  for (size_t k = 0; k < pipeline.stages.size(); ++k) {
    const PipelineStage& stage = pipeline.stages[k];
    NamedTensors in;
    for (const auto& [name, tensor] : stage.inputs) in[name] = tensors.at(tensor);
    const auto start = std::chrono::steady_clock::now();
    const NamedTensors out = stage.url.empty() ? local(stage, in) : call_remote_stage(stage, in);
    if (observe) observe(k, seconds_since(start));
    for (const auto& [name, tensor] : stage.outputs) {
      const auto it = out.find(name);
      if (it == out.end())
        throw StageError(
            502, "stage " + std::to_string(k + 1) + " (model '" + stage.model + "') has no output '" + name + "'");
      tensors[tensor] = it->second;
    }
  }
  std::vector<Tensor> result;
  for (const TensorInfo& o : output_infos) result.push_back(tensors.at(o.name));
  return result;
}

NamedTensors call_remote_stage(const PipelineStage& stage, const NamedTensors& inputs) {
  const std::string who = "stage model '" + stage.model + "' at " + stage.url;
  httplib::Client client(stage.url);
  client.set_connection_timeout(5, 0);
  client.set_read_timeout(60, 0);
  size_t header_length = 0;
  const std::string body = binary_request(inputs, header_length);
  const std::string path = "/v2/models/" + stage.model +
                           (stage.version > 0 ? "/versions/" + std::to_string(stage.version) : std::string()) +
                           "/infer";
  const httplib::Headers headers{{"Inference-Header-Content-Length", std::to_string(header_length)}};
  const httplib::Result r = client.Post(path, headers, body, "application/octet-stream");
  if (!r) throw StageError(502, who + " cannot be reached: " + httplib::to_string(r.error()));
  if (r->status != 200)
    throw StageError(502, who + " answered " + std::to_string(r->status) + ": " + r->body.substr(0, 300));
  try {
    return parse_binary_answer(r, who);
  } catch (const std::exception& e) {
    throw StageError(502, who + " answered what is not a binary V2 answer: " + e.what());
  }
}

}  // namespace dtrain::serve
