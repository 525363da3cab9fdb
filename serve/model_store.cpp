#include "serve/model_store.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/log.h"
#include "core/repository_layout.h"
#include "serve/kserve_types.h"

namespace fs = std::filesystem;

namespace dtrain::serve {
namespace {

int64_t file_stamp(const fs::path& path) {
  std::error_code ec;
  const auto t = fs::last_write_time(path, ec);
  const auto size = fs::file_size(path, ec);
  return ec ? 0 : static_cast<int64_t>(t.time_since_epoch().count()) ^ static_cast<int64_t>(size);
}

// Runs `rows` all-zero rows through the model and checks every output has as many rows.
void check_rows(const ModelVersion& v, int64_t rows) {
  std::vector<Tensor> inputs;
  for (const TensorInfo& in : v.inputs) {
    DTRAIN_CHECK(!in.shape.empty() && in.shape[0] == -1, "input '", in.name, "' ", shape_str(in.shape),
                 " has no dynamic batch dim (dim 0 = -1), which batching needs");
    for (size_t d = 1; d < in.shape.size(); ++d)
      DTRAIN_CHECK(in.shape[d] > 0, "input '", in.name, "' ", shape_str(in.shape),
                   " has a dynamic dim besides the batch dim, which batching cannot merge");
    Shape shape;
    for (int64_t d : in.shape) shape.push_back(d < 0 ? rows : d);
    inputs.push_back(Tensor::zeros(shape, in.dtype));
  }
  const std::vector<Tensor> outputs = v.model->run(inputs);
  DTRAIN_CHECK(outputs.size() == v.outputs.size(), "self-check: the model returned ", outputs.size(),
               " outputs, it declares ", v.outputs.size());
  for (size_t k = 0; k < outputs.size(); ++k)
    DTRAIN_CHECK(outputs[k].ndim() >= 1 && outputs[k].dim(0) == rows, "self-check: output '", v.outputs[k].name,
                 "' has shape ", outputs[k].shape().str(), " for ", rows, " rows");
}

// One row, then max_batch rows. The second run also warms the engine up: its buffers, the
// largest the batcher will ask for, stay in the host block cache for smaller batches
// (core/storage.cpp), so resident memory does not grow batch size by batch size under load.
void self_check(const ModelVersion& v) {
  check_rows(v, 1);
  if (v.max_batch > 1) check_rows(v, v.max_batch);
}

// What config.json says about a version (all optional; a pipeline's inputs and outputs required).
struct VersionConfig {
  int64_t max_batch_size = 0;  // 0: not given
  std::string platform = "onnx";
  std::vector<std::string> labels;
  std::optional<LanguageModelSpec> language_model;
  std::vector<TensorInfo> inputs, outputs;  // as written by dtrain export
};

// config.json's "inputs" or "outputs": [{"name", "datatype", "shape"}].
std::vector<TensorInfo> read_tensor_list(const nlohmann::json& j, const std::string& where) {
  std::vector<TensorInfo> out;
  DTRAIN_CHECK(j.is_array(), where, " must be an array of {\"name\", \"datatype\", \"shape\"}");
  for (const auto& t : j) {
    TensorInfo info;
    info.name = t.at("name").get<std::string>();
    info.dtype = parse_kserve_dtype(t.at("datatype").get<std::string>());
    info.shape = t.at("shape").get<std::vector<int64_t>>();
    out.push_back(std::move(info));
  }
  return out;
}

VersionConfig read_version_config(const fs::path& file) {
  VersionConfig c;
  if (!fs::exists(file)) return c;
  std::ifstream in(file);
  try {
    const nlohmann::json j = nlohmann::json::parse(in);
    if (j.contains("max_batch_size") && j["max_batch_size"].is_number_integer() &&
        j["max_batch_size"].get<int64_t>() > 0)
      c.max_batch_size = j["max_batch_size"].get<int64_t>();
    if (j.contains("platform") && j["platform"].is_string()) c.platform = j["platform"].get<std::string>();
    if (j.contains("labels") && j["labels"].is_array())
      for (const auto& l : j["labels"]) c.labels.push_back(l.is_string() ? l.get<std::string>() : l.dump());
    if (j.contains("language_model")) c.language_model = parse_language_model_spec(j["language_model"], file.string());
    if (j.contains("inputs")) c.inputs = read_tensor_list(j["inputs"], file.string() + ": inputs");
    if (j.contains("outputs")) c.outputs = read_tensor_list(j["outputs"], file.string() + ": outputs");
  } catch (const nlohmann::json::exception& e) {
    fail(file.string(), " is not valid JSON: ", e.what());
  }
  return c;
}

}  // namespace

ModelStore::ModelStore(StoreOptions options, ServeMetrics* metrics) : options_(std::move(options)), metrics_(metrics) {}

ModelStore::~ModelStore() {
  {
    std::lock_guard<std::mutex> lock(poll_mutex_);
    stop_polling_ = true;
  }
  poll_wake_.notify_all();
  if (poller_.joinable()) poller_.join();
}

void ModelStore::start_polling(double seconds) {
  if (seconds <= 0 || poller_.joinable()) return;
  poller_ = std::thread([this, seconds] {
    std::unique_lock<std::mutex> lock(poll_mutex_);
    while (!poll_wake_.wait_for(lock, std::chrono::duration<double>(seconds), [this] { return stop_polling_; })) {
      lock.unlock();
      try {
        scan();
      } catch (const std::exception& e) {
        log_warn("repository scan failed: {}", e.what());
      }
      lock.lock();
    }
  });
}

// A pipeline version: pipeline.json checked against the inputs and outputs config.json declares.
namespace {

std::shared_ptr<ModelVersion> load_pipeline(const std::string& model, int64_t version, const fs::path& dir,
                                            const VersionConfig& config) {
  DTRAIN_CHECK(config.platform == "pipeline", (dir / "config.json").string(), " says platform '", config.platform,
               "', but version ", version, " holds ", kPipelineFileName,
               " (a pipeline's config.json says \"pipeline\")");
  DTRAIN_CHECK(!config.inputs.empty() && !config.outputs.empty(), (dir / "config.json").string(),
               ": a pipeline needs its \"inputs\" and \"outputs\"");
  for (const TensorInfo& in : config.inputs)
    DTRAIN_CHECK(!in.shape.empty() && in.shape[0] == -1, (dir / "config.json").string(), ": input '", in.name,
                 "' has no dynamic batch dim (dim 0 = -1)");
  Pipeline p =
      read_pipeline((dir / std::to_string(version) / kPipelineFileName).string(), config.inputs, config.outputs);
  for (const PipelineStage& s : p.stages)
    DTRAIN_CHECK(s.model != model || !s.url.empty(), "pipeline '", model, "' names itself as a stage");
  return std::make_shared<ModelVersion>(model, version, config.inputs, config.outputs, std::move(p));
}

}  // namespace

std::shared_ptr<const ModelVersion> ModelStore::load(const std::string& model, int64_t version) const {
  const fs::path dir = fs::path(options_.repo) / model;
  const fs::path version_dir = dir / std::to_string(version);
  const VersionConfig config = read_version_config(dir / "config.json");
  if (fs::exists(version_dir / kPipelineFileName)) {
    auto p = load_pipeline(model, version, dir, config);
    p->max_batch = options_.batching.max_batch;
    if (config.max_batch_size > 0) p->max_batch = std::min(p->max_batch, config.max_batch_size);
    p->platform = config.platform;
    p->labels = config.labels;
    return p;
  }
  auto v = std::make_shared<ModelVersion>(model, version,
                                          OnnxModel::load((version_dir / "model.onnx").string(), options_.device));
  v->max_batch = options_.batching.max_batch;
  if (config.max_batch_size > 0) v->max_batch = std::min(v->max_batch, config.max_batch_size);
  v->platform = config.platform;
  v->labels = config.labels;
  if (config.language_model)
    attach_generator(*v, version_dir, *config.language_model);
  else
    attach_batcher(*v);
  return v;
}

void ModelStore::attach_batcher(ModelVersion& v) const {
  self_check(v);
  BatcherOptions batching = options_.batching;
  batching.max_batch = v.max_batch;
  batching.device = options_.device;
  const OnnxModel* engine = &*v.model;
  ServeMetrics* metrics = metrics_;
  v.batcher =
      std::make_unique<Batcher>([engine](const std::vector<Tensor>& inputs) { return engine->run(inputs); }, batching,
                                [metrics, model = v.name, version = v.version](int64_t rows, double compute_s) {
                                  if (metrics) metrics->observe_batch(model, version, rows, compute_s);
                                });
}

// The language model's graphs, self-checked, and its scheduler (up to max_batch sequences at once).
void ModelStore::attach_generator(ModelVersion& v, const fs::path& version_dir, const LanguageModelSpec& spec) const {
  v.language_model = options_.open_language_model(version_dir, *v.model, spec, options_.device);
  check_language_model(*v.language_model);
  GenerationObserver observer;
  if (ServeMetrics* m = metrics_) {
    const std::string model = v.name;
    const int64_t version = v.version;
    observer.prefill = [m, model, version](int64_t, double s) { m->observe_prefill(model, version, s); };
    observer.step = [m, model, version](int64_t rows, double s) { m->observe_decode_step(model, version, rows, s); };
    observer.first_token = [m, model, version](double s) { m->observe_first_token(model, version, s); };
    observer.generated = [m, model, version](int64_t n) { m->count_generated(model, version, n); };
  }
  v.generator = std::make_unique<GenerationScheduler>(v.language_model, GenerationOptions{v.max_batch, options_.device},
                                                      std::move(observer));
}

// What the repository holds now: model -> version -> model.onnx stamp.
std::map<std::string, std::map<int64_t, int64_t>> ModelStore::list_repository() const {
  std::map<std::string, std::map<int64_t, int64_t>> present;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(options_.repo, ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.' || !e.is_directory()) continue;
    auto& versions = present[name];
    for (int64_t v : list_model_versions(options_.repo, name)) {
      for (const char* main : {"model.onnx", kPipelineFileName}) {
        const fs::path file = e.path() / std::to_string(v) / main;
        if (fs::is_regular_file(file)) versions[v] = file_stamp(file);
      }
    }
  }
  if (ec && !scanned_) log_warn("cannot list the model repository {}: {}", options_.repo, ec.message());
  return present;
}

void ModelStore::scan() {
  std::lock_guard<std::mutex> scan_lock(scan_mutex_);
  auto present = list_repository();

  std::vector<std::shared_ptr<const ModelVersion>> unloaded;  // released after the lock
  std::vector<std::pair<std::string, int64_t>> to_load;
  {
    std::lock_guard<std::mutex> lock(versions_mutex_);
    for (auto& [name, versions] : loaded_)
      for (auto it = versions.begin(); it != versions.end();) {
        if (present.count(name) && present[name].count(it->first)) {
          ++it;
          continue;
        }
        log_info("unloaded model '{}' version {}: its folder was removed", name, it->first);
        unloaded.push_back(std::move(it->second));
        it = versions.erase(it);
      }
    for (auto& [name, versions] : failed_)
      std::erase_if(versions, [&](const auto& f) { return !present.count(name) || !present[name].count(f.first); });
    for (const auto& [name, versions] : present)
      for (const auto& [v, stamp] : versions) {
        if (loaded_[name].count(v)) continue;
        const auto f = failed_[name].find(v);
        if (f != failed_[name].end() && f->second.file_stamp == stamp) continue;
        to_load.emplace_back(name, v);
      }
    std::erase_if(loaded_, [&](const auto& m) { return m.second.empty() && !present.count(m.first); });
    std::erase_if(failed_, [&](const auto& m) { return m.second.empty(); });
  }
  unloaded.clear();  // waits for queued requests of the removed versions, outside the lock

  // Oldest first, so the newest becomes the default last.
  for (const auto& [name, v] : to_load) {
    try {
      std::shared_ptr<const ModelVersion> loaded = load(name, v);
      std::lock_guard<std::mutex> lock(versions_mutex_);
      auto& versions = loaded_[name];
      versions[v] = std::move(loaded);
      failed_[name].erase(v);
      log_info("loaded model '{}' version {} (max batch {}{}){}", name, v, versions[v]->max_batch,
               versions[v]->pipeline
                   ? ", a pipeline of " + std::to_string(versions[v]->pipeline->stages.size()) + " stages"
               : !versions[v]->generator              ? ""
               : versions[v]->generator->uses_cache() ? ", language model with key/value cache"
                                                      : ", language model, recomputing (no model_with_past.onnx)",
               versions.rbegin()->first == v ? ", now the default" : "");
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(versions_mutex_);
      failed_[name][v] = Failed{e.what(), present[name][v]};
      log_warn("model '{}' version {} is not served: {}", name, v, e.what());
    }
  }
  scanned_ = true;
}

Lookup ModelStore::find(const std::string& model, const std::optional<std::string>& version_text) const {
  Lookup r;
  std::lock_guard<std::mutex> lock(versions_mutex_);
  const auto m = loaded_.find(model);
  const auto f = failed_.find(model);
  const bool known = (m != loaded_.end() && !m->second.empty()) || (f != failed_.end() && !f->second.empty());
  if (!known && !scanned_) {
    r.status = 503;
    r.error = "the model repository is still loading";
    return r;
  }
  if (!known) {
    r.status = 404;
    r.error = "unknown model '" + model + "'";
    return r;
  }
  if (!version_text) {
    if (m == loaded_.end() || m->second.empty()) {
      r.status = 503;
      r.error = "model '" + model + "' has no ready version";
      return r;
    }
    r.version = m->second.rbegin()->second;
    return r;
  }
  int64_t v = 0;
  const std::string& t = *version_text;
  const bool numeric =
      !t.empty() && t.size() <= 18 && std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (numeric) v = std::stoll(t);
  if (numeric && m != loaded_.end()) {
    if (const auto it = m->second.find(v); it != m->second.end()) {
      r.version = it->second;
      return r;
    }
  }
  if (numeric && f != failed_.end()) {
    if (const auto it = f->second.find(v); it != f->second.end()) {
      r.status = 503;
      r.error = "version " + t + " of model '" + model + "' is not ready: " + it->second.reason;
      return r;
    }
  }
  r.status = 404;
  r.error = "unknown version '" + t + "' of model '" + model + "'";
  return r;
}

std::vector<VersionStatus> ModelStore::index() const {
  std::lock_guard<std::mutex> lock(versions_mutex_);
  std::vector<VersionStatus> out;
  std::set<std::string> names;
  for (const auto& [name, versions] : loaded_) names.insert(name);
  for (const auto& [name, versions] : failed_) names.insert(name);
  for (const std::string& name : names) {
    std::map<int64_t, VersionStatus> rows;
    if (const auto m = loaded_.find(name); m != loaded_.end())
      for (const auto& [v, p] : m->second) rows[v] = VersionStatus{name, v, "READY", ""};
    if (const auto f = failed_.find(name); f != failed_.end())
      for (const auto& [v, failed] : f->second) rows[v] = VersionStatus{name, v, "UNAVAILABLE", failed.reason};
    for (auto& [v, s] : rows) out.push_back(std::move(s));
  }
  return out;
}

std::vector<VersionGauges> ModelStore::gauges() const {
  std::lock_guard<std::mutex> lock(versions_mutex_);
  std::vector<VersionGauges> out;
  for (const auto& [name, versions] : loaded_)
    for (const auto& [v, p] : versions)
      out.push_back(p->generator ? VersionGauges{name, v, p->generator->queued(), p->generator->active()}
                    : p->batcher ? VersionGauges{name, v, p->batcher->queue_depth()}
                                 : VersionGauges{name, v, 0});
  return out;
}

}  // namespace dtrain::serve
