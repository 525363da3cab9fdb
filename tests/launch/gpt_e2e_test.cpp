// The gpt through the dtrain binary: training on 2 ranks over a token corpus, a stop and resume
// that ends bit for bit where an uninterrupted run ends, `dtrain generate`, and the errors for a
// model and a dataset of different kinds.
#include <fstream>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "train_e2e_fixture.h"

namespace dtrain {
namespace {

// Sentences of a small grammar: learnable next-byte structure, ~20 kB.
std::vector<int32_t> sentences(int count, uint64_t seed) {
  const char* subjects[] = {"the cat ", "a dog ", "the bird ", "my friend "};
  const char* verbs[] = {"sees ", "likes ", "finds ", "follows "};
  const char* objects[] = {"the sun. ", "a tree. ", "the river. ", "an apple. "};
  Generator g(RngKey{seed, 0, static_cast<uint32_t>(RngPurpose::data_synth)});
  std::string text;
  for (int i = 0; i < count; ++i) text += std::string(subjects[g.below(4)]) + verbs[g.below(4)] + objects[g.below(4)];
  return std::vector<int32_t>(text.begin(), text.end());
}

class GptE2E : public TrainE2E {
 protected:
  static void SetUpTestSuite() {
    data_dir_ = (fs::temp_directory_path() / ("dtrain_gpt_e2e_data_" + std::to_string(::getpid()))).string();
    fs::create_directories(data_dir_);
    data::write_tokens(data_dir_ + "/train.h5", sentences(800, 1), 256, "test grammar", {});
    data::write_tokens(data_dir_ + "/test.h5", sentences(60, 2), 256, "test grammar", {});
  }
  // A tiny gpt (2 layers, 32 wide, context 32): a step takes milliseconds.
  std::vector<std::string> gpt(const std::string& run) const {
    return {"--model.type=gpt",
            "--model.n_layer=2",
            "--model.n_head=2",
            "--model.n_embd=32",
            "--model.ctx=32",
            "--data.train=" + data_dir_ + "/train.h5",
            "--data.test=" + data_dir_ + "/test.h5",
            "--train.batch_size=8",
            "--train.log_every=10",
            "--optim.type=adamw",
            "--optim.lr=0.003",
            "--optim.weight_decay=0.1",
            "--optim.clip_norm=1",
            "--log.progress=lines",
            "--log.dir=" + dir_ + "/" + run};
  }
  RunResult generate(const std::vector<std::string>& args) const {
    std::string cmd = dtrain_binary() + " generate";
    for (const std::string& a : args) cmd += " '" + a + "'";
    const std::string log = dir_ + "/generate.log";
    const int status = std::system((cmd + " 2>" + dir_ + "/generate.err >" + log).c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1,
            test::read_text(log) + test::read_text(dir_ + "/generate.err")};
  }
};

TEST_F(GptE2E, TrainsOnTwoRanksAndReportsBitsPerToken) {
  const RunResult r = run(2, plus(gpt("a"), {"--train.max_steps=120", "--train.eval_every=60"}));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("model gpt:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("bits/token"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tokens/s"), std::string::npos) << r.output;
  const auto at = r.output.find("test_loss=");
  ASSERT_NE(at, std::string::npos) << r.output;
  // log(256) = 5.55 nats at the start; the grammar's bytes are far more predictable.
  EXPECT_LT(std::stod(r.output.substr(at + 10)), 1.6) << r.output;
}

TEST_F(GptE2E, StopAndResumeIsBitwiseIdenticalTwoRanks) {
  const std::vector<std::string> common = {"--train.max_steps=24", "--optim.schedule=cosine", "--train.eval_every=10",
                                           "--model.dropout=0.1"};
  const RunResult full = run(2, plus(gpt("full"), common));
  ASSERT_EQ(full.exit_code, 0) << full.output;
  const RunResult first = run(2, plus(plus(gpt("split"), common), {"--train.stop_at_step=9"}));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const RunResult second = run(2, plus(plus(gpt("split"), common), {"--resume=auto"}));
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("at step 9"), std::string::npos) << second.output;
  expect_same_tensors(checkpoint_path(dir_ + "/full/ckpt", 24), checkpoint_path(dir_ + "/split/ckpt", 24));
}

TEST_F(GptE2E, GenerateContinuesAPromptReproducibly) {
  const RunResult r = run(1, plus(gpt("g"), {"--train.max_steps=60", "--data.test="}));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string ckpt = checkpoint_path(dir_ + "/g/ckpt", 60);
  const RunResult greedy =
      generate({"--checkpoint=" + ckpt, "--prompt=the cat ", "--max-tokens=40", "--temperature=0"});
  ASSERT_EQ(greedy.exit_code, 0) << greedy.output;
  EXPECT_NE(greedy.output.find("generated 40 tokens"), std::string::npos) << greedy.output;
  const RunResult a = generate({"--checkpoint=" + ckpt, "--prompt=a dog ", "--max-tokens=40", "--seed=7"});
  const RunResult b = generate({"--checkpoint=" + ckpt, "--prompt=a dog ", "--max-tokens=40", "--seed=7"});
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_EQ(a.output.substr(0, 40), b.output.substr(0, 40));
  // A continuation past the context (32) slides its window.
  EXPECT_EQ(generate({"--checkpoint=" + ckpt, "--prompt=x", "--max-tokens=70"}).exit_code, 0);
  EXPECT_EQ(generate({"--checkpoint=" + ckpt, "--prompt=x", "--temperature=-1"}).exit_code, 2);
  EXPECT_EQ(generate({"--checkpoint=" + ckpt, "--prompt=x", "--top-k=-3"}).exit_code, 2);
  EXPECT_EQ(generate({"--checkpoint=" + ckpt}).exit_code, 2);
  const RunResult missing = generate({"--checkpoint=" + dir_ + "/none.h5", "--prompt=x"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("none.h5"), std::string::npos) << missing.output;
}

TEST_F(GptE2E, ModelAndDataOfDifferentKindsAreRefusedNamingBoth) {
  const RunResult mlp_on_tokens = run(1, plus(gpt("k"), {"--model.type=mlp", "--train.max_steps=2"}));
  EXPECT_NE(mlp_on_tokens.exit_code, 0);
  EXPECT_NE(mlp_on_tokens.output.find("is a token corpus (/tokens); model.type=mlp"), std::string::npos)
      << mlp_on_tokens.output;
  const RunResult too_long = run(1, plus(gpt("k"), {"--model.ctx=5000", "--train.max_steps=2"}));
  EXPECT_NE(too_long.exit_code, 0);
  EXPECT_NE(too_long.output.find("hold no window of ctx + 1 = 5001 tokens"), std::string::npos) << too_long.output;
  const RunResult heads = run(1, plus(gpt("k"), {"--model.n_head=3", "--train.max_steps=2"}));
  EXPECT_EQ(heads.exit_code, 2) << heads.output;
  EXPECT_NE(heads.output.find("model.n_embd"), std::string::npos) << heads.output;
}

}  // namespace
}  // namespace dtrain
