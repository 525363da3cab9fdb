// The generate extension over HTTP: an in-process server whose language models are fakes
// (tests/serve/fake_language_model.h, opened through the store's seam), driven by httplib's
// client. The answer and the event stream agree, the cache and recompute paths agree, four
// concurrent streams equal the same requests alone, every validation error is a 400 naming the
// field (404 for an unknown model), a client that disconnects stops its decoding, and /metrics
// counts tokens and time to first token. Then the same server on tiny gpt exports, through
// dtrain's engine: both paths and both endpoints agree, and the cache path stops at ctx.
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <regex>
#include <thread>

#include "fake_language_model.h"
#include "serve/model_store.h"
#include "serve/server.h"
#include "serve_test_models.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace dtrain::serve {
namespace {

// REPO/NAME/1 with an mlp's model.onnx (for metadata) and config.json declaring a language model.
void add_language_model(const fs::path& repo, const std::string& name, int64_t ctx) {
  serve_test::export_small_model(repo.string(), name, "f32", 1, 1);
  const fs::path config = repo / name / "config.json";
  json j = json::parse(std::ifstream(config));
  j["language_model"] = {{"vocab", 256}, {"ctx", ctx}, {"n_layer", 2}, {"n_head", 2}, {"n_embd", 8}};
  std::ofstream(config) << j.dump();
}

// The fakes behind the folder names: "gpt" (key/value cache), "gpt-recompute" (none), "slow".
std::shared_ptr<const LanguageModel> open_fake(const fs::path& version_dir, const OnnxModel&,
                                               const LanguageModelSpec& spec, Device) {
  const std::string name = version_dir.parent_path().filename().string();
  serve_test::FakeOptions o;
  o.spec = spec;
  o.with_cache = name != "gpt-recompute";
  if (name == "slow") o.delay = std::chrono::milliseconds(3);
  if (name == "batched") o.delay = std::chrono::microseconds(500);
  return std::make_shared<serve_test::FakeLanguageModel>(o);
}

// The data of each event of a Server-Sent Events body.
std::vector<json> parse_events(const std::string& body) {
  std::vector<json> events;
  size_t at = 0;
  for (size_t end; (end = body.find("\n\n", at)) != std::string::npos; at = end + 2) {
    const std::string event = body.substr(at, end - at);
    EXPECT_EQ(event.rfind("data: ", 0), 0u) << event;
    events.push_back(json::parse(event.substr(6)));
  }
  EXPECT_EQ(at, body.size()) << "a partial event at the end";
  return events;
}

// An in-process server on a temporary repository; each suite fills the repository first.
class ServerSuite : public ::testing::Test {
 protected:
  static inline fs::path repo_;
  static inline std::unique_ptr<Server> server_;
  static inline std::thread serving_;
  static inline int port_ = 0;

