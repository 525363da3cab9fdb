#include "serve/language_model.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <optional>

#include "core/error.h"

namespace dtrain::serve {
namespace {

int64_t positive_key(const nlohmann::json& object, const char* key, const std::string& where) {
  DTRAIN_CHECK(object.contains(key), where, ": \"language_model\" has no \"", key, "\"");
  const nlohmann::json& v = object[key];
  DTRAIN_CHECK(
      v.is_number_integer() && !(v.is_number_unsigned() && v.get<uint64_t>() > (1ull << 40)) && v.get<int64_t>() >= 1,
      where, ": \"language_model\".", key, " = ", v.dump(), " is not a positive integer");
  return v.get<int64_t>();
}

// The index of tensor `name` in a graph's inputs or outputs, checked for dtype and rank.
size_t tensor_index(const std::vector<TensorInfo>& infos, const std::string& name, DType dtype, size_t rank,
                    const std::string& file, const char* kind) {
  for (size_t k = 0; k < infos.size(); ++k) {
    if (infos[k].name != name) continue;
    DTRAIN_CHECK(infos[k].dtype == dtype && infos[k].shape.size() == rank, file, ": ", kind, " '", name, "' is ",
                 dtype_name(infos[k].dtype), " ", shape_str(infos[k].shape), ", the language model contract has ",
                 dtype_name(dtype), " of rank ", rank);
    return k;
  }
  fail(file, " has no ", kind, " '", name, "' (the language model contract in docs/serve.md)");
}

Tensor on_host(const Tensor& t) { return t.device().is_cpu() ? t : t.to(Device::cpu()); }

std::string layer_name(const char* prefix, int64_t layer, const char* part) {
  return prefix + std::to_string(layer) + "." + part;
}

class OnnxLanguageModel : public LanguageModel {
 public:
  OnnxLanguageModel(const OnnxModel& full, std::optional<OnnxModel> with_past, const LanguageModelSpec& spec,
                    const std::string& dir)
      : spec_(spec), full_(full), with_past_(std::move(with_past)) {
    const std::string full_file = dir + "/model.onnx";
    DTRAIN_CHECK(full_.inputs().size() == 1, full_file, " has ", full_.inputs().size(),
                 " inputs, a language model's has one: 'input_ids'");
    tensor_index(full_.inputs(), "input_ids", DType::i64, 2, full_file, "input");
    full_logits_ = tensor_index(full_.outputs(), "logits", DType::f32, 3, full_file, "output");
    if (with_past_) map_cached_graph(dir + "/model_with_past.onnx");
  }

  const LanguageModelSpec& spec() const override { return spec_; }
  bool has_cache() const override { return with_past_.has_value(); }

  Tensor run_full(const Tensor& input_ids) const override { return on_host(full_.run({input_ids}).at(full_logits_)); }

  CachedStepResult run_cached(const CachedStep& step) const override {
    DTRAIN_CHECK(with_past_, "this language model has no model_with_past.onnx");
    std::vector<Tensor> in(input_slots_.size());
    in[input_slots_[0]] = step.input_ids;
    in[input_slots_[1]] = step.position_ids;
    in[input_slots_[2]] = step.attention_mask;
    for (size_t l = 0; l < static_cast<size_t>(spec_.n_layer); ++l) {
      in[input_slots_[3 + 2 * l]] = step.past_keys.at(l);
      in[input_slots_[4 + 2 * l]] = step.past_values.at(l);
    }
    const std::vector<Tensor> out = with_past_->run(in, grow_pasts_);
    CachedStepResult r;
    r.logits = on_host(out.at(output_slots_[0]));
    for (size_t l = 0; l < static_cast<size_t>(spec_.n_layer); ++l) {
      r.present_keys.push_back(on_host(out.at(output_slots_[1 + 2 * l])));
      r.present_values.push_back(on_host(out.at(output_slots_[2 + 2 * l])));
    }
    return r;
  }

 private:
  // The graph's input and output indices in the contract's order.
  void map_cached_graph(const std::string& file) {
    const auto& ins = with_past_->inputs();
    const auto& outs = with_past_->outputs();
    const size_t expected = 3 + 2 * static_cast<size_t>(spec_.n_layer);
    DTRAIN_CHECK(ins.size() == expected, file, " has ", ins.size(), " inputs, the contract has ", expected,
                 " for n_layer ", spec_.n_layer, " (config.json)");
    for (const char* name : {"input_ids", "position_ids"})
      input_slots_.push_back(tensor_index(ins, name, DType::i64, 2, file, "input"));
    input_slots_.push_back(tensor_index(ins, "attention_mask", DType::i64, 2, file, "input"));
    output_slots_.push_back(tensor_index(outs, "logits", DType::f32, 3, file, "output"));
    for (int64_t l = 0; l < spec_.n_layer; ++l)
      for (const char* part : {"key", "value"}) {
        input_slots_.push_back(
            tensor_index(ins, layer_name("past_key_values.", l, part), DType::f32, 4, file, "input"));
        output_slots_.push_back(tensor_index(outs, layer_name("present.", l, part), DType::f32, 4, file, "output"));
      }
    // The pasts may be views of DecodeCache's buffers, which the engine grows in place.
    grow_pasts_.append_in_place.assign(ins.size(), false);
    for (size_t k = 3; k < input_slots_.size(); ++k) grow_pasts_.append_in_place[input_slots_[k]] = true;
  }

