// `dtrain export`: a checkpoint -> REPO/NAME/V/model.onnx + REPO/NAME/config.json, optionally
// pruned (--prune) and int8-quantized (--quantize int8), with the size ratio and the accuracy
// change on the test set reported (both models run by dtrain's own ONNX engine).
#include <boost/program_options.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "core/clock.h"
#include "core/error.h"
#include "data/dataset.h"
#include "export/model_repository.h"
#include "export/onnx_export.h"
#include "export/prune.h"
#include "inference/onnx_engine.h"
#include "launch/checkpoint.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/config.h"
#include "launch/onnx_eval.h"

namespace po = boost::program_options;

namespace dtrain {
namespace {

const char* kExportUsage =
    "usage: dtrain export --checkpoint CKPT.h5 --repo DIR --name NAME [--version N] [--quantize none|int8]\n"
    "                     [--prune FRACTION] [--opset 17] [--data TEST.h5|none] [--labels A,B,...|@FILE]\n"
    "                     [--split-at LAYER[,LAYER...]]\n\n"
    "Writes DIR/NAME/N/model.onnx (N: one past the newest version; an existing version is never\n"
    "overwritten) and DIR/NAME/config.json. The model takes the samples as the dataset stores them\n"
    "(u8 pixels: the normalisation is in the graph) and outputs `probabilities` and `class`.\n"
    "A language model (gpt) takes `input_ids` and outputs `logits`; model_with_past.onnx beside it\n"
    "decodes with a key/value cache, and config.json carries its sizes (\"language_model\").\n"
    "--split-at cuts the network before the given top-level layers: each stage becomes its own model\n"
    "NAME.stage1, NAME.stage2, ... and NAME a pipeline over them (DIR/NAME/N/pipeline.json), which\n"
    "dtrain-serve runs in-process or with stages on other servers (docs/serve.md, Pipelines).\n";

const CommandUsage kExport{"export", kExportUsage};
int usage_error(const std::string& message) { return kExport.error(message); }

std::vector<std::string> parse_labels(const std::string& spec) {
  std::string text = spec;
  if (!spec.empty() && spec[0] == '@') {  // one label per line
    std::ifstream in(spec.substr(1));
    DTRAIN_CHECK(in.good(), "--labels: cannot read ", spec.substr(1));
    std::vector<std::string> labels;
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) labels.push_back(line);
    return labels;
  }
  std::vector<std::string> labels;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) labels.push_back(item);
  return labels;
}

// Fashion-MNIST's class names, used when the model's data came from it and no --labels are given.
const std::vector<std::string> kFashionMnistLabels = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                      "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

std::vector<std::string> known_labels(const TrainConfig& config, const std::string& data) {
  for (const std::string& path : {data, config.data.train, config.data.test}) {
    if (path.empty() || !std::filesystem::exists(path)) continue;
    std::string source = data::inspect_dataset(path, false).source;
    std::transform(source.begin(), source.end(), source.begin(), [](unsigned char c) { return std::tolower(c); });
    if (source.find("fashion-mnist") != std::string::npos && config.model.num_classes == 10) return kFashionMnistLabels;
    return {};
  }
  return {};
}

