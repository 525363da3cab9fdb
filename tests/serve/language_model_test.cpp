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

// Prefills three prompts alone, then steps them alone and together over left-padded caches: the
// logits agree within 1e-4 with each other and with model.onnx on the whole context.
TEST_F(TinyGpt, AStepOverLeftPaddedCachesGivesEachRowsLogitsAlone) {
  const LanguageModelSpec& spec = model_->spec();
  const std::vector<std::vector<int64_t>> prompts = {{'a'}, {'h', 'e', 'l', 'l', 'o'}, {'x', 'y', 'z'}};
  std::vector<SequenceCache> caches;
  for (const auto& p : prompts) {
    caches.emplace_back(spec);
    caches.back().take_presents(model_->run_cached(build_cached_step(spec, {&caches.back()}, {p})), 0,
                                static_cast<int64_t>(p.size()));
  }
  const CachedStepResult together =
      model_->run_cached(build_cached_step(spec, {&caches[0], &caches[1], &caches[2]}, {{'!'}, {'!'}, {'!'}}));
  for (size_t i = 0; i < prompts.size(); ++i) {
    const CachedStepResult alone = model_->run_cached(build_cached_step(spec, {&caches[i]}, {{'!'}}));
    std::vector<int64_t> context = prompts[i];
    context.push_back('!');
    const Tensor full = model_->run_full(Tensor::from_vector(context, Shape{1, static_cast<int64_t>(context.size())}));
    const auto a = logits_at(alone.logits, 0, 0), b = logits_at(together.logits, static_cast<int64_t>(i), 0);
    const auto c = logits_at(full, 0, static_cast<int64_t>(context.size()) - 1);
    float batched = 0, recomputed = 0;
    for (size_t t = 0; t < a.size(); ++t) {
      batched = std::max(batched, std::fabs(a[t] - b[t]));
      recomputed = std::max(recomputed, std::fabs(a[t] - c[t]));
    }
    EXPECT_LE(batched, 1e-4f) << "prompt " << i;
    EXPECT_LE(recomputed, 1e-4f) << "prompt " << i;
  }
}

}  // namespace
}  // namespace dtrain::serve