  LanguageModelSpec spec_;
  OnnxModel full_;
  std::optional<OnnxModel> with_past_;
  size_t full_logits_ = 0;
  std::vector<size_t> input_slots_, output_slots_;
  OnnxModel::RunOptions grow_pasts_;
};

void check_shape(const Tensor& t, const Shape& expected, const std::string& what) {
  DTRAIN_CHECK(t.defined() && t.shape() == expected, "self-check: ", what, " has shape ",
               t.defined() ? t.shape().str() : std::string("(none)"), ", expected ", expected.str());
}

void check_finite(const Tensor& logits, const std::string& what) {
  for (float v : logits.to_vector<float>())
    DTRAIN_CHECK(std::isfinite(v), "self-check: ", what, " holds a value that is not finite (", v, ")");
}

Tensor ids(const std::vector<int64_t>& values, int64_t rows) {
  return Tensor::from_vector(values, Shape{rows, static_cast<int64_t>(values.size()) / rows});
}

// [1, heads, 1, hd] -> [2, heads, 1, hd]: a zero row (padding), then the cache.
Tensor behind_padding(const Tensor& cache) {
  std::vector<float> two(static_cast<size_t>(cache.numel()), 0.0f);
  const std::vector<float> one = cache.to_vector<float>();
  two.insert(two.end(), one.begin(), one.end());
  return Tensor::from_vector(two, Shape{2, cache.dim(1), cache.dim(2), cache.dim(3)});
}

// A prefill of one token at position 0 (P = 0), then one step of two rows over a cache of one
// position: row 0's is padding (its token is at position 0 again), row 1's is the prefilled token.
void check_cached(const LanguageModel& model) {
  const LanguageModelSpec& s = model.spec();
  const int64_t h = s.n_head, d = s.head_dim();
  CachedStep first{ids({'a'}, 1), ids({0}, 1), ids({1}, 1), {}, {}};
  for (int64_t l = 0; l < s.n_layer; ++l) {
    first.past_keys.push_back(Tensor::zeros(Shape{1, h, 0, d}));
    first.past_values.push_back(Tensor::zeros(Shape{1, h, 0, d}));
  }
  const CachedStepResult r1 = model.run_cached(first);
  check_shape(r1.logits, Shape{1, 1, s.vocab}, "model_with_past 'logits' (prefill)");
  CachedStep second{ids({'b', 'b'}, 2), ids({0, 1}, 2), ids({0, 1, 1, 1}, 2), {}, {}};
  for (int64_t l = 0; l < s.n_layer; ++l) {
    check_shape(r1.present_keys.at(l), Shape{1, h, 1, d}, "model_with_past 'present." + std::to_string(l) + ".key'");
    check_shape(r1.present_values.at(l), Shape{1, h, 1, d},
                "model_with_past 'present." + std::to_string(l) + ".value'");
    second.past_keys.push_back(behind_padding(r1.present_keys[l]));
    second.past_values.push_back(behind_padding(r1.present_values[l]));
  }
  const CachedStepResult r2 = model.run_cached(second);
  check_shape(r2.logits, Shape{2, 1, s.vocab}, "model_with_past 'logits' (a step over a left-padded cache)");
  check_finite(r2.logits, "model_with_past 'logits' (a step over a left-padded cache)");
  for (int64_t l = 0; l < s.n_layer; ++l)
    check_shape(r2.present_keys.at(l), Shape{2, h, 2, d},
                "model_with_past 'present." + std::to_string(l) + ".key' (a step)");
}

}  // namespace

LanguageModelSpec parse_language_model_spec(const nlohmann::json& object, const std::string& where) {
  DTRAIN_CHECK(object.is_object(), where, ": \"language_model\" must be an object");
  LanguageModelSpec s;
  s.vocab = positive_key(object, "vocab", where);
  s.ctx = positive_key(object, "ctx", where);
  s.n_layer = positive_key(object, "n_layer", where);
  s.n_head = positive_key(object, "n_head", where);
  s.n_embd = positive_key(object, "n_embd", where);
  DTRAIN_CHECK(s.vocab == kByteVocab, where, ": \"language_model\".vocab = ", s.vocab,
               ", the server's tokens are bytes (vocab ", kByteVocab, ")");
  DTRAIN_CHECK(s.n_embd % s.n_head == 0, where, ": \"language_model\".n_embd = ", s.n_embd,
               " is not a multiple of n_head = ", s.n_head);
  DTRAIN_CHECK(s.ctx >= 2, where, ": \"language_model\".ctx = ", s.ctx, ", at least 2 positions are needed");
  return s;
}

std::shared_ptr<const LanguageModel> open_onnx_language_model(const std::filesystem::path& version_dir,
                                                              const OnnxModel& full, const LanguageModelSpec& spec,
                                                              Device device) {
  const std::filesystem::path with_past = version_dir / "model_with_past.onnx";
  std::optional<OnnxModel> cached;
  if (std::filesystem::is_regular_file(with_past)) cached = OnnxModel::load(with_past.string(), device);
  return std::make_shared<OnnxLanguageModel>(full, std::move(cached), spec, version_dir.string());
}

void check_language_model(const LanguageModel& model) {
  const LanguageModelSpec& s = model.spec();
  const Tensor logits = model.run_full(ids({'a', 'b', 'c', 'd'}, 2));
  check_shape(logits, Shape{2, 2, s.vocab}, "model.onnx 'logits'");
  check_finite(logits, "model.onnx 'logits'");
  if (model.has_cache()) check_cached(model);
}

}  // namespace dtrain::serve
