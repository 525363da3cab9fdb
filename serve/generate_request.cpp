#include "serve/generate_request.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <random>

#include "core/error.h"
#include "serve/utf8.h"

using nlohmann::json;

namespace dtrain::serve {
namespace {

constexpr size_t kMaxMessageChars = 300;

bool is_non_negative_integer(const json& v) {
  return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
}

json parse_body(std::string_view body) {
  DTRAIN_CHECK(!body.empty(), "empty request body (expected {\"text_input\": \"...\", \"parameters\": {...}})");
  try {
    return json::parse(body.begin(), body.end());
  } catch (const json::exception& e) {
    std::string what = e.what();
    if (what.size() > kMaxMessageChars) what = what.substr(0, kMaxMessageChars) + "...";
    // JSON text is UTF-8: the parser rejects an ill-formed byte or a lone surrogate escape.
    const bool utf8 = what.find("UTF-8") != std::string::npos || what.find("surrogate") != std::string::npos;
    fail(utf8 ? "'text_input' is not valid UTF-8 (the body is not: " : "malformed JSON (", what, ")");
  }
}

std::string text_input_of(const json& root) {
  DTRAIN_CHECK(root.contains("text_input"), "'text_input' is missing (the prompt, a string)");
  const json& t = root["text_input"];
  DTRAIN_CHECK(t.is_string(), "'text_input' must be a string, got ", t.type_name());
  std::string text = t.get<std::string>();
  DTRAIN_CHECK(!text.empty(), "'text_input' is empty (the model needs at least one byte of prompt)");
  const size_t bad = find_invalid_utf8(text);
  DTRAIN_CHECK(bad == std::string::npos, "'text_input' is not valid UTF-8 (byte ", bad, ")");
  return text;
}

void parse_parameters(const json& p, int64_t max_tokens_limit, GenerateRequest& r) {
  DTRAIN_CHECK(p.is_object(), "'parameters' must be an object, got ", p.type_name());
  for (const auto& [key, v] : p.items()) {
    if (key == "max_tokens") {
      DTRAIN_CHECK(is_non_negative_integer(v), "'parameters.max_tokens' = ", v.dump(),
                   " is not a non-negative integer");
      DTRAIN_CHECK(v.get<uint64_t>() <= static_cast<uint64_t>(max_tokens_limit), "'parameters.max_tokens' = ", v.dump(),
                   " is over the server's limit of ", max_tokens_limit, " (--max-tokens)");
      r.max_tokens = v.get<int64_t>();
    } else if (key == "temperature") {
      DTRAIN_CHECK(v.is_number() && std::isfinite(static_cast<float>(v.get<double>())) && v.get<double>() >= 0,
                   "'parameters.temperature' = ", v.dump(), " is not a number >= 0 (0: greedy)");
      r.sampling.temperature = static_cast<float>(v.get<double>());
    } else if (key == "top_k") {
      DTRAIN_CHECK(is_non_negative_integer(v), "'parameters.top_k' = ", v.dump(),
                   " is not a non-negative integer (0: every token)");
      r.sampling.top_k = v.get<uint64_t>() > (1ull << 40) ? (1ll << 40) : v.get<int64_t>();
    } else if (key == "seed") {
      DTRAIN_CHECK(is_non_negative_integer(v), "'parameters.seed' = ", v.dump(),
                   " is not an integer 0..18446744073709551615");
      r.seed = v.get<uint64_t>();
    } else {
      fail("unknown parameter '", key, "' (expected max_tokens, temperature, top_k, seed)");
    }
  }
}

}  // namespace

GenerateRequest parse_generate_request(std::string_view body, int64_t max_tokens_limit) {
  const json root = parse_body(body);
  DTRAIN_CHECK(root.is_object(), "the request body must be a JSON object, got ", root.type_name());
  for (const auto& [key, v] : root.items())
    DTRAIN_CHECK(key == "text_input" || key == "parameters" || key == "id", "unknown key '", key,
                 "' in the request (expected text_input, parameters, id)");
  GenerateRequest r;
  r.max_tokens = std::min(kDefaultMaxTokens, max_tokens_limit);
  std::random_device entropy;
  r.seed = (static_cast<uint64_t>(entropy()) << 32) ^ entropy();
  if (root.contains("id")) {
    DTRAIN_CHECK(root["id"].is_string(), "'id' must be a string, got ", root["id"].type_name());
    r.id = root["id"].get<std::string>();
  }
  r.text_input = text_input_of(root);
  if (root.contains("parameters")) parse_parameters(root["parameters"], max_tokens_limit, r);
  return r;
}

std::string generate_response_json(const std::string& model_name, int64_t version, const std::optional<std::string>& id,
                                   const std::string& text_output, const std::string& finish_reason) {
  json j{{"model_name", model_name}, {"model_version", std::to_string(version)}};
  if (id) j["id"] = *id;
  j["text_output"] = text_output;
  if (!finish_reason.empty()) j["finish_reason"] = finish_reason;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string sse_event(const std::string& json_text) { return "data: " + json_text + "\n\n"; }

}  // namespace dtrain::serve
