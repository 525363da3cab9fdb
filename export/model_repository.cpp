#include "export/model_repository.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <system_error>

#include "core/error.h"
#include "core/repository_layout.h"

namespace dtrain {

namespace fs = std::filesystem;

namespace {

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

// config.json's datatype names are the KServe V2 protocol's, which dtrain-serve also answers with
// (serve/kserve_types.h; tests/serve checks that the two agree).
const char* repository_datatype(DType t) {
  static constexpr const char* kNames[] = {"FP32", "BF16", "INT32", "INT64", "UINT8"};  // DType order
  return kNames[static_cast<int>(t)];
}

std::string tensors_json(const std::vector<TensorInfo>& ts) {
  std::string out = "[";
  for (size_t i = 0; i < ts.size(); ++i) {
    out += i ? ",\n    " : "\n    ";
    out += "{\"name\": " + json_string(ts[i].name) + ", \"datatype\": \"" + repository_datatype(ts[i].dtype) +
           "\", \"shape\": " + shape_str(ts[i].shape) + "}";
  }
  return out + (ts.empty() ? "]" : "\n  ]");
}

void check_model_name(const std::string& name) {
  const bool plain = !name.empty() && name[0] != '.' && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
  });
  DTRAIN_CHECK(plain, "model name '", name,
               "' is not a plain folder name (letters, digits, '_', '-', '.'; not starting with '.')");
}

// Writes and fsyncs, so the rename that follows never publishes a file the disk does not hold yet.
void write_file(const fs::path& path, const std::vector<std::span<const char>>& parts) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  DTRAIN_CHECK(f != nullptr, "cannot create ", path.string(), ": ", std::strerror(errno));
  bool ok = true;
  size_t bytes = 0;
  for (const auto& p : parts) {
    ok = ok && std::fwrite(p.data(), 1, p.size(), f.get()) == p.size();
    bytes += p.size();
  }
  ok = ok && std::fflush(f.get()) == 0 && ::fsync(::fileno(f.get())) == 0;
  DTRAIN_CHECK(ok, "writing ", bytes, " bytes to ", path.string(), " failed: ", std::strerror(errno));
}

void write_file(const fs::path& path, const std::string& bytes) { write_file(path, {{bytes.data(), bytes.size()}}); }

// Writes REPO/NAME/<version>/`main_file` (+ `more`) and config.json (write_model_version's contract).
int64_t write_version(const std::string& repo, const RepositoryModelConfig& config, int64_t version,
                      const char* main_file, const std::vector<std::span<const char>>& main_parts,
                      const std::vector<VersionFile>& more);

}  // namespace

std::string model_config_json(const RepositoryModelConfig& c) {
  std::string out = "{\n  \"name\": " + json_string(c.name) + ",\n  \"platform\": \"" +
                    (c.pipeline_stages.empty() ? "onnx" : "pipeline") +
                    "\",\n  \"max_batch_size\": " + std::to_string(c.max_batch_size) +
                    ",\n  \"inputs\": " + tensors_json(c.inputs) + ",\n  \"outputs\": " + tensors_json(c.outputs) +
                    ",\n  \"labels\": [";
  for (size_t i = 0; i < c.labels.size(); ++i) out += (i ? ", " : "") + json_string(c.labels[i]);
  out += "]";
  if (const auto& lm = c.language_model)
    out += ",\n  \"language_model\": {\"vocab\": " + std::to_string(lm->vocab) +
           ", \"ctx\": " + std::to_string(lm->ctx) + ", \"n_layer\": " + std::to_string(lm->n_layer) +
           ", \"n_head\": " + std::to_string(lm->n_head) + ", \"n_embd\": " + std::to_string(lm->n_embd) + "}";
  if (!c.pipeline_stages.empty()) out += ",\n  \"stages\": " + c.pipeline_stages;
  return out + "\n}\n";
}

int64_t write_model_version(const std::string& repo, const RepositoryModelConfig& config, int64_t version,
                            const std::string& onnx_bytes) {
  ExportedModel m;
  m.parts.emplace_back(onnx_bytes.data(), onnx_bytes.size());
  return write_model_version(repo, config, version, m);
}

int64_t write_model_version(const std::string& repo, const RepositoryModelConfig& config, int64_t version,
                            const ExportedModel& model, const std::vector<VersionFile>& more) {
  return write_version(repo, config, version, "model.onnx", model.parts, more);
}

namespace {

// {"model": ..., "version": ..., "inputs": {...}, "outputs": {...}} for a stage reading `in` and
// writing `outs` (stage tensor -> pipeline tensor).
std::string stage_json(const std::string& model, int64_t version, const std::string& in,
                       const std::vector<std::pair<std::string, std::string>>& outs) {
  std::string s = "{\"model\": \"" + model + "\", \"version\": " + std::to_string(version) +
                  ", \"inputs\": {\"input\": \"" + in + "\"}, \"outputs\": {";
  for (size_t i = 0; i < outs.size(); ++i) s += (i ? ", \"" : "\"") + outs[i].first + "\": \"" + outs[i].second + "\"";
  return s + "}}";
}

}  // namespace