  static void start(const std::function<void(StoreOptions&)>& customize) {
    ServeOptions o;
    o.repo = repo_.string();
    o.port = 0;
    o.poll_seconds = 0;
    server_ = std::make_unique<Server>(o, customize);
    port_ = server_->bind();
    serving_ = std::thread([] { server_->serve(); });
    httplib::Client c("127.0.0.1", port_);
    for (int i = 0; i < 500; ++i) {
      auto r = c.Get("/v2/health/ready");
      if (r && r->status == 200) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  static void stop() {
    server_->stop();
    serving_.join();
    server_.reset();
    fs::remove_all(repo_);
  }

  static httplib::Result post(const std::string& path, const std::string& body) {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(30, 0);
    return c.Post(path.c_str(), body, "application/json");
  }

  static json generate(const std::string& model, const json& request) {
    auto r = post("/v2/models/" + model + "/generate", request.dump());
    EXPECT_TRUE(r);
    if (!r) return {};
    EXPECT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
    return json::parse(r->body);
  }

  // The events of a stream; `stop_after` > 0 closes the connection after that many events.
  static std::vector<json> stream(const std::string& model, const json& request, size_t stop_after = 0,
                                  std::string* content_type = nullptr) {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(30, 0);
    httplib::Request req;
    req.method = "POST";
    req.path = "/v2/models/" + model + "/generate_stream";
    req.body = request.dump();
    req.set_header("Content-Type", "application/json");
    std::string body;
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      body.append(data, n);
      return stop_after == 0 || static_cast<size_t>(std::count(body.begin(), body.end(), '\n')) < 2 * stop_after;
    };
    httplib::Response res;
    httplib::Error error = httplib::Error::Success;
    c.send(req, res, error);
    if (content_type) *content_type = res.get_header_value("Content-Type");
    if (stop_after == 0) {
      EXPECT_EQ(res.status, 200) << body;
    }
    return parse_events(body.substr(0, body.rfind("\n\n") + 2));
  }

  static std::string metrics() {
    httplib::Client c("127.0.0.1", port_);
    auto r = c.Get("/metrics");
    return r ? r->body : "";
  }
};

class GenerateE2E : public ServerSuite {
 protected:
  static void SetUpTestSuite() {
    repo_ = fs::temp_directory_path() / ("generate_e2e_" + std::to_string(::getpid()));
    add_language_model(repo_, "gpt", 64);
    add_language_model(repo_, "gpt-recompute", 64);
    add_language_model(repo_, "slow", 4096);
    add_language_model(repo_, "batched", 64);
    serve_test::export_small_model(repo_.string(), "mlp", "f32", 2);
    start([](StoreOptions& s) { s.open_language_model = open_fake; });
  }
  static void TearDownTestSuite() { stop(); }
};

TEST_F(GenerateE2E, TheAnswerIsTheContinuationAndTheStreamSendsOneEventPerToken) {
  const json request = {{"text_input", "Once upon a time"},
                        {"parameters", {{"max_tokens", 20}, {"temperature", 0.8}, {"top_k", 40}, {"seed", 1}}}};
  const json answer = generate("gpt", request);
  EXPECT_EQ(answer["model_name"], "gpt");
  EXPECT_EQ(answer["model_version"], "1");
  EXPECT_EQ(answer["finish_reason"], "length");
  EXPECT_EQ(generate("gpt", request)["text_output"], answer["text_output"]) << "the same seed gives the same text";
  std::string content_type;
  const std::vector<json> events = stream("gpt", request, 0, &content_type);
  EXPECT_EQ(content_type, "text/event-stream; charset=utf-8");
  ASSERT_EQ(events.size(), 21u) << "one event per token, then the finish reason";
  std::string text;
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i]["model_name"], "gpt");
    EXPECT_EQ(events[i]["model_version"], "1");
    EXPECT_EQ(events[i].contains("finish_reason"), i == 20) << events[i];
    text += events[i]["text_output"].get<std::string>();
  }
  EXPECT_EQ(events.back()["finish_reason"], "length");
  EXPECT_EQ(text, answer["text_output"]);
}

TEST_F(GenerateE2E, GreedyWithTheCacheEqualsGreedyByRecomputing) {
  for (const std::string prompt : {"x", "The cache and the recompute path"}) {
    const json request = {{"text_input", prompt}, {"parameters", {{"max_tokens", 24}, {"temperature", 0}}}};
    EXPECT_EQ(generate("gpt", request)["text_output"], generate("gpt-recompute", request)["text_output"]) << prompt;
  }
}

TEST_F(GenerateE2E, FourConcurrentStreamsEqualTheSameRequestsAlone) {
  std::vector<json> requests;
  for (int i = 0; i < 4; ++i)
    requests.push_back({{"text_input", std::string(1 + 5 * i, static_cast<char>('a' + i))},
                        {"parameters", {{"max_tokens", 16 + i}, {"temperature", 0.7}, {"seed", 10 + i}}}});
  std::vector<std::string> alone;
  for (const json& r : requests) alone.push_back(generate("batched", r)["text_output"]);
  std::vector<std::future<std::vector<json>>> together;
  for (const json& r : requests)
    together.push_back(std::async(std::launch::async, [r] { return stream("batched", r); }));
  for (size_t i = 0; i < requests.size(); ++i) {
    std::string text;
    const std::vector<json> events = together[i].get();
    for (const json& e : events) text += e["text_output"].get<std::string>();
    EXPECT_EQ(text, alone[i]) << "request " << i;
    EXPECT_EQ(events.size(), 16 + i + 1);
  }
  const std::string m = metrics();
  std::smatch match;
  ASSERT_TRUE(std::regex_search(
      m, match, std::regex(R"(dtrain_serve_decode_batch_size_bucket\{model="batched",version="1",le="1"\} (\d+))")));
  const std::string count_line = R"(dtrain_serve_decode_batch_size_count\{model="batched",version="1"\} (\d+))";
  std::smatch total;
  ASSERT_TRUE(std::regex_search(m, total, std::regex(count_line)));
  EXPECT_LT(std::stoll(match[1]), std::stoll(total[1])) << "some steps decoded several sequences";
}