std::string number(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace

namespace {

struct ExportArgs {
  std::string checkpoint, repo, name, quantize = "none", data, labels, split;
  std::vector<int64_t> split_at;  // --split-at, parsed and checked against the model in cmd_export
  int64_t version = 0, max_batch_size = 64;
  int opset = 17;
  double prune = 0;
  bool data_given = false;
};

// Parses and checks the options; returns an exit code when the command must stop (help, usage error).
std::optional<int> parse_export_args(const std::vector<std::string>& args, ExportArgs& a) {
  po::options_description opts("dtrain export options");
  opts.add_options()("help,h", "show this help")("checkpoint", po::value(&a.checkpoint),
                                                 "checkpoint file (step-N.h5) to export")(
      "repo", po::value(&a.repo), "model repository directory")("name", po::value(&a.name),
                                                                "model name (a folder in the repository)")(
      "version", po::value(&a.version)->default_value(0), "version to write (0: one past the newest)")(
      "quantize", po::value(&a.quantize)->default_value("none"), "none | int8 (per-channel symmetric int8 weights)")(
      "prune", po::value(&a.prune)->default_value(0.0),
      "global magnitude pruning of weight matrices, fraction in [0, 1)")(
      "opset", po::value(&a.opset)->default_value(17), "ONNX opset (13..17)")(
      "data", po::value(&a.data), "test set for the accuracy report (default: the config's data.test; none: skip)")(
      "labels", po::value(&a.labels),
      "class labels for config.json: A,B,... or @FILE (one per line); "
      "default: Fashion-MNIST's names for Fashion-MNIST data, else none")(
      "max-batch-size", po::value(&a.max_batch_size)->default_value(64),
      "config.json max_batch_size (server batching)")(
      "split-at", po::value(&a.split),
      "split the network before these top-level layers (e.g. 4 or 2,5): NAME.stage1.. and a pipeline NAME");
  po::variables_map vm;
  if (const auto stop = parse_command_options(kExport, args, opts, vm)) return stop;
  a.data_given = vm.count("data") > 0;
  if (a.checkpoint.empty() || a.repo.empty() || a.name.empty())
    return usage_error("--checkpoint, --repo and --name are required");
  if (a.version < 0) return usage_error("--version must be positive (or 0 for the next one)");
  if (a.quantize != "none" && a.quantize != "int8") return usage_error("--quantize must be none or int8");
  if (a.opset < kMinExportOpset || a.opset > kMaxExportOpset)
    return usage_error("--opset must be " + std::to_string(kMinExportOpset) + ".." + std::to_string(kMaxExportOpset) +
                       ", got " + std::to_string(a.opset));
  if (!(a.prune >= 0 && a.prune < 1)) return usage_error("--prune must be in [0, 1)");
  if (a.max_batch_size <= 0) return usage_error("--max-batch-size must be positive");
  if (vm.count("split-at")) {
    std::stringstream ss(a.split);
    for (std::string item; std::getline(ss, item, ',');) {
      size_t end = 0;
      int64_t layer = -1;
      try {
        layer = std::stoll(item, &end);
      } catch (const std::exception&) {
        end = 0;
      }
      if (end == 0 || end != item.size() || layer < 1 || (!a.split_at.empty() && layer <= a.split_at.back()))
        return usage_error("--split-at '" + a.split +
                           "' must be increasing layer indices, at least 1 (the first layer of the second stage)");
      a.split_at.push_back(layer);
    }
    if (a.split_at.empty()) return usage_error("--split-at needs at least one layer index");
  }
  return std::nullopt;
}

// The exporter's options from the checkpoint: the input as the dataset stores it, its
// normalisation, and the run's step, config and test accuracy as metadata.
ExportOptions export_options(const ExportArgs& a, const CheckpointMeta& meta) {
  ExportOptions options;
  options.opset = a.opset;
  options.input_dtype = meta.input_dtype;
  options.x_scale = meta.x_scale;
  options.x_shift = meta.x_shift;
  options.metadata = {{"step", std::to_string(meta.step)},
                      {"config", meta.config},
                      {"checkpoint", a.checkpoint},
                      {"trained_with", meta.dtrain_version}};
  if (meta.test_accuracy >= 0) options.metadata.emplace_back("test_accuracy", number(meta.test_accuracy));
  return options;
}

// Accuracy of the written model on `data`, and of the f32 unpruned baseline when there is one.
void report_accuracy(const ExportedModel& exported, const std::string& path, const std::string& baseline,
                     const std::string& data) {
  const OnnxEvalResult now = evaluate_onnx(OnnxModel::from_bytes(exported.bytes(), Device::cpu(), path), data);
  std::printf("test accuracy (dtrain ONNX engine, %s): %.4f", data.c_str(), now.accuracy());
  if (!baseline.empty()) {
    const OnnxEvalResult before = evaluate_onnx(OnnxModel::from_bytes(baseline, Device::cpu(), "f32 baseline"), data);
    std::printf(" vs %.4f f32 unpruned (change %+.2f points)", before.accuracy(),
                100 * (now.accuracy() - before.accuracy()));
  }
  std::printf("\n");
}

int64_t write_pipeline(const ExportArgs& a, Model& model, const ExportOptions& base,
                       const std::vector<std::string>& labels);

// Writes the version folder and config.json: model.onnx, and for a language model its sizes and
// model_with_past.onnx; else the class labels (and with --split-at, the stages and the pipeline).
int64_t write_version(const ExportArgs& a, const TrainConfig& config, Model& model, const ExportOptions& options,
                      const ExportedModel& exported, const std::string& data) {
  RepositoryModelConfig rc{a.name, exported.inputs, exported.outputs, a.max_batch_size, {}};
  if (exported.language_model) {
    DTRAIN_CHECK(a.split_at.empty(), "--split-at: the model is a language model, which cannot be split into stages ",
                 "(its key/value cache spans every block)");
    DTRAIN_CHECK(a.labels.empty(), "--labels: the model is a language model; its outputs are logits, not classes");
    rc.language_model = exported.language_model;
    const ExportedModel with_past = export_onnx_with_past(model, options);
    return write_model_version(a.repo, rc, a.version, exported, {{kModelWithPastFile, &with_past}});
  }
  rc.labels = a.labels.empty() ? known_labels(config, data) : parse_labels(a.labels);
  if (!rc.labels.empty() && config.model.num_classes > 0)
    DTRAIN_CHECK(static_cast<int64_t>(rc.labels.size()) == config.model.num_classes, "--labels: ", rc.labels.size(),
                 " labels for a model with ", config.model.num_classes, " classes");
  if (!a.split_at.empty()) return write_pipeline(a, model, options, rc.labels);
  return write_model_version(a.repo, rc, a.version, exported);
}

// The network's top-level layers as "0 Conv2d, 1 ReLU, ..." for --split-at's messages.
std::string layer_list(Model& model) {
  std::string out;
  const auto& layers = model.net().children();
  for (size_t i = 0; i < layers.size(); ++i) out += (i ? ", " : "") + std::to_string(i) + " " + layers[i]->type();
  return out;
}

// --split-at: the stages and the pipeline over them (export_pipeline), with a line per stage.
int64_t write_pipeline(const ExportArgs& a, Model& model, const ExportOptions& base,
                       const std::vector<std::string>& labels) {
  const auto n = static_cast<int64_t>(model.net().children().size());
  DTRAIN_CHECK(a.split_at.back() < n, "--split-at ", a.split, ": the model '", model.config().type, "' has ", n,
               " top-level layers (", layer_list(model), "); a stage starts at 1..", n - 1);
  const PipelineExport p =
      export_pipeline(a.repo, a.name, model, base, a.split_at, labels, a.max_batch_size, a.version);
  for (size_t k = 0; k < p.stages.size(); ++k) {
    const PipelineExport::Stage& s = p.stages[k];
    std::printf("stage %zu: layers %lld..%lld -> %s/%s/%lld/model.onnx (%lld bytes)\n", k + 1,
                static_cast<long long>(s.first_layer), static_cast<long long>(s.last_layer), a.repo.c_str(),
                s.model.c_str(), static_cast<long long>(s.version), static_cast<long long>(s.bytes));
  }
  return p.version;
}

// What was written, and how long it took against reading the checkpoint.
void print_written(const ExportArgs& a, const std::string& path, const ExportedModel& exported, double export_s,
                   double read_s) {
  if (a.split_at.empty())
    std::printf("exported %s (%lld bytes, opset %d, quantize %s) in %.3f s; checkpoint read %.3f s (ratio %.2f)\n",
                path.c_str(), static_cast<long long>(exported.size()), a.opset, a.quantize.c_str(), export_s, read_s,
                read_s > 0 ? export_s / read_s : 0.0);
  else
    std::printf("exported the pipeline %s over %zu stages (opset %d, quantize %s) in %.3f s\n", path.c_str(),
                a.split_at.size() + 1, a.opset, a.quantize.c_str(), export_s);
  if (exported.language_model)
    std::printf("language model: %s beside it (decoding with a key/value cache)\n", kModelWithPastFile);
}

}  // namespace

int cmd_export(const std::vector<std::string>& args) {
  ExportArgs a;
  if (const auto stop = parse_export_args(args, a)) return *stop;

  // Read: the meta, the model it describes, then every parameter (checked against the signature).
  const auto read_begin = Clock::now();
  // The whole file verifies before anything is exported from it, optimizer state included: a damaged
  // file is not a source to serve from.
  const CheckpointReport report = verify_checkpoint(a.checkpoint);
  DTRAIN_CHECK(report.ok(), "checkpoint ", a.checkpoint, " fails verification: ", report.first_problem(),
               " (`dtrain checkpoint verify` lists every part)");
  CheckpointModel trained = load_checkpoint_model(a.checkpoint);
  const CheckpointMeta& meta = trained.meta;
  const TrainConfig& config = trained.config;
  std::unique_ptr<Model>& model = trained.model;
  const double read_s = seconds_since(read_begin);
  std::string data = a.data_given ? a.data : config.data.test;
  if (data == "none" || (!a.data_given && !std::filesystem::exists(data))) data.clear();
  // A language model's test set is a token corpus; the accuracy report reads classified samples.
  if (language_model_info(model->net())) data.clear();

  // The unpruned f32 model is the baseline for the size ratio and the accuracy change.
  ExportOptions options = export_options(a, meta);
  const bool transformed = a.prune > 0 || a.quantize != "none";
  int64_t baseline_size = 0;
  std::string baseline;  // bytes, only when the accuracy is evaluated (taken before pruning changes the weights)
  if (transformed) {
    const ExportedModel b = export_onnx(*model, options);
    baseline_size = b.size();
    if (!data.empty()) baseline = b.bytes();
  }
  if (a.prune > 0) {
    const Sparsity s = prune_global_magnitude(*model, a.prune);
    std::printf("pruned: %.2f%% of %lld weight-matrix entries are zero\n", 100 * s.fraction(),
                static_cast<long long>(s.weights));
    options.metadata.emplace_back("pruned_sparsity", number(s.fraction()));
  }
  options.quantize = a.quantize;
  const auto export_begin = Clock::now();
  const ExportedModel exported = export_onnx(*model, options);
  const int64_t written = write_version(a, config, *model, options, exported, data);
  const double export_s = seconds_since(export_begin);
  const std::string path = (std::filesystem::path(a.repo) / a.name / std::to_string(written) /
                            (a.split_at.empty() ? "model.onnx" : kPipelineFileName))
                               .string();
  print_written(a, path, exported, export_s, read_s);
  if (transformed)
    std::printf("size: %lld bytes vs %lld f32 unpruned (ratio %.3f)\n", static_cast<long long>(exported.size()),
                static_cast<long long>(baseline_size),
                static_cast<double>(exported.size()) / static_cast<double>(baseline_size));
  if (!data.empty())
    report_accuracy(exported, a.split_at.empty() ? path : "unsplit", transformed ? baseline : std::string(), data);
  return 0;
}

}  // namespace dtrain
