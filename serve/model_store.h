#pragma once
// The models the server serves: every REPO/NAME/V/model.onnx, loaded with dtrain's ONNX engine,
// each version with its own Batcher, or, when config.json has "language_model", its own
// GenerationScheduler (model_with_past.onnx beside model.onnx when the export wrote one); and
// every REPO/NAME/V/pipeline.json, a pipeline over other models (serve/pipeline.h) with the inputs
// and outputs its config.json declares.
// scan() loads new version folders (a version serves, and the newest becomes the default, only
// after it loaded and passed a self-check: one all-zero row, or a language model's token steps),
// and unloads versions whose folder disappeared; requests hold a shared_ptr, so in-flight ones
// finish on the version they started on. A poller thread calls scan() every poll_seconds.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "inference/onnx_engine.h"
#include "serve/batcher.h"
#include "serve/generation.h"
#include "serve/language_model.h"
#include "serve/metrics.h"
#include "serve/pipeline.h"

namespace dtrain::serve {

struct ModelVersion {
  std::string name;
  int64_t version = 0;
  std::optional<OnnxModel> model;           // absent for a pipeline
  std::vector<TensorInfo> inputs, outputs;  // the model's, or the pipeline's config.json's
  int64_t max_batch = 64;                   // min(--max-batch, config.json max_batch_size)
  std::string platform = "onnx";
  std::vector<std::string> labels;                      // from config.json, may be empty
  std::unique_ptr<Batcher> batcher;                     // null for a language model
  std::shared_ptr<const LanguageModel> language_model;  // config.json has "language_model"
  std::unique_ptr<GenerationScheduler> generator;       // language models only
  std::shared_ptr<const Pipeline> pipeline;             // a pipeline (pipeline.json) only
  ModelVersion(std::string name_, int64_t version_, OnnxModel model_)
      : name(std::move(name_)),
        version(version_),
        model(std::move(model_)),
        inputs(model->inputs()),
        outputs(model->outputs()) {}
  ModelVersion(std::string name_, int64_t version_, std::vector<TensorInfo> inputs_, std::vector<TensorInfo> outputs_,
               Pipeline pipeline_)
      : name(std::move(name_)),
        version(version_),
        inputs(std::move(inputs_)),
        outputs(std::move(outputs_)),
        pipeline(std::make_shared<const Pipeline>(std::move(pipeline_))) {}
};

struct StoreOptions {
  std::string repo;
  Device device = Device::cpu();
  BatcherOptions batching;
  LanguageModelOpener open_language_model = open_onnx_language_model;  // tests open fakes
};

// A version the repository holds: READY (serving), UNAVAILABLE (failed to load: `reason`).
struct VersionStatus {
  std::string model;
  int64_t version = 0;
  std::string state;
  std::string reason;
};

// The answer to a lookup: the version, or an HTTP status (404 unknown, 503 not ready) and message.
struct Lookup {
  std::shared_ptr<const ModelVersion> version;
  int status = 200;
  std::string error;
};

class ModelStore {
 public:
  ModelStore(StoreOptions options, ServeMetrics* metrics);
  ~ModelStore();  // stops the poller
  ModelStore(const ModelStore&) = delete;
  ModelStore& operator=(const ModelStore&) = delete;

  // One pass over the repository (loads, self-checks, unloads; logs each change).
  void scan();
  // Calls scan() every `seconds` on a background thread until destruction.
  void start_polling(double seconds);
  bool ready() const { return scanned_; }  // the first scan finished

  // `version` empty: the newest ready one. `version_text` is the path segment, validated here.
  Lookup find(const std::string& model, const std::optional<std::string>& version_text) const;
  std::vector<VersionStatus> index() const;
  std::vector<VersionGauges> gauges() const;

 private:
  std::map<std::string, std::map<int64_t, int64_t>> list_repository() const;
  struct Failed {
    std::string reason;
    int64_t file_stamp = 0;  // retried when the file changes
  };
  std::shared_ptr<const ModelVersion> load(const std::string& model, int64_t version) const;
  void attach_batcher(ModelVersion& v) const;
  void attach_generator(ModelVersion& v, const std::filesystem::path& version_dir, const LanguageModelSpec& spec) const;

  StoreOptions options_;
  ServeMetrics* metrics_;
  std::mutex scan_mutex_;              // one scan at a time
  mutable std::mutex versions_mutex_;  // guards loaded_, failed_, known_models_
  std::map<std::string, std::map<int64_t, std::shared_ptr<const ModelVersion>>> loaded_;
  std::map<std::string, std::map<int64_t, Failed>> failed_;
  std::atomic<bool> scanned_{false};
  std::mutex poll_mutex_;  // guards stop_polling_
  std::condition_variable poll_wake_;
  bool stop_polling_ = false;
  std::thread poller_;
};

}  // namespace dtrain::serve
