// `dtrain generate --checkpoint CKPT --prompt TEXT`: a language model's continuation of a prompt,
// printed token by token as the training code's model (CPU) computes it over the last ctx tokens.
#include <boost/program_options.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/model.h"
#include "core/sampling.h"
#include "launch/checkpoint.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/config.h"

namespace po = boost::program_options;

namespace dtrain {
namespace {

struct GenerateArgs {
  std::string checkpoint, prompt;
  int64_t max_tokens = 256;
  SamplingOptions sampling;
  uint64_t seed = 0;
};

const CommandUsage kGenerate{
    "generate",
    "usage: dtrain generate --checkpoint CKPT --prompt TEXT [--max-tokens 256] [--temperature 0.8] [--top-k 40] "
    "[--seed 0]\n"};

std::optional<int> parse_generate_args(const std::vector<std::string>& args, GenerateArgs& a) {
  po::options_description opts("dtrain generate options");
  opts.add_options()("help,h", "show this help")("checkpoint", po::value(&a.checkpoint),
                                                 "checkpoint of a language model (model.type=gpt)")(
      "prompt", po::value(&a.prompt), "the text to continue (its bytes are the first tokens)")(
      "max-tokens", po::value(&a.max_tokens)->default_value(256), "tokens to generate")(
      "temperature", po::value(&a.sampling.temperature)->default_value(0.8f), "sampling temperature; 0: greedy")(
      "top-k", po::value(&a.sampling.top_k)->default_value(40), "sample among the k likeliest tokens; 0: all")(
      "seed", po::value(&a.seed)->default_value(0), "seed of the sampling (the same seed repeats the text)");
  po::variables_map vm;
  if (const auto stop = parse_command_options(kGenerate, args, opts, vm)) return stop;
  if (a.checkpoint.empty() || a.prompt.empty())
    return kGenerate.error("--checkpoint and a non-empty --prompt are required");
  if (a.max_tokens < 0) return kGenerate.error("--max-tokens must be >= 0, got " + std::to_string(a.max_tokens));
  if (!(a.sampling.temperature >= 0))
    return kGenerate.error("--temperature must be >= 0, got " + std::to_string(a.sampling.temperature));
  if (a.sampling.top_k < 0) return kGenerate.error("--top-k must be >= 0, got " + std::to_string(a.sampling.top_k));
  return std::nullopt;
}

}  // namespace

int cmd_generate(const std::vector<std::string>& args) {
  GenerateArgs a;
  if (const auto stop = parse_generate_args(args, a)) return *stop;
  const CheckpointModel trained = load_checkpoint_model(a.checkpoint);
  const TrainConfig& config = trained.config;
  DTRAIN_CHECK(model_input_layout(config.model.type) == InputLayout::tokens, a.checkpoint,
               ": model.type=", config.model.type, " is not a language model (generate needs model.type=gpt)");
  Model& model = *trained.model;
  const int64_t vocab = config.model.num_classes, ctx_len = config.model.ctx;
  DTRAIN_CHECK(vocab >= 256, a.checkpoint, ": the vocabulary has ", vocab, " tokens; prompts are bytes (256)");

  std::vector<int64_t> tokens;
  for (unsigned char ch : a.prompt) tokens.push_back(ch);
  Generator gen(RngKey{a.seed, 0, static_cast<uint32_t>(RngPurpose::generate)});
  PassContext pass;
  pass.training = false;
  const auto begin = Clock::now();
  for (int64_t i = 0; i < a.max_tokens; ++i) {
    const int64_t t = std::min<int64_t>(static_cast<int64_t>(tokens.size()), ctx_len);
    const std::vector<int64_t> window(tokens.end() - t, tokens.end());
    const Tensor logits = model.forward(Tensor::from_vector(window, Shape{1, t}), pass);
    const std::vector<float> last = logits.flat_range((t - 1) * vocab, vocab).to_vector<float>();
    const int64_t next = sample_token(last, a.sampling, gen);
    tokens.push_back(next);
    std::fputc(static_cast<int>(next), stdout);
    std::fflush(stdout);
  }
  std::fputc('\n', stdout);
  std::fflush(stdout);
  std::fprintf(stderr, "generated %lld tokens in %.2f s (%.1f tokens/s, recomputing the last %lld tokens each)\n",
               static_cast<long long>(a.max_tokens), seconds_since(begin),
               a.max_tokens / std::max(1e-9, seconds_since(begin)), static_cast<long long>(ctx_len));
  return 0;
}

}  // namespace dtrain
