#pragma once
// The generate extension's JSON (as Triton has it): requests
// {"text_input": "...", "parameters": {"max_tokens", "temperature", "top_k", "seed"}} parsed and
// validated, answers {"model_name", "model_version", "text_output", "finish_reason"} and their
// Server-Sent Events form ("data: {json}\n\n").
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/sampling.h"

namespace dtrain::serve {

constexpr int64_t kDefaultMaxTokens = 16;

struct GenerateRequest {
  std::optional<std::string> id;
  std::string text_input;  // valid UTF-8, not empty
  int64_t max_tokens = kDefaultMaxTokens;
  SamplingOptions sampling;
  uint64_t seed = 0;  // drawn at random when the request gives none
};

// Throws dtrain::Error naming the field: an empty or malformed body, a key other than id,
// text_input and parameters, a missing, non-string, empty or non-UTF-8 text_input, a parameter
// other than max_tokens (integer 0..max_tokens_limit, default min(16, limit)), temperature
// (number >= 0, default 1; 0 = greedy), top_k (integer >= 0, default 0 = all), seed (integer
// 0..2^64-1).
GenerateRequest parse_generate_request(std::string_view body, int64_t max_tokens_limit);

// {"model_name", "model_version", "id"?, "text_output", "finish_reason"?} (finish_reason empty:
// left out).
std::string generate_response_json(const std::string& model_name, int64_t version, const std::optional<std::string>& id,
                                   const std::string& text_output, const std::string& finish_reason);

// One Server-Sent Event carrying `json`: "data: " + json + "\n\n".
std::string sse_event(const std::string& json);

}  // namespace dtrain::serve
