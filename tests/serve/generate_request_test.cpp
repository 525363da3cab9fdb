// Generate requests: defaults, every parameter, and a 400-worthy message naming the field for each
// bad body; the answer and its Server-Sent Event form.
#include "serve/generate_request.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace dtrain::serve {
namespace {

std::string error_of(const std::string& body, int64_t limit = 256) {
  try {
    parse_generate_request(body, limit);
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(GenerateRequest, ReadsTextAndParametersWithDefaults) {
  const GenerateRequest d = parse_generate_request(R"({"text_input": "Hi"})", 256);
  EXPECT_EQ(d.text_input, "Hi");
  EXPECT_EQ(d.max_tokens, kDefaultMaxTokens);
  EXPECT_EQ(d.sampling.temperature, 1.0f);
  EXPECT_EQ(d.sampling.top_k, 0);
  EXPECT_FALSE(d.id);
  EXPECT_EQ(parse_generate_request(R"({"text_input": "Hi"})", 4).max_tokens, 4) << "the default fits the limit";
  const GenerateRequest r = parse_generate_request(
      R"({"id": "q", "text_input": "caf\u00e9", "parameters": {"max_tokens": 64, "temperature": 0.8, "top_k": 40,
          "seed": 18446744073709551615}})",
      256);
  EXPECT_EQ(*r.id, "q");
  EXPECT_EQ(r.text_input, "caf\xC3\xA9");
  EXPECT_EQ(r.max_tokens, 64);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.8f);
  EXPECT_EQ(r.sampling.top_k, 40);
  EXPECT_EQ(r.seed, 18446744073709551615ull);
  EXPECT_EQ(parse_generate_request(R"({"text_input": "x", "parameters": {"temperature": 0}})", 8).sampling.temperature,
            0.0f);
}

TEST(GenerateRequest, RejectsBadBodiesNamingTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "empty request body"},
      {"{", "malformed JSON"},
      {"[1]", "must be a JSON object"},
      {R"({"parameters": {}})", "'text_input' is missing"},
      {R"({"text_input": 5})", "'text_input' must be a string"},
      {R"({"text_input": ""})", "'text_input' is empty"},
      {"{\"text_input\": \"a\xFF\"}", "'text_input' is not valid UTF-8"},
      {R"({"text_input": "\ud800"})", "'text_input' is not valid UTF-8"},
      {R"({"text_input": "a", "stream": true})", "unknown key 'stream'"},
      {R"({"text_input": "a", "parameters": []})", "'parameters' must be an object"},
      {R"({"text_input": "a", "parameters": {"top_p": 0.9}})", "unknown parameter 'top_p'"},
      {R"({"text_input": "a", "parameters": {"max_tokens": -1}})", "'parameters.max_tokens' = -1"},
      {R"({"text_input": "a", "parameters": {"max_tokens": 2.5}})", "'parameters.max_tokens' = 2.5"},
      {R"({"text_input": "a", "parameters": {"max_tokens": "8"}})", "'parameters.max_tokens' = \"8\""},
      {R"({"text_input": "a", "parameters": {"max_tokens": 257}})", "over the server's limit of 256 (--max-tokens)"},
      {R"({"text_input": "a", "parameters": {"temperature": -0.1}})", "'parameters.temperature' = -0.1"},
      {R"({"text_input": "a", "parameters": {"temperature": "hot"}})", "'parameters.temperature' = \"hot\""},
      {R"({"text_input": "a", "parameters": {"temperature": 1e300}})", "'parameters.temperature' = 1e+300"},
      {R"({"text_input": "a", "parameters": {"top_k": -3}})", "'parameters.top_k' = -3"},
      {R"({"text_input": "a", "parameters": {"seed": -1}})", "'parameters.seed' = -1"},
      {R"({"text_input": "a", "id": 3})", "'id' must be a string"},
  };
  for (const auto& [body, needle] : cases) {
    const std::string message = error_of(body);
    EXPECT_NE(message.find(needle), std::string::npos) << body << " -> " << message;
  }
}

TEST(GenerateRequest, AnswersAsTritonDoesAndFramesServerSentEvents) {
  const auto j = nlohmann::json::parse(generate_response_json("gpt", 3, std::nullopt, "hi \xC3\xA9", "length"));
  EXPECT_EQ(
      j, nlohmann::json::parse(
             R"({"model_name": "gpt", "model_version": "3", "text_output": "hi \u00e9", "finish_reason": "length"})"));
  EXPECT_FALSE(nlohmann::json::parse(generate_response_json("gpt", 3, "q", "", "")).contains("finish_reason"));
  EXPECT_EQ(sse_event("{\"a\":1}"), "data: {\"a\":1}\n\n");
}

}  // namespace
}  // namespace dtrain::serve