PipelineExport export_pipeline(const std::string& repo, const std::string& name, Model& model,
                               const ExportOptions& options, const std::vector<int64_t>& split_at,
                               const std::vector<std::string>& labels, int64_t max_batch_size, int64_t version) {
  const auto n = static_cast<int64_t>(model.net().children().size());
  std::vector<int64_t> cuts = split_at;
  cuts.insert(cuts.begin(), 0);
  cuts.push_back(n);
  for (size_t k = 0; k + 1 < cuts.size(); ++k)
    DTRAIN_CHECK(cuts[k] < cuts[k + 1], "pipeline '", name, "': split points must increase within 1..", n - 1);
  PipelineExport result;
  std::string stages = "[";
  std::vector<TensorInfo> inputs, outputs;
  std::string previous = "input";
  for (size_t k = 0; k + 1 < cuts.size(); ++k) {
    ExportOptions o = options;
    o.layer_begin = cuts[k];
    o.layer_end = cuts[k + 1];
    const std::string stage = name + ".stage" + std::to_string(k + 1);
    o.metadata.emplace_back("pipeline", name);
    o.metadata.emplace_back("layers", std::to_string(cuts[k]) + ".." + std::to_string(cuts[k + 1] - 1));
    const ExportedModel e = export_onnx(model, o);
    const bool last = k + 2 == cuts.size();
    RepositoryModelConfig rc{stage, e.inputs, e.outputs, max_batch_size, last ? labels : std::vector<std::string>{}};
    const int64_t v = write_model_version(repo, rc, version, e);
    if (k == 0) inputs = e.inputs;
    std::vector<std::pair<std::string, std::string>> outs;
    for (const TensorInfo& t : e.outputs) outs.emplace_back(t.name, last ? t.name : stage + "." + t.name);
    if (last) outputs = e.outputs;
    stages += (k ? ",\n    " : "\n    ") + stage_json(stage, v, previous, outs);
    previous = outs.front().second;
    result.stages.push_back({stage, v, cuts[k], cuts[k + 1] - 1, e.size()});
  }
  RepositoryModelConfig pipeline{name, inputs, outputs, max_batch_size, labels};
  pipeline.pipeline_stages = stages + "\n  ]";
  result.version = write_pipeline_version(repo, pipeline, version);
  return result;
}

int64_t write_pipeline_version(const std::string& repo, const RepositoryModelConfig& config, int64_t version) {
  DTRAIN_CHECK(!config.pipeline_stages.empty(), "model '", config.name, "': a pipeline needs its stages");
  const std::string body = "{\"stages\": " + config.pipeline_stages + "}\n";
  return write_version(repo, config, version, kPipelineFileName, {{body.data(), body.size()}}, {});
}

namespace {

int64_t write_version(const std::string& repo, const RepositoryModelConfig& config, int64_t version,
                      const char* main_file, const std::vector<std::span<const char>>& main_parts,
                      const std::vector<VersionFile>& more) {
  check_model_name(config.name);
  for (const VersionFile& f : more)
    DTRAIN_CHECK(f.model && f.name != "model.onnx" && f.name.find('/') == std::string::npos && !f.name.empty() &&
                     f.name[0] != '.',
                 "model '", config.name, "': '", f.name, "' is not a plain file name beside model.onnx");
  DTRAIN_CHECK(version >= 0, "model version must be positive, got ", version);
  const fs::path dir = fs::path(repo) / config.name;
  const std::vector<int64_t> versions = list_model_versions(repo, config.name);
  const int64_t next = versions.empty() ? 1 : versions.back() + 1;
  if (version == 0) version = next;
  const fs::path final_dir = dir / std::to_string(version);
  std::error_code ec;
  DTRAIN_CHECK(!fs::exists(final_dir, ec), "version ", version, " of model '", config.name, "' already exists at ",
               final_dir.string(), " (versions are never overwritten; the next free version is ", next, ")");
  // Folders this call creates are removed again when it fails, so a failed export leaves nothing.
  std::vector<fs::path> created;
  for (const fs::path& d : {fs::path(repo), dir})
    if (!fs::exists(d, ec)) created.push_back(d);
  fs::create_directories(dir, ec);
  DTRAIN_CHECK(!ec, "cannot create ", dir.string(), ": ", ec.message());

  // The folder is filled under a name the server ignores, then renamed into place in one step;
  // config.json follows the same way.
  const fs::path tmp = dir / (".tmp-" + std::to_string(version) + "-" + std::to_string(::getpid()));
  const fs::path config_tmp = dir / ".config.json.tmp";
  try {
    fs::remove_all(tmp, ec);
    fs::create_directory(tmp, ec);
    DTRAIN_CHECK(!ec, "cannot create ", tmp.string(), ": ", ec.message());
    write_file(tmp / main_file, main_parts);
    for (const VersionFile& f : more) write_file(tmp / f.name, f.model->parts);
    write_file(config_tmp, model_config_json(config));
    // rename(2) onto an existing non-empty folder fails, so a version that appeared meanwhile survives.
    fs::rename(tmp, final_dir, ec);
    DTRAIN_CHECK(!ec, "cannot rename ", tmp.string(), " to ", final_dir.string(), ": ", ec.message());
  } catch (...) {
    fs::remove_all(tmp, ec);
    fs::remove(config_tmp, ec);
    for (auto d = created.rbegin(); d != created.rend(); ++d) fs::remove(*d, ec);  // only when empty
    throw;
  }
  fs::rename(config_tmp, dir / "config.json", ec);
  DTRAIN_CHECK(!ec, "cannot rename ", config_tmp.string(), " to ", (dir / "config.json").string(), ": ", ec.message());
  return version;
}

}  // namespace

}  // namespace dtrain
