// Language models: config.json's spec with an error naming each bad key, the load-time self-check
// (a model that keeps the contract passes, one that breaks it is named), and an ONNX file that is
// no language model refused naming the missing tensor.
#include "serve/language_model.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "core/fs.h"
#include "fake_language_model.h"
#include "serve/decode_batch.h"
#include "serve_test_models.h"

namespace dtrain::serve {
namespace {

std::string spec_error(const std::string& text) {
  try {
    parse_language_model_spec(nlohmann::json::parse(text), "m/config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(LanguageModelSpec, ReadsConfigJsonAndNamesEveryBadKey) {
  const LanguageModelSpec s = parse_language_model_spec(
      nlohmann::json::parse(R"({"vocab": 256, "ctx": 128, "n_layer": 2, "n_head": 4, "n_embd": 64})"), "c");
  EXPECT_EQ(s.ctx, 128);
  EXPECT_EQ(s.head_dim(), 16);
  EXPECT_NE(spec_error(R"({"vocab": 256, "n_layer": 2, "n_head": 4, "n_embd": 64})")
                .find("m/config.json: \"language_model\" has no \"ctx\""),
            std::string::npos);
  EXPECT_NE(spec_error(R"({"vocab": 256, "ctx": 0, "n_layer": 2, "n_head": 4, "n_embd": 64})")
                .find("\"language_model\".ctx = 0"),
            std::string::npos);
  EXPECT_NE(spec_error(R"({"vocab": 50257, "ctx": 8, "n_layer": 2, "n_head": 4, "n_embd": 64})").find("vocab 256"),
            std::string::npos);
  EXPECT_NE(
      spec_error(R"({"vocab": 256, "ctx": 8, "n_layer": 2, "n_head": 3, "n_embd": 64})").find("multiple of n_head"),
      std::string::npos);
  EXPECT_NE(spec_error("[1]").find("must be an object"), std::string::npos);
}

TEST(LanguageModelSelfCheck, PassesAModelThatKeepsTheContract) {
  serve_test::FakeLanguageModel cached({}), recompute(serve_test::FakeOptions{{256, 8, 1, 1, 4}, 2, false});
  EXPECT_NO_THROW(check_language_model(cached));
  EXPECT_NO_THROW(check_language_model(recompute));
}

// Claims a vocab its logits do not have.
class WrongVocab : public serve_test::FakeLanguageModel {
 public:
  WrongVocab() : FakeLanguageModel({}) { claimed_.vocab = 300; }
  const LanguageModelSpec& spec() const override { return claimed_; }

 private:
  LanguageModelSpec claimed_ = serve_test::FakeOptions{}.spec;
};

TEST(LanguageModelSelfCheck, NamesTheOutputThatBreaksTheContract) {
  try {
    check_language_model(WrongVocab());
    FAIL() << "accepted logits of the wrong vocab";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.onnx 'logits' has shape [2, 2, 256], expected [2, 2, 300]"),
              std::string::npos)
        << e.what();
  }
}

TEST(OnnxLanguageModel, RefusesAModelWithoutTheContractsTensorsNamingThem) {
  const auto repo = std::filesystem::temp_directory_path() / ("lm_test_" + std::to_string(::getpid()));
  const int64_t v = serve_test::export_small_model(repo.string(), "mlp", "f32", 1);
  const auto dir = repo / "mlp" / std::to_string(v);
  const OnnxModel full = OnnxModel::load((dir / "model.onnx").string());
  try {
    open_onnx_language_model(dir, full, LanguageModelSpec{256, 8, 1, 1, 4}, Device::cpu());
    FAIL() << "an mlp opened as a language model";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.onnx has no input 'input_ids'"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(repo);
}

// A tiny gpt export (serve_test_models.h) in a temporary repository.
class TinyGpt : public ::testing::Test {
 protected:
  static inline std::filesystem::path repo_;
  static inline std::shared_ptr<const LanguageModel> model_;
  static void SetUpTestSuite() {
    repo_ = std::filesystem::temp_directory_path() / ("lm_gpt_test_" + std::to_string(::getpid()));
    serve_test::export_tiny_gpt(repo_.string(), "gpt", 5, 32);
    const auto dir = repo_ / "gpt" / "1";
    const OnnxModel full = OnnxModel::load((dir / "model.onnx").string());
    const nlohmann::json config =
        nlohmann::json::parse(read_text_file((repo_ / "gpt" / "config.json").string(), "config"));
    model_ = open_onnx_language_model(dir, full, parse_language_model_spec(config["language_model"], "config.json"),
                                      Device::cpu());
  }
  static void TearDownTestSuite() {
    model_.reset();
    std::filesystem::remove_all(repo_);
  }
};

TEST_F(TinyGpt, OpensBothGraphsAndPassesTheSelfCheck) {
  EXPECT_TRUE(model_->has_cache());
  EXPECT_EQ(model_->spec().ctx, 32);
  EXPECT_EQ(model_->spec().n_layer, 2);
  EXPECT_NO_THROW(check_language_model(*model_));
}

// Prefills three prompts alone into one cache's slots, then steps them together (the engine growing
// the cache in place) and each alone from a cache of its own: the logits agree within 1e-4 with each
// other and with model.onnx on the whole context, twice in a row.
TEST_F(TinyGpt, AStepOverTheSlotsOfOneCacheGivesEachRowsLogitsAlone) {
  const LanguageModelSpec& spec = model_->spec();
  std::vector<std::vector<int64_t>> contexts = {{'a'}, {'h', 'e', 'l', 'l', 'o'}, {'x', 'y', 'z'}};
  DecodeCache together(spec);
  std::vector<DecodeCache> alone;
  for (const auto& p : contexts) {
    const CachedStepResult r = model_->run_cached(build_prefill(spec, {p}));
    together.add(r, 0, static_cast<int64_t>(p.size()));
    alone.emplace_back(spec);
    alone.back().add(r, 0, static_cast<int64_t>(p.size()));
  }
  for (int64_t token : {'!', '?'}) {
    const CachedStepResult both = model_->run_cached(together.step_inputs({token, token, token}));
    EXPECT_EQ(both.present_keys[0].storage(), together.buffer(0, true).storage()) << "grown in place";
    together.take_step(both);
    for (size_t i = 0; i < contexts.size(); ++i) {
      const CachedStepResult one = model_->run_cached(alone[i].step_inputs({token}));
      alone[i].take_step(one);
      contexts[i].push_back(token);
      const Tensor full =
          model_->run_full(Tensor::from_vector(contexts[i], Shape{1, static_cast<int64_t>(contexts[i].size())}));
      const auto a = logits_at(one.logits, 0, 0), b = logits_at(both.logits, static_cast<int64_t>(i), 0);
      const auto c = logits_at(full, 0, static_cast<int64_t>(contexts[i].size()) - 1);
      float batched = 0, recomputed = 0;
      for (size_t t = 0; t < a.size(); ++t) {
        batched = std::max(batched, std::fabs(a[t] - b[t]));
        recomputed = std::max(recomputed, std::fabs(a[t] - c[t]));
      }
      EXPECT_LE(batched, 1e-4f) << "prompt " << i << " token " << token;
      EXPECT_LE(recomputed, 1e-4f) << "prompt " << i << " token " << token;
    }
  }
}

}  // namespace
}  // namespace dtrain::serve
