#pragma once
// Small models exported straight into a model repository (no training: random weights are enough
// to compare the server with the engine), for the serve tests. The tiny gpt's configuration is
// tests/export's (export/onnx_test_models.h there).
#include <cstdint>
#include <string>

#include "core/model.h"
#include "export/model_repository.h"
#include "export/onnx_export.h"
#include "export/onnx_test_models.h"

namespace dtrain::serve_test {

// An mlp over [8, 8] samples (4 classes) taking UINT8 pixels scaled by 1/255 ("u8") or FP32 ("f32"),
// written as REPO/NAME/<version> (0: the next one). Returns the version written.
inline std::unique_ptr<Model> small_mlp(uint64_t seed) {
  ModelConfig config;
  config.type = "mlp";
  config.input_shape = Shape{8, 8};
  config.num_classes = 4;
  config.hidden = {16};
  auto model = create_model(config);
  model->build(Device::cpu(), seed);
  return model;
}

inline ExportOptions small_mlp_options(const std::string& input_dtype) {
  ExportOptions options;
  options.input_dtype = input_dtype;
  options.x_scale = input_dtype == "u8" ? 1.0 / 255.0 : 1.0;
  return options;
}

inline int64_t export_small_model(const std::string& repo, const std::string& name, const std::string& input_dtype,
                                  uint64_t seed, int64_t version = 0, int64_t max_batch_size = 64) {
  auto model = small_mlp(seed);
  const ExportedModel exported = export_onnx(*model, small_mlp_options(input_dtype));
  RepositoryModelConfig rc{name, exported.inputs, exported.outputs, max_batch_size, {"a", "b", "c", "d"}};
  return write_model_version(repo, rc, version, exported);
}

// The same mlp as export_small_model (same seed: same weights) split before layer 2 into
// NAME.stage1 and NAME.stage2, with the pipeline NAME over them. Returns the pipeline's version.
inline int64_t export_small_pipeline(const std::string& repo, const std::string& name, uint64_t seed) {
  auto model = small_mlp(seed);
  return export_pipeline(repo, name, *model, small_mlp_options("u8"), {2}, {"a", "b", "c", "d"}, 64, 0).version;
}

// A tiny gpt (bytes, random weights: its text is noise, which is enough to compare decoding
// paths), written as REPO/NAME/<version> (0: the next one) with model.onnx, model_with_past.onnx
// unless `with_past` is false, and config.json's "language_model". Returns the version written.
inline std::unique_ptr<Model> tiny_gpt(uint64_t seed, int64_t ctx) {
  auto model = create_model(test::gpt_test_config(ctx));  // tests/export's tiny gpt: 2 blocks, 2 heads, 32 wide
  model->build(Device::cpu(), seed);
  return model;
}

inline int64_t export_tiny_gpt(const std::string& repo, const std::string& name, uint64_t seed, int64_t ctx = 64,
                               bool with_past = true, int64_t version = 0) {
  auto model = tiny_gpt(seed, ctx);
  const ExportedModel full = export_onnx(*model, ExportOptions{});
  RepositoryModelConfig rc{name, full.inputs, full.outputs, 64, {}, full.language_model};
  if (!with_past) return write_model_version(repo, rc, version, full);
  const ExportedModel past = export_onnx_with_past(*model, ExportOptions{});
  return write_model_version(repo, rc, version, full, {{kModelWithPastFile, &past}});
}

}  // namespace dtrain::serve_test