TEST_F(GenerateE2E, BadRequestsAre400NamingTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "empty request body"},
      {R"({"parameters": {}})", "'text_input' is missing"},
      {R"({"text_input": 1})", "'text_input' must be a string"},
      {"{\"text_input\": \"\xC3\x28\"}", "'text_input' is not valid UTF-8"},
      {R"({"text_input": "a", "extra": 1})", "unknown key 'extra'"},
      {R"({"text_input": "a", "parameters": {"beam_width": 2}})", "unknown parameter 'beam_width'"},
      {R"({"text_input": "a", "parameters": {"max_tokens": -4}})", "'parameters.max_tokens'"},
      {R"({"text_input": "a", "parameters": {"max_tokens": 1.5}})", "'parameters.max_tokens'"},
      {R"({"text_input": "a", "parameters": {"max_tokens": 257}})", "limit of 256 (--max-tokens)"},
      {R"({"text_input": "a", "parameters": {"temperature": -1}})", "'parameters.temperature'"},
      {R"({"text_input": "a", "parameters": {"temperature": null}})", "'parameters.temperature'"},
      {R"({"text_input": "a", "parameters": {"top_k": -1}})", "'parameters.top_k'"},
  };
  for (const std::string endpoint : {"generate", "generate_stream"})
    for (const auto& [body, needle] : cases) {
      auto r = post("/v2/models/gpt/" + endpoint, body);
      ASSERT_TRUE(r);
      EXPECT_EQ(r->status, 400) << endpoint << " " << body;
      EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
      const std::string error = json::parse(r->body)["error"];
      EXPECT_NE(error.find(needle), std::string::npos) << body << " -> " << error;
    }
  auto not_lm = post("/v2/models/mlp/generate", R"({"text_input": "a"})");
  EXPECT_EQ(not_lm->status, 400);
  EXPECT_NE(not_lm->body.find("is not a language model"), std::string::npos) << not_lm->body;
  auto unknown = post("/v2/models/nope/generate_stream", R"({"text_input": "a"})");
  EXPECT_EQ(unknown->status, 404);
  EXPECT_NE(unknown->body.find("unknown model 'nope'"), std::string::npos);
  EXPECT_EQ(post("/v2/models/gpt/versions/9/generate", R"({"text_input": "a"})")->status, 404);
  auto infer = post("/v2/models/gpt/infer", R"({"inputs": []})");
  EXPECT_EQ(infer->status, 400);
  EXPECT_NE(infer->body.find("is a language model"), std::string::npos) << infer->body;
}

