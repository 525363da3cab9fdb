// Continuous batching over a fake language model: seeded sampling repeats, the key/value cache
// path generates what recomputing the context generates, sequences decoded together generate what
// they generate alone, the context limit on both paths, cancellation stops decoding, and an
// engine failure ends the batch with its message.
#include "serve/generation.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <future>
#include <string>

#include "core/fs.h"
#include "fake_language_model.h"
#include "serve_test_models.h"

namespace dtrain::serve {
namespace {

using serve_test::FakeLanguageModel;
using serve_test::FakeOptions;

std::vector<int64_t> bytes_of(const std::string& text) { return {text.begin(), text.end()}; }

struct Output {
  std::vector<int64_t> tokens;
  std::string finish_reason, error;
};

Output collect(GenerationStream& stream) {
  Output out;
  for (;;) {
    GenerationStream::Event e = stream.next();
    out.tokens.insert(out.tokens.end(), e.tokens.begin(), e.tokens.end());
    if (e.done) {
      out.finish_reason = e.finish_reason;
      out.error = e.error;
      return out;
    }
  }
}

struct Sampling {
  float temperature = 1.0f;
  int64_t top_k = 0;
  uint64_t seed = 0;
};

std::shared_ptr<GenerationStream> submit(GenerationScheduler& s, const std::string& prompt, int64_t max_tokens,
                                         Sampling p) {
  return s.submit(bytes_of(prompt), max_tokens, SamplingOptions{p.temperature, p.top_k}, p.seed);
}

Output generate(GenerationScheduler& s, const std::string& prompt, int64_t max_tokens, Sampling p) {
  return collect(*submit(s, prompt, max_tokens, p));
}

std::shared_ptr<FakeLanguageModel> fake(FakeOptions o = {}) { return std::make_shared<FakeLanguageModel>(o); }

TEST(Generation, TheSameSeedGivesTheSameTokens) {
  GenerationScheduler s(fake(), GenerationOptions{});
  const Sampling p{0.8f, 40, 7};
  const Output a = generate(s, "Once upon", 24, p);
  const Output b = generate(s, "Once upon", 24, p);
  EXPECT_EQ(a.tokens.size(), 24u);
  EXPECT_EQ(a.finish_reason, "length");
  EXPECT_EQ(a.tokens, b.tokens);
  const Output c = generate(s, "Once upon", 24, Sampling{0.8f, 40, 8});
  EXPECT_NE(a.tokens, c.tokens) << "another seed should sample other tokens";
}

TEST(Generation, GreedyWithTheCacheEqualsGreedyByRecomputingTheContext) {
  GenerationScheduler cached(fake(), GenerationOptions{});
  FakeOptions no_cache;
  no_cache.with_cache = false;
  GenerationScheduler recompute(fake(no_cache), GenerationOptions{});
  for (const std::string prompt : {"a", "hello there", "The quick brown fox jumps"}) {
    const Output a = generate(cached, prompt, 30, Sampling{0, 0, 0});
    const Output b = generate(recompute, prompt, 30, Sampling{0, 0, 0});
    EXPECT_EQ(a.tokens.size(), 30u) << prompt;
    EXPECT_EQ(a.tokens, b.tokens) << prompt;
  }
}

// Four requests with prompts of different lengths, alone one after the other, then all at once
// (a slow engine so they overlap): each generates the same tokens, and the steps did batch.
TEST(Generation, SequencesDecodedTogetherGenerateWhatTheyGenerateAlone) {
  for (bool with_cache : {true, false}) {
    FakeOptions o;
    o.with_cache = with_cache;
    o.delay = std::chrono::microseconds(500);
    auto model = fake(o);
    GenerationScheduler s(model, GenerationOptions{});
    const std::vector<std::string> prompts = {"x", "two words", "a longer prompt here", "abc"};
    std::vector<Output> alone;
    for (size_t i = 0; i < prompts.size(); ++i)
      alone.push_back(generate(s, prompts[i], 12 + 3 * i, {0.9f, 0, 100 + i}));
    EXPECT_EQ(model->max_rows(), 1) << "one request at a time runs one row";
    std::vector<std::shared_ptr<GenerationStream>> streams;
    for (size_t i = 0; i < prompts.size(); ++i)
      streams.push_back(submit(s, prompts[i], 12 + 3 * i, {0.9f, 0, 100 + i}));
    for (size_t i = 0; i < prompts.size(); ++i) {
      const Output together = collect(*streams[i]);
      EXPECT_EQ(together.tokens, alone[i].tokens) << "cache " << with_cache << ", prompt " << i;
      EXPECT_EQ(together.finish_reason, "length");
    }
    EXPECT_GE(model->max_rows(), 2) << "concurrent sequences should share decoding steps";
  }
}

TEST(Generation, TheCachePathStopsWithLengthWhenTheCacheIsFull) {
  FakeOptions o;
  o.spec.ctx = 8;
  GenerationScheduler s(fake(o), GenerationOptions{});
  // 5 prompt tokens fill positions 0..4; tokens 1..3 are fed at 5..7; the 4th cannot be fed.
  const Output out = generate(s, "12345", 100, {0, 0, 0});
  EXPECT_EQ(out.tokens.size(), 4u);
  EXPECT_EQ(out.finish_reason, "length");
  // A prompt over ctx keeps its last ctx tokens: one token, then the cache is full.
  const Output long_prompt = generate(s, "0123456789abc", 100, {0, 0, 0});
  const Output tail = generate(s, "56789abc", 100, {0, 0, 0});
  ASSERT_EQ(long_prompt.tokens.size(), 1u);
  EXPECT_EQ(long_prompt.tokens, std::vector<int64_t>(tail.tokens.begin(), tail.tokens.begin() + 1));
}

TEST(Generation, RecomputingSlidesTheContextOverTheLastCtxTokens) {
  FakeOptions o;
  o.spec.ctx = 8;
  o.with_cache = false;
  GenerationScheduler s(fake(o), GenerationOptions{});
  const Output out = generate(s, "12345", 40, {0, 0, 0});
  EXPECT_EQ(out.tokens.size(), 40u);
  EXPECT_EQ(generate(s, "0123456789abc", 5, {0, 0, 0}).tokens, generate(s, "56789abc", 5, {0, 0, 0}).tokens);
}

TEST(Generation, ZeroMaxTokensEndsAtOnce) {
  auto model = fake();
  GenerationScheduler s(model, GenerationOptions{});
  const Output out = generate(s, "hi", 0, {});
  EXPECT_TRUE(out.tokens.empty());
  EXPECT_EQ(out.finish_reason, "length");
  EXPECT_EQ(model->runs(), 0);
}

TEST(Generation, ACancelledSequenceStopsDecoding) {
  FakeOptions o;
  o.delay = std::chrono::milliseconds(2);
  o.spec.ctx = 4096;
  auto model = fake(o);
  GenerationScheduler s(model, GenerationOptions{});
  auto stream = submit(s, "hello", 3000, {0.5f, 0, 1});
  size_t seen = 0;
  while (seen < 3) seen += stream->next().tokens.size();
  stream->cancel();
  const Output rest = collect(*stream);
  EXPECT_EQ(rest.finish_reason, "cancelled");
  const int64_t runs = model->runs();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_LE(model->runs(), runs + 1) << "decoding should stop once the stream is cancelled";
  EXPECT_LT(model->runs(), 100);
  EXPECT_EQ(s.active(), 0);
}

TEST(Generation, AnEngineFailureEndsTheSequenceWithTheMessage) {
  for (bool with_cache : {true, false}) {
    FakeOptions o;
    o.fail = true;
    o.with_cache = with_cache;
    GenerationScheduler s(fake(o), GenerationOptions{});
    const Output out = generate(s, "hi", 5, {});
    EXPECT_TRUE(out.tokens.empty());
    EXPECT_NE(out.error.find("fake engine failure"), std::string::npos) << out.error;
  }
}

TEST(Generation, AtMostMaxActiveSequencesDecodeTogether) {
  FakeOptions o;
  o.delay = std::chrono::microseconds(300);
  auto model = fake(o);
  GenerationScheduler s(model, GenerationOptions{2});
  std::vector<std::shared_ptr<GenerationStream>> streams;
  for (int i = 0; i < 5; ++i) streams.push_back(submit(s, "abc", 6, {0, 0, 0}));
  for (auto& st : streams) EXPECT_EQ(collect(*st).tokens.size(), 6u);
  EXPECT_EQ(model->max_rows(), 2);
}

TEST(Generation, ObserverSeesStepsFirstTokensAndTokenCounts) {
  std::atomic<int64_t> steps{0}, prefills{0}, firsts{0}, tokens{0};
  GenerationObserver obs;
  obs.step = [&](int64_t, double s) { steps += s >= 0; };
  obs.prefill = [&](int64_t, double s) { prefills += s >= 0; };
  obs.first_token = [&](double s) { firsts += s >= 0; };
  obs.generated = [&](int64_t n) { tokens += n; };
  {
    GenerationScheduler s(fake(), GenerationOptions{}, obs);
    generate(s, "abc", 5, {0, 0, 0});
    generate(s, "de", 3, {0, 0, 0});
  }
  EXPECT_EQ(tokens, 8);
  EXPECT_EQ(firsts, 2);
  EXPECT_EQ(prefills, 2);
  EXPECT_EQ(steps, 6) << "the first token of each comes from its prefill";
}

// The same on a tiny gpt export: both graphs through dtrain's engine.
class TinyGptGeneration : public ::testing::Test {
 protected:
  static inline std::filesystem::path repo_;
  static inline std::shared_ptr<const LanguageModel> cached_, recompute_;
  static constexpr uint64_t kSeed = 11;
  static constexpr int64_t kCtx = 48;

