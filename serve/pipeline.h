#pragma once
// Pipelines (Triton calls them ensembles): a model version whose pipeline.json chains other
// models, `dtrain export --split-at`'s stages. Tensors flow by name: a stage reads pipeline inputs
// and earlier stages' outputs, and names its outputs for later stages or as the pipeline's
// outputs. A stage runs in this server (the stage model's own batcher) or on another dtrain-serve
// ("url": its V2 infer endpoint, called with binary tensors).
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/error.h"
#include "core/tensor.h"
#include "core/tensor_info.h"

namespace dtrain::serve {

struct PipelineStage {
  std::string model;
  int64_t version = 0;  // 0: the newest ready version
  std::string url;      // empty: this server; else http://HOST:PORT of another dtrain-serve
  std::vector<std::pair<std::string, std::string>> inputs;   // stage input <- pipeline tensor
  std::vector<std::pair<std::string, std::string>> outputs;  // stage output -> pipeline tensor
};

struct Pipeline {
  std::vector<PipelineStage> stages;
};

// Parses {"stages": [{"model", "version"?, "url"?, "inputs": {STAGE_INPUT: TENSOR}, "outputs":
// {STAGE_OUTPUT: TENSOR}}, ...]} and checks it against the pipeline's inputs and outputs: every
// tensor a stage reads is a pipeline input or an earlier stage's output, no tensor is written
// twice, every pipeline output is written. Throws dtrain::Error naming `origin` and the field.
Pipeline parse_pipeline(const nlohmann::json& root, const std::string& origin, const std::vector<TensorInfo>& inputs,
                        const std::vector<TensorInfo>& outputs);
// The same from a file (pipeline.json).
Pipeline read_pipeline(const std::string& path, const std::vector<TensorInfo>& inputs,
                       const std::vector<TensorInfo>& outputs);

// A stage that failed: the HTTP status the pipeline's request gets (502 when another server
// failed or answered an error, 503 when a stage model is not loaded here) and why.
class StageError : public Error {
 public:
  StageError(int status, const std::string& what) : Error(what), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

using NamedTensors = std::map<std::string, Tensor>;
// Runs a stage in this server: its inputs by the stage model's input names -> its outputs by name.
using LocalStageRunner = std::function<NamedTensors(const PipelineStage& stage, const NamedTensors& inputs)>;
// Called after each stage with its index (0-based) and run time.
using StageObserver = std::function<void(size_t stage, double seconds)>;

// Runs the stages in order on `inputs` (in `input_infos` order) and returns the pipeline outputs
// in `output_infos` order. Throws StageError (a stage failed) or dtrain::Error.
std::vector<Tensor> run_pipeline(const Pipeline& pipeline, const std::vector<TensorInfo>& input_infos,
                                 const std::vector<Tensor>& inputs, const std::vector<TensorInfo>& output_infos,
                                 const LocalStageRunner& local, const StageObserver& observe = {});

// POSTs the stage's inputs to URL/v2/models/MODEL[/versions/V]/infer as binary tensors and returns
// the answer's outputs by name; throws StageError(502) when the server cannot be reached or does
// not answer 200 with the outputs the stage names.
NamedTensors call_remote_stage(const PipelineStage& stage, const NamedTensors& inputs);

}  // namespace dtrain::serve