TEST_F(GenerateE2E, AClientThatDisconnectsStopsItsDecoding) {
  const json request = {{"text_input", "never ending"}, {"parameters", {{"max_tokens", 256}, {"seed", 3}}}};
  const std::vector<json> events = stream("slow", request, 3);
  EXPECT_GE(events.size(), 3u);
  const std::regex tokens(R"(dtrain_serve_generated_tokens_total\{model="slow",version="1"\} (\d+))");
  const std::regex active(R"(dtrain_serve_active_sequences\{model="slow",version="1"\} (\d+))");
  std::smatch m;
  std::string text;
  for (int i = 0; i < 100; ++i) {  // the sequence is retired within a few steps
    text = metrics();
    if (std::regex_search(text, m, active) && m[1] == "0") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(std::regex_search(text, m, active)) << text;
  EXPECT_EQ(m[1], "0");
  ASSERT_TRUE(std::regex_search(text, m, tokens));
  const int64_t generated = std::stoll(m[1]);
  std::printf("tokens generated for a client that left after 3 events: %lld\n", static_cast<long long>(generated));
  EXPECT_LT(generated, 40) << "256 tokens were asked for; decoding should stop soon after the disconnect";
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  text = metrics();
  ASSERT_TRUE(std::regex_search(text, m, tokens));
  EXPECT_EQ(std::stoll(m[1]), generated);
}

TEST_F(GenerateE2E, MetadataAndMetricsDescribeTheLanguageModel) {
  generate("gpt", {{"text_input", "count me"}, {"parameters", {{"max_tokens", 5}}}});
  httplib::Client c("127.0.0.1", port_);
  const json meta = json::parse(c.Get("/v2/models/gpt")->body);
  EXPECT_EQ(meta["parameters"]["language_model"]["ctx"], 64);
  EXPECT_EQ(meta["parameters"]["language_model"]["kv_cache"], true);
  EXPECT_EQ(json::parse(c.Get("/v2/models/gpt-recompute")->body)["parameters"]["language_model"]["kv_cache"], false);
  const json server = json::parse(c.Get("/v2")->body);
  EXPECT_NE(std::find(server["extensions"].begin(), server["extensions"].end(), "generate"),
            server["extensions"].end());
  // The reply can reach the client just before the scheduler retires the finished sequence, so
  // the active gauge may still read 1 for a moment: wait (up to 2 s) for it to reach 0.
  std::string m = metrics();
  const std::string idle = "dtrain_serve_active_sequences{model=\"gpt\",version=\"1\"} 0";
  for (int i = 0; i < 200 && m.find(idle) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    m = metrics();
  }
  for (const char* needle : {"# TYPE dtrain_serve_generated_tokens_total counter",
                             "dtrain_serve_time_to_first_token_seconds_count{model=\"gpt\",version=\"1\"}",
                             "dtrain_serve_decode_step_seconds_bucket{model=\"gpt\",version=\"1\",le=\"+Inf\"}",
                             "dtrain_serve_prefill_seconds_count{model=\"gpt\",version=\"1\"}",
                             "dtrain_serve_active_sequences{model=\"gpt\",version=\"1\"} 0",
                             "dtrain_serve_requests_total{model=\"gpt\",version=\"1\",code=\"200\"}"})
    EXPECT_NE(m.find(needle), std::string::npos) << needle;
  EXPECT_EQ(m.find("dtrain_serve_active_sequences{model=\"mlp\""), std::string::npos);
}

// Hot reload: a language model version removed while a stream runs on it is unloaded at the next
// scan, the stream still ends normally (it holds the version), and releasing the last holder
// stops the version's scheduler thread.
TEST(GenerateModelStore, AnUnloadedLanguageModelFinishesItsStreamsThenStopsItsScheduler) {
  const fs::path repo = fs::temp_directory_path() / ("generate_store_" + std::to_string(::getpid()));
  add_language_model(repo, "slow", 4096);
  StoreOptions options{repo.string(), Device::cpu(), BatcherOptions{}};
  options.open_language_model = open_fake;
  ModelStore store(options, nullptr);
  store.scan();
  Lookup found = store.find("slow", std::nullopt);
  ASSERT_TRUE(found.version && found.version->generator);
  auto stream = found.version->generator->submit({'h', 'i'}, 40, SamplingOptions{0, 0}, 0);
  fs::remove_all(repo / "slow" / "1");
  store.scan();
  EXPECT_FALSE(store.find("slow", std::nullopt).version) << "the version was unloaded";
  size_t tokens = 0;
  GenerationStream::Event e;
  while (!e.done) {
    e = stream->next();
    tokens += e.tokens.size();
  }
  EXPECT_EQ(e.finish_reason, "length");
  EXPECT_EQ(tokens, 40u);
  found.version.reset();  // the last holder: the scheduler thread is joined here
  fs::remove_all(repo);
}

// Tiny gpt exports (random weights) served as dtrain-serve serves them: "gpt" with
// model_with_past.onnx, "gpt-recompute" without, both of ctx 32.
class GenerateTinyGptE2E : public ServerSuite {
 protected:
  static void SetUpTestSuite() {
    repo_ = fs::temp_directory_path() / ("generate_gpt_e2e_" + std::to_string(::getpid()));
    serve_test::export_tiny_gpt(repo_.string(), "gpt", 21, 32, true);
    serve_test::export_tiny_gpt(repo_.string(), "gpt-recompute", 21, 32, false);
    start({});
  }
  static void TearDownTestSuite() { stop(); }

  static std::string streamed_text(const std::string& model, const json& request) {
    std::string text;
    for (const json& e : stream(model, request)) text += e["text_output"].get<std::string>();
    return text;
  }
};

TEST_F(GenerateTinyGptE2E, BothPathsAndBothEndpointsGenerateTheSameText) {
  for (const json& parameters : {json{{"max_tokens", 20}, {"temperature", 0}},
                                 json{{"max_tokens", 20}, {"temperature", 0.8}, {"top_k", 40}, {"seed", 7}}}) {
    const json request = {{"text_input", "tiny gpt"}, {"parameters", parameters}};  // 8 + 20 < ctx
    const json cached = generate("gpt", request);
    EXPECT_EQ(cached["finish_reason"], "length");
    EXPECT_EQ(generate("gpt-recompute", request)["text_output"], cached["text_output"]) << parameters;
    EXPECT_EQ(streamed_text("gpt", request), cached["text_output"]) << parameters;
    EXPECT_EQ(streamed_text("gpt-recompute", request), cached["text_output"]) << parameters;
  }
}

TEST_F(GenerateTinyGptE2E, TheCachePathStopsWithLengthAtCtxAndRecomputingSlides) {
  // 30 prompt bytes in a ctx of 32: the cache takes 2 more tokens, so 3 are generated.
  const json request = {{"text_input", std::string(30, 'z')}, {"parameters", {{"max_tokens", 50}, {"seed", 1}}}};
  const std::vector<json> events = stream("gpt", request);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events.back()["finish_reason"], "length");
  EXPECT_EQ(stream("gpt-recompute", request).size(), 51u);
}

}  // namespace
}  // namespace dtrain::serve