  static std::shared_ptr<const LanguageModel> open(const std::string& name) {
    const auto dir = repo_ / name / "1";
    return open_onnx_language_model(dir, OnnxModel::load((dir / "model.onnx").string()),
                                    LanguageModelSpec{256, kCtx, 2, 2, 32}, Device::cpu());
  }
  static void SetUpTestSuite() {
    repo_ = std::filesystem::temp_directory_path() / ("generation_gpt_" + std::to_string(::getpid()));
    serve_test::export_tiny_gpt(repo_.string(), "cached", kSeed, kCtx, true);
    serve_test::export_tiny_gpt(repo_.string(), "recompute", kSeed, kCtx, false);
    cached_ = open("cached");
    recompute_ = open("recompute");
  }
  static void TearDownTestSuite() {
    cached_.reset();
    recompute_.reset();
    std::filesystem::remove_all(repo_);
  }
};

// As `dtrain generate` does: the training code's model over the last ctx tokens, core's sampler.
std::vector<int64_t> reference_tokens(Model& model, const std::string& prompt, int64_t n, Sampling p) {
  std::vector<int64_t> tokens = bytes_of(prompt);
  Generator gen(RngKey{p.seed, 0, static_cast<uint32_t>(RngPurpose::generate)});
  PassContext pass;
  pass.training = false;
  for (int64_t i = 0; i < n; ++i) {
    const Tensor logits =
        model.forward(Tensor::from_vector(tokens, Shape{1, static_cast<int64_t>(tokens.size())}), pass);
    tokens.push_back(sample_token(logits_at(logits, 0, logits.dim(1) - 1), {p.temperature, p.top_k}, gen));
  }
  return {tokens.end() - n, tokens.end()};
}

TEST_F(TinyGptGeneration, CacheRecomputeAndTheTrainingModelGenerateTheSameTokens) {
  GenerationScheduler cached(cached_, GenerationOptions{}), recompute(recompute_, GenerationOptions{});
  auto model = serve_test::tiny_gpt(kSeed, kCtx);
  for (const Sampling& p : {Sampling{0, 0, 0}, Sampling{0.8f, 40, 3}}) {
    const std::vector<int64_t> expected = reference_tokens(*model, "Hello, gpt", 24, p);
    EXPECT_EQ(generate(cached, "Hello, gpt", 24, p).tokens, expected) << "temperature " << p.temperature;
    EXPECT_EQ(generate(recompute, "Hello, gpt", 24, p).tokens, expected) << "temperature " << p.temperature;
  }
}

TEST_F(TinyGptGeneration, FourConcurrentSequencesGenerateWhatTheyGenerateAlone) {
  GenerationScheduler s(cached_, GenerationOptions{});
  const std::vector<std::string> prompts = {"a", "four streams", "of different lengths", "xyz"};
  std::vector<Output> alone;
  for (size_t i = 0; i < prompts.size(); ++i) alone.push_back(generate(s, prompts[i], 16, {0.9f, 0, 40 + i}));
  std::vector<std::shared_ptr<GenerationStream>> streams;
  for (size_t i = 0; i < prompts.size(); ++i) streams.push_back(submit(s, prompts[i], 16, {0.9f, 0, 40 + i}));
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(collect(*streams[i]).tokens, alone[i].tokens) << i;
}

}  // namespace
}  // namespace dtrain::serve
