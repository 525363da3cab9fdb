#pragma once
// A language model as the generate endpoints run it. config.json's "language_model" gives its
// spec; `dtrain export` writes two graphs for a gpt: model.onnx (the whole context) and
// model_with_past.onnx (new tokens on top of a key/value cache). LanguageModel runs them with
// inputs and outputs in one fixed order; open_onnx_language_model maps an export's named tensors
// onto that order, and tests substitute a fake.
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "inference/onnx_engine.h"

namespace dtrain::serve {

// Tokens are bytes: text -> tokens is its UTF-8 bytes.
constexpr int64_t kByteVocab = 256;

struct LanguageModelSpec {
  int64_t vocab = 0, ctx = 0, n_layer = 0, n_head = 0, n_embd = 0;
  int64_t head_dim() const { return n_embd / n_head; }
};

// config.json's "language_model" object; throws naming `where` and the key that is missing or wrong.
LanguageModelSpec parse_language_model_spec(const nlohmann::json& object, const std::string& where);

// One run of model_with_past.onnx on host tensors: B rows, S new tokens each, P cached positions.
struct CachedStep {
  Tensor input_ids;       // i64 [B, S]
  Tensor position_ids;    // i64 [B, S]
  Tensor attention_mask;  // i64 [B, P + S]: 1 a token, 0 padding (left of the cache)
  // Per layer f32 [B, heads, P, head_dim]; may be strided views of a larger buffer (DecodeCache's),
  // which the step may grow in place: the presents are then views of the same buffer.
  std::vector<Tensor> past_keys, past_values;
};
struct CachedStepResult {
  Tensor logits;                                     // f32 [B, S, vocab]
  std::vector<Tensor> present_keys, present_values;  // per layer f32 [B, heads, P + S, head_dim], maybe strided
};

class LanguageModel {
 public:
  virtual ~LanguageModel() = default;
  virtual const LanguageModelSpec& spec() const = 0;
  virtual bool has_cache() const = 0;  // model_with_past.onnx was there
  // model.onnx: input_ids i64 [B, T] -> logits f32 [B, T, vocab] (host).
  virtual Tensor run_full(const Tensor& input_ids) const = 0;
  // model_with_past.onnx (host tensors in and out); only when has_cache().
  virtual CachedStepResult run_cached(const CachedStep& step) const = 0;
};

// Opens REPO/NAME/V's language model; `full` is its model.onnx, already loaded.
using LanguageModelOpener = std::function<std::shared_ptr<const LanguageModel>(
    const std::filesystem::path& version_dir, const OnnxModel& full, const LanguageModelSpec& spec, Device device)>;

// The export's graphs: `full`, and model_with_past.onnx beside it when present. Throws naming the
// file and the tensor that breaks the contract.
std::shared_ptr<const LanguageModel> open_onnx_language_model(const std::filesystem::path& version_dir,
                                                              const OnnxModel& full, const LanguageModelSpec& spec,
                                                              Device device);

// The load-time self-check: a token through model.onnx, then a prefill and a step over a
// left-padded cache of two rows through model_with_past.onnx; every output must have the
// contract's shape and finite logits. Throws naming the graph and the output.
void check_language_model(const LanguageModel& model);

}  // namespace dtrain::serve
