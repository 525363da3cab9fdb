#pragma once
// Writes the model repository layout the server reads (core/repository_layout.h):
// REPO/NAME/config.json and one folder per version, REPO/NAME/<V>/model.onnx (V = 1, 2, ...). A
// version folder appears complete or not at all (written under a temporary name, then renamed),
// and an existing version is never overwritten.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/repository_layout.h"
#include "core/tensor_info.h"
#include "export/onnx_export.h"

namespace dtrain {

struct RepositoryModelConfig {
  std::string name;
  std::vector<TensorInfo> inputs, outputs;
  int64_t max_batch_size = 64;
  std::vector<std::string> labels;                                 // class names, index = class id; empty when unknown
  std::optional<LanguageModelInfo> language_model = std::nullopt;  // a language model's sizes
  std::string pipeline_stages = "";  // a pipeline (platform "pipeline"): its "stages" array as JSON text
};

// The decoding graph with a key/value cache a language model's version folder may hold beside
// model.onnx (export_onnx_with_past).
constexpr const char* kModelWithPastFile = "model_with_past.onnx";

// A file of a version folder besides model.onnx.
struct VersionFile {
  std::string name;  // a plain file name, "model_with_past.onnx"
  const ExportedModel* model;
};

// {"name": ..., "platform": "onnx" (or "pipeline", with "stages"), "max_batch_size": ..., "inputs": [{"name",
// "datatype" (KServe V2: FP32, UINT8, INT64), "shape" (-1 = dynamic: the batch, a language model's length)}],
// "outputs": [...], "labels": [...]} and for a language model
// "language_model": {"vocab", "ctx", "n_layer", "n_head", "n_embd"}.
std::string model_config_json(const RepositoryModelConfig& config);

// Writes REPO/NAME/<version>/model.onnx and REPO/NAME/config.json. version 0 means one past the
// newest existing version (1 for a new model). Throws naming the folder when that version already
// exists, or when the name is not a plain folder name. Returns the version written.
int64_t write_model_version(const std::string& repo, const RepositoryModelConfig& config, int64_t version,
                            const std::string& onnx_bytes);
// The same for an export, written straight from its parts (no copy of the weights), with `more`
// files beside model.onnx in the version folder (all appear at once, in one rename).
int64_t write_model_version(const std::string& repo, const RepositoryModelConfig& config, int64_t version,
                            const ExportedModel& model, const std::vector<VersionFile>& more = {});
// A pipeline's version: REPO/NAME/<version>/pipeline.json holding config.pipeline_stages, and
// config.json naming the same stages (the newest version's, as its inputs and outputs are).
int64_t write_pipeline_version(const std::string& repo, const RepositoryModelConfig& config, int64_t version);

// What export_pipeline wrote: each stage's model, version, layers and size, and the pipeline's version.
struct PipelineExport {
  struct Stage {
    std::string model;
    int64_t version = 0, first_layer = 0, last_layer = 0, bytes = 0;
  };
  std::vector<Stage> stages;
  int64_t version = 0;
};

// Splits the model before the top-level layers `split_at` (increasing, 1..layers-1): stage k
// (layers [cut k-1, cut k)) is written as REPO/NAME.stageK/<version>/model.onnx, reading
// "input" and writing "activation" (the first stage reads the model's input, the last writes
// probabilities and class, with `labels`), then the pipeline REPO/NAME/<version>/pipeline.json
// chaining them (stage K's activation is the pipeline tensor "NAME.stageK.activation").
// `version` 0: one past the newest, for each. Throws naming the layer range or the folder.
PipelineExport export_pipeline(const std::string& repo, const std::string& name, Model& model,
                               const ExportOptions& options, const std::vector<int64_t>& split_at,
                               const std::vector<std::string>& labels, int64_t max_batch_size, int64_t version);

}  // namespace dtrain
