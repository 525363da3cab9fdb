// dtrain-serve end to end: the real binary on a free 127.0.0.1 port over a repository of small
// exported models, driven by httplib's client. Every endpoint and error code, results equal to
// dtrain's engine on the same inputs, concurrent requests merged into batches (batch-size metric),
// hot reload while clients send, a bounded fuzz of malformed bodies and headers (4xx only, no
// crash), and SIGTERM draining to exit 0.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <regex>
#include <sstream>
#include <thread>
#include <utility>

#include "inference/onnx_engine.h"
#include "serve_test_models.h"
#include "test_files.h"

extern char** environ;

namespace fs = std::filesystem;
using nlohmann::json;

namespace dtrain {
namespace {

const char* kKey = "test-key-0123456789";

std::string serve_binary() { return test::built_file("serve/dtrain-serve"); }

// Random UINT8 images [rows, 8, 8].
std::vector<uint8_t> random_pixels(int64_t rows, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(static_cast<size_t>(rows * 64));
  for (uint8_t& x : v) x = static_cast<uint8_t>(rng() % 256);
  return v;
}

std::string client_id(int i) {
  std::string id = "c";
  id += std::to_string(i);
  return id;
}

json infer_body(const std::vector<uint8_t>& pixels, int64_t rows, const std::string& id = "") {
  json body{{"inputs", {{{"name", "input"}, {"shape", {rows, 8, 8}}, {"datatype", "UINT8"}, {"data", pixels}}}}};
  if (!id.empty()) body["id"] = id;
  return body;
}

// A started server; killed (SIGKILL) when this goes out of scope still holding it, so a failed
// assertion does not leave a server behind.
struct Started {
  pid_t pid = -1;
  int port = 0;  // 0: did not get ready within 30 s
  Started() = default;
  Started(Started&& other) noexcept : pid(std::exchange(other.pid, -1)), port(other.port) {}
  Started& operator=(Started&&) = delete;
  ~Started() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

// Starts dtrain-serve on `repo` and a free 127.0.0.1 port (read from its start line) with `extra`
// options, logging to `log`; returns once /v2/health/ready answers 200.
Started start_server(const std::string& repo, const std::vector<std::string>& extra, const fs::path& log) {
  std::vector<std::string> args = {serve_binary(), "--repo", repo, "--port", "0"};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  // OpenBLAS with 2 threads: its pool starts before main, and SIGTERM must still drain (not kill).
  std::vector<std::string> env_strings = {"OPENBLAS_NUM_THREADS=2"};
  for (char** e = environ; *e; ++e)
    if (std::string(*e).rfind("OPENBLAS_NUM_THREADS=", 0) != 0) env_strings.push_back(*e);
  std::vector<char*> env;
  for (const std::string& e : env_strings) env.push_back(const_cast<char*>(e.c_str()));
  env.push_back(nullptr);
  Started s;
  const int spawned = posix_spawn(&s.pid, argv[0], &actions, nullptr, argv.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) return s;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::smatch m;
  std::string text;
  while (std::chrono::steady_clock::now() < deadline) {
    text = test::read_text(log);
    if (std::regex_search(text, m, std::regex("listening on http://127\\.0\\.0\\.1:([0-9]+)"))) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (m.empty()) return s;
  const int port = std::stoi(m[1].str());
  httplib::Client c("127.0.0.1", port);
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = c.Get("/v2/health/ready");
    if (r && r->status == 200) {
      s.port = port;
      return s;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return s;
}

// Sends SIGTERM and waits up to 20 s; returns the exit status, or -1 when it did not exit.
int stop_server(pid_t pid);
int stop_server(Started& s) { return stop_server(std::exchange(s.pid, -1)); }
int stop_server(pid_t pid) {
  ::kill(pid, SIGTERM);
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1;
}

class ServeE2E : public ::testing::Test {
 protected:
  static inline fs::path dir_;
  static inline std::string repo_;
  static inline pid_t pid_ = -1;
  static inline int port_ = 0;

  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("dtrain_serve_e2e_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    repo_ = (dir_ / "models").string();
    serve_test::export_small_model(repo_, "fm", "u8", 1);
    serve_test::export_small_model(repo_, "fm", "u8", 2);
    serve_test::export_small_model(repo_, "f32m", "f32", 5, 0, 8);
    serve_test::export_small_pipeline(repo_, "fmp", 2);  // fm version 2's weights, in two stages
    std::ofstream(dir_ / "keys") << "# test keys\nother-key\n" << kKey << "\n";
    Started s =
        start_server(repo_,
                     {"--api-key-file", (dir_ / "keys").string(), "--max-body-bytes", "256KiB", "--batching", "delay",
                      "--max-queue-delay-us", "20000", "--instances", "2", "--threads", "64", "--poll-seconds", "0.3"},
                     dir_ / "serve.log");
    port_ = s.port;
    pid_ = std::exchange(s.pid, -1);  // the suite owns it from here (TearDownTestSuite)
    ASSERT_GT(port_, 0) << test::read_text(dir_ / "serve.log");
  }

  static void TearDownTestSuite() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (!::testing::Test::HasFailure()) fs::remove_all(dir_);
  }

  static std::unique_ptr<httplib::Client> client(bool with_key = true) {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
    if (with_key) c->set_bearer_token_auth(kKey);
    c->set_read_timeout(30, 0);
    return c;
  }

  static json post(httplib::Client& c, const std::string& path, const std::string& body, int expected_status) {
    auto r = c.Post(path.c_str(), body, "application/json");
    EXPECT_TRUE(r) << path << ": " << httplib::to_string(r.error());
    if (!r) return json();
    EXPECT_EQ(r->status, expected_status) << path << ": " << r->body;
    return json::parse(r->body, nullptr, false);
  }

  static json get(httplib::Client& c, const std::string& path, int expected_status) {
    auto r = c.Get(path.c_str());
    EXPECT_TRUE(r) << path << ": " << httplib::to_string(r.error());
    if (!r) return json();
    EXPECT_EQ(r->status, expected_status) << path << ": " << r->body;
    return json::parse(r->body, nullptr, false);
  }

  // The engine's outputs for the same images, straight from the exported file.
  static std::vector<Tensor> engine_outputs(const std::string& model, int64_t version,
                                            const std::vector<uint8_t>& pixels, int64_t rows) {
    const OnnxModel m = OnnxModel::load(repo_ + "/" + model + "/" + std::to_string(version) + "/model.onnx");
    return m.run({Tensor::from_vector(pixels, Shape{rows, 8, 8})});
  }

  // Checks an infer response against the engine (probabilities within 1e-6: a row's GEMM may run
  // in a batch of another size than the engine's; classes equal).
  static void expect_matches_engine(const json& response, const std::vector<Tensor>& expected, int64_t rows) {
    ASSERT_TRUE(response.contains("outputs")) << response.dump();
    ASSERT_EQ(response["outputs"].size(), 2u) << response.dump();
    const json& probs = response["outputs"][0];
    const json& cls = response["outputs"][1];
    EXPECT_EQ(probs["name"], "probabilities");
    EXPECT_EQ(probs["datatype"], "FP32");
    EXPECT_EQ(probs["shape"], json({rows, 4}));
    EXPECT_EQ(cls["name"], "class");
    EXPECT_EQ(cls["datatype"], "INT64");
    EXPECT_EQ(cls["shape"], json({rows}));
    const std::vector<float> p = expected[0].to_vector<float>();
    const std::vector<int64_t> c = expected[1].to_vector<int64_t>();
    ASSERT_EQ(probs["data"].size(), p.size());
    for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(probs["data"][i].get<double>(), p[i], 1e-6) << "value " << i;
    EXPECT_EQ(cls["data"].get<std::vector<int64_t>>(), c);
  }

  static double metric(const std::string& line_prefix) {
    auto c = client();
    auto r = c->Get("/metrics");
    if (!r || r->status != 200) return -1;
    std::istringstream in(r->body);
    for (std::string line; std::getline(in, line);)
      if (line.rfind(line_prefix + " ", 0) == 0) return std::stod(line.substr(line_prefix.size() + 1));
    return 0;
  }
};

TEST_F(ServeE2E, ServerHealthAndModelMetadata) {
  auto c = client();
  EXPECT_EQ(get(*c, "/v2", 200)["name"], "dtrain-serve");
  EXPECT_EQ(get(*c, "/v2/health/live", 200)["live"], true);
  EXPECT_EQ(get(*c, "/v2/health/ready", 200)["ready"], true);
  const json meta = get(*c, "/v2/models/fm", 200);
  EXPECT_EQ(meta["name"], "fm");
  EXPECT_EQ(meta["versions"], json({"1", "2"}));
  EXPECT_EQ(meta["platform"], "onnx");
  EXPECT_EQ(meta["inputs"], json::parse(R"([{"name":"input","datatype":"UINT8","shape":[-1,8,8]}])"));
  EXPECT_EQ(meta["outputs"][1], json::parse(R"({"name":"class","datatype":"INT64","shape":[-1]})"));
  EXPECT_EQ(meta["parameters"]["version"], "2");
  EXPECT_EQ(get(*c, "/v2/models/fm/versions/1", 200)["versions"], json({"1"}));
  EXPECT_EQ(get(*c, "/v2/models/f32m", 200)["parameters"]["max_batch_size"], 8);
  EXPECT_EQ(get(*c, "/v2/models/fm/ready", 200)["version"], "2");
  EXPECT_EQ(get(*c, "/v2/models/fm/versions/1/ready", 200)["ready"], true);
  const json index = get(*c, "/v2/repository/index", 200);
  ASSERT_EQ(index.size(), 6u) << index.dump();  // f32m, fm 1 and 2, the pipeline fmp and its two stages
  EXPECT_EQ(index[0], json::parse(R"({"name":"f32m","version":"1","state":"READY"})"));
  EXPECT_EQ(post(*c, "/v2/repository/index", "", 200), index);
}

TEST_F(ServeE2E, InferEqualsTheEngineForEveryVersionAndDataLayout) {
  auto c = client();
  const std::vector<uint8_t> pixels = random_pixels(5, 11);
  const json latest = post(*c, "/v2/models/fm/infer", infer_body(pixels, 5, "req-1").dump(), 200);
  EXPECT_EQ(latest["model_name"], "fm");
  EXPECT_EQ(latest["model_version"], "2");
  EXPECT_EQ(latest["id"], "req-1");
  expect_matches_engine(latest, engine_outputs("fm", 2, pixels, 5), 5);

  const json v1 = post(*c, "/v2/models/fm/versions/1/infer", infer_body(pixels, 5).dump(), 200);
  EXPECT_EQ(v1["model_version"], "1");
  EXPECT_FALSE(v1.contains("id"));
  expect_matches_engine(v1, engine_outputs("fm", 1, pixels, 5), 5);

  // Nested data: [rows][8][8].
  json nested = json::array();
  for (int r = 0; r < 5; ++r) {
    json rows = json::array();
    for (int y = 0; y < 8; ++y)
      rows.push_back(std::vector<uint8_t>(pixels.begin() + r * 64 + y * 8, pixels.begin() + r * 64 + y * 8 + 8));
    nested.push_back(rows);
  }
  json body = infer_body(pixels, 5);
  body["inputs"][0]["data"] = nested;
  body["outputs"] = json::parse(R"([{"name":"class"}])");
  const json only_class = post(*c, "/v2/models/fm/infer", body.dump(), 200);
  ASSERT_EQ(only_class["outputs"].size(), 1u);
  EXPECT_EQ(only_class["outputs"][0]["data"], latest["outputs"][1]["data"]);

  // An FP32 model.
  std::vector<float> x(3 * 64);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(static_cast<float>(i));
  const json f32 = post(
      *c, "/v2/models/f32m/infer",
      json{{"inputs", {{{"name", "input"}, {"shape", {3, 8, 8}}, {"datatype", "FP32"}, {"data", x}}}}}.dump(), 200);
  const OnnxModel m = OnnxModel::load(repo_ + "/f32m/1/model.onnx");
  const std::vector<Tensor> expected = m.run({Tensor::from_vector(x, Shape{3, 8, 8})});
  const std::vector<float> p = expected[0].to_vector<float>();
  ASSERT_EQ(f32["outputs"][0]["data"].size(), p.size()) << f32.dump();
  for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(f32["outputs"][0]["data"][i].get<double>(), p[i], 1e-6);
}

TEST_F(ServeE2E, ErrorsAreJsonWithTheRightStatusNamingTheProblem) {
  auto c = client();
  const std::string good = infer_body(random_pixels(1, 3), 1).dump();
  // 401: no key, a wrong key; health is exempt.
  auto anonymous = client(false);
  EXPECT_NE(post(*anonymous, "/v2/models/fm/infer", good, 401)["error"].get<std::string>().find("missing API key"),
            std::string::npos);
  get(*anonymous, "/v2/models/fm", 401);
  get(*anonymous, "/metrics", 401);
  get(*anonymous, "/v2/health/live", 200);
  get(*anonymous, "/v2/health/ready", 200);
  httplib::Client wrong("127.0.0.1", port_);
  wrong.set_bearer_token_auth("test-key-0123456780");
  EXPECT_EQ(post(wrong, "/v2/models/fm/infer", good, 401)["error"], "the API key is not valid");
  // 404: model, version, endpoint.
  EXPECT_EQ(post(*c, "/v2/models/nope/infer", good, 404)["error"], "unknown model 'nope'");
  EXPECT_EQ(post(*c, "/v2/models/fm/versions/9/infer", good, 404)["error"], "unknown version '9' of model 'fm'");
  EXPECT_EQ(get(*c, "/v2/models/fm/versions/x/ready", 404)["error"], "unknown version 'x' of model 'fm'");
  EXPECT_EQ(get(*c, "/v2/models/nope", 404)["error"], "unknown model 'nope'");
  EXPECT_NE(get(*c, "/v2/nothing", 404)["error"].get<std::string>().find("/v2/nothing"), std::string::npos);
  // 400: the parser's cases reach the client with their message.
  const auto bad = [&](const std::string& body, const std::string& needle) {
    const json r = post(*c, "/v2/models/fm/infer", body, 400);
    EXPECT_NE(r.value("error", std::string()).find(needle), std::string::npos) << r.dump();
  };
  bad("{\"inputs\":", "malformed JSON");
  bad(R"({"inputs":[{"name":"pixels","shape":[1,8,8],"datatype":"UINT8","data":[]}]})", "unknown input 'pixels'");
  bad(R"({"inputs":[{"name":"input","shape":[1,8,8],"datatype":"FP32","data":[]}]})",
      "datatype FP32, the model takes UINT8");
  bad(R"({"inputs":[{"name":"input","shape":[1,8,8],"datatype":"UINT8","data":[1,2,3]}]})", "data has 3 values");
  bad(infer_body(random_pixels(65, 1), 65).dump(), "over the maximum batch size 64");
  {
    std::vector<float> x(9 * 64, 0.0f);
    json b{{"inputs", {{{"name", "input"}, {"shape", {9, 8, 8}}, {"datatype", "FP32"}, {"data", x}}}}};
    EXPECT_NE(post(*c, "/v2/models/f32m/infer", b.dump(), 400)["error"].get<std::string>().find("maximum batch size 8"),
              std::string::npos);
    b = json{{"inputs",
              {{{"name", "input"}, {"shape", {1, 8, 8}}, {"datatype", "FP32"}, {"data", std::vector<float>(64, 0)}}}}};
    std::string text = b.dump();
    std::string overflow = text;
    text.replace(text.find("0.0"), 3, "1e39");  // a finite double, +Inf as FP32
    EXPECT_NE(post(*c, "/v2/models/f32m/infer", text, 400)["error"].get<std::string>().find("not a finite FP32 value"),
              std::string::npos);
    overflow.replace(overflow.find("0.0"), 3, "-1e999");  // JSON has no NaN/Inf; the parser refuses overflow
    EXPECT_NE(post(*c, "/v2/models/f32m/infer", overflow, 400)["error"].get<std::string>().find("number overflow"),
              std::string::npos);
  }
  // 413 before the body is read, judged by Content-Length.
  const std::string big(300 * 1024, ' ');
  auto r = c->Post("/v2/models/fm/infer", big, "application/json");
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 413);
  EXPECT_NE(r->body.find("over the limit of 262144 bytes"), std::string::npos) << r->body;
  // The server still answers on a fresh connection.
  auto fresh = client();
  get(*fresh, "/v2/health/live", 200);
  EXPECT_GE(metric("dtrain_serve_requests_total{model=\"fm\",version=\"2\",code=\"400\"}"), 5);
  EXPECT_GE(metric("dtrain_serve_requests_total{model=\"\",version=\"0\",code=\"404\"}"), 1)
      << "unknown models are counted under model=\"\"";
}

TEST_F(ServeE2E, ConcurrentRequestsAreMergedAndEachCallerGetsItsOwnRows) {
  const double batches_before = metric("dtrain_serve_batch_size_count{model=\"fm\",version=\"2\"}");
  constexpr int kClients = 16;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  std::vector<json> responses(kClients);
  for (int i = 0; i < kClients; ++i)
    threads.emplace_back([&, i] {
      auto c = client();
      const int64_t rows = 1 + i % 3;
      auto r = c->Post("/v2/models/fm/infer", infer_body(random_pixels(rows, 100 + i), rows, client_id(i)).dump(),
                       "application/json");
      if (r && r->status == 200) {
        responses[i] = json::parse(r->body);
        ++ok;
      }
    });
  for (auto& t : threads) t.join();
  ASSERT_EQ(ok.load(), kClients);
  for (int i = 0; i < kClients; ++i) {
    const int64_t rows = 1 + i % 3;
    EXPECT_EQ(responses[i]["id"], client_id(i));
    expect_matches_engine(responses[i], engine_outputs("fm", 2, random_pixels(rows, 100 + i), rows), rows);
  }
  const double batches = metric("dtrain_serve_batch_size_count{model=\"fm\",version=\"2\"}") - batches_before;
  EXPECT_GE(batches, 1);
  EXPECT_LT(batches, kClients) << "16 concurrent requests within a 20 ms queue delay should share batches";
  EXPECT_GT(metric("dtrain_serve_models_loaded"), 0);
  std::printf("16 concurrent requests ran in %.0f batches\n", batches);
}

TEST_F(ServeE2E, BinaryTensorsGiveTheJsonAnswer) {
  auto c = client();
  const int64_t rows = 3;
  const std::vector<uint8_t> pixels = random_pixels(rows, 77);
  const json header{
      {"id", "bin"},
      {"inputs",
       {{{"name", "input"},
         {"shape", {rows, 8, 8}},
         {"datatype", "UINT8"},
         {"parameters", {{"binary_data_size", pixels.size()}}}}}},
      {"outputs", {{{"name", "probabilities"}, {"parameters", {{"binary_data", true}}}}, {{"name", "class"}}}}};
  const std::string head = header.dump();
  const std::string body = head + std::string(pixels.begin(), pixels.end());
  httplib::Headers headers{{"Inference-Header-Content-Length", std::to_string(head.size())}};
  auto r = c->Post("/v2/models/fm/infer", headers, body, "application/octet-stream");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  ASSERT_TRUE(r->has_header("Inference-Header-Content-Length"));
  const size_t n = std::stoul(r->get_header_value("Inference-Header-Content-Length"));
  ASSERT_LE(n, r->body.size());
  json answer = json::parse(r->body.substr(0, n));
  EXPECT_EQ(answer["id"], "bin");
  json& probs = answer["outputs"][0];
  ASSERT_EQ(probs["parameters"]["binary_data_size"], rows * 4 * 4) << answer.dump();
  ASSERT_EQ(r->body.size() - n, static_cast<size_t>(rows * 4 * 4));
  std::vector<float> values(static_cast<size_t>(rows * 4));
  std::memcpy(values.data(), r->body.data() + n, values.size() * sizeof(float));
  probs["data"] = values;
  expect_matches_engine(answer, engine_outputs("fm", 2, pixels, rows), rows);
  // A body whose binary part does not match its header: 400 naming the size.
  auto bad = c->Post("/v2/models/fm/infer", headers, body.substr(0, body.size() - 1), "application/octet-stream");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("binary_data_size 192 runs past"), std::string::npos) << bad->body;
  httplib::Headers wrong{{"Inference-Header-Content-Length", "12x"}};
  auto worse = c->Post("/v2/models/fm/infer", wrong, body, "application/octet-stream");
  ASSERT_TRUE(worse);
  EXPECT_EQ(worse->status, 400);
  EXPECT_NE(worse->body.find("Inference-Header-Content-Length"), std::string::npos) << worse->body;
}

// The queue policy, with a delay policy that holds a lone request in the queue for 5 s: a second
// request finds the queue full (429), the queued one times out (503), a request's own timeout
// shortens the wait.
TEST_F(ServeE2E, QueuePolicyRejectsAndTimesOut) {
  const fs::path log = dir_ / "queue.log";
  Started s = start_server(repo_,
                           {"--poll-seconds", "0", "--batching", "delay", "--max-queue-delay-us", "5000000",
                            "--max-queue-size", "1", "--queue-timeout-us", "400000"},
                           log);
  ASSERT_GT(s.port, 0) << test::read_text(log);
  const std::string body = infer_body(random_pixels(1, 5), 1).dump();
  std::optional<int> first_status;
  std::string first_body;
  const auto start = std::chrono::steady_clock::now();
  std::thread first([&] {
    httplib::Client c("127.0.0.1", s.port);
    c.set_read_timeout(20, 0);
    if (auto r = c.Post("/v2/models/fm/infer", body, "application/json")) {
      first_status = r->status;
      first_body = r->body;
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  httplib::Client c("127.0.0.1", s.port);
  c.set_read_timeout(20, 0);
  auto full = c.Post("/v2/models/fm/infer", body, "application/json");
  ASSERT_TRUE(full);
  EXPECT_EQ(full->status, 429);
  EXPECT_NE(full->body.find("--max-queue-size"), std::string::npos) << full->body;
  EXPECT_EQ(full->get_header_value("Retry-After"), "1");
  first.join();
  const auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(first_status.has_value()) << test::read_text(log);
  EXPECT_EQ(*first_status, 503) << first_body;
  EXPECT_NE(first_body.find("over its timeout"), std::string::npos) << first_body;
  EXPECT_LT(waited, std::chrono::seconds(4)) << "the queued request waited out the batch delay";
  json own = json::parse(body);
  own["parameters"] = {{"timeout", 50000}};
  const auto t0 = std::chrono::steady_clock::now();
  auto timed = c.Post("/v2/models/fm/infer", own.dump(), "application/json");
  ASSERT_TRUE(timed);
  EXPECT_EQ(timed->status, 503) << timed->body;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(350)) << "parameters.timeout was ignored";
  const int status = stop_server(s);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// A pipeline (fm version 2 split in two) answers as the unsplit model: in-process, and with both
// stages on another dtrain-serve; its metadata shows the stages, /metrics each stage's time.
TEST_F(ServeE2E, APipelineAnswersAsTheUnsplitModelInProcessAndAcrossServers) {
  auto c = client();
  const json meta = get(*c, "/v2/models/fmp", 200);
  EXPECT_EQ(meta["platform"], "pipeline");
  EXPECT_EQ(meta["inputs"], json::parse(R"([{"name":"input","datatype":"UINT8","shape":[-1,8,8]}])"));
  ASSERT_EQ(meta["parameters"]["stages"].size(), 2u) << meta.dump();
  EXPECT_EQ(meta["parameters"]["stages"][1]["model"], "fmp.stage2");
  const int64_t rows = 3;
  const std::vector<uint8_t> pixels = random_pixels(rows, 31);
  const json local = post(*c, "/v2/models/fmp/infer", infer_body(pixels, rows, "p1").dump(), 200);
  EXPECT_EQ(local["id"], "p1");
  expect_matches_engine(local, engine_outputs("fm", 2, pixels, rows), rows);
  EXPECT_GE(metric("dtrain_serve_pipeline_stage_seconds_count{model=\"fmp\",version=\"1\",stage=\"2\"}"), 1);

  // Server B (no API key) serves the stage models; the suite's server gets a pipeline "fmr" whose
  // stages both run on B, and one "fmdead" whose second stage points where nothing listens.
  const fs::path log = dir_ / "stages.log";
  Started b = start_server(repo_, {"--poll-seconds", "0"}, log);
  ASSERT_GT(b.port, 0) << test::read_text(log);
  const std::string url = "http://127.0.0.1:" + std::to_string(b.port);
  for (const auto& [name, second_url] : {std::pair<std::string, std::string>{"fmr", url},
                                         std::pair<std::string, std::string>{"fmdead", "http://127.0.0.1:1"}}) {
    json config = json::parse(test::read_text(fs::path(repo_) / "fmp" / "config.json"));
    config["name"] = name;
    json stages = json::parse(test::read_text(fs::path(repo_) / "fmp" / "1" / "pipeline.json"));
    stages["stages"][0]["url"] = url;
    stages["stages"][1]["url"] = second_url;
    fs::create_directories(dir_ / "staging" / name / "1");
    std::ofstream(dir_ / "staging" / name / "config.json") << config.dump();
    std::ofstream(dir_ / "staging" / name / "1" / "pipeline.json") << stages.dump();
    fs::rename(dir_ / "staging" / name, fs::path(repo_) / name);
  }
  bool ready = false;
  for (int i = 0; i < 100 && !ready; ++i) {
    auto r = c->Get("/v2/models/fmdead/ready");
    ready = r && r->status == 200;
    if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(ready) << "the suite's server did not load the new pipelines";
  const json remote = post(*c, "/v2/models/fmr/infer", infer_body(pixels, rows).dump(), 200);
  expect_matches_engine(remote, engine_outputs("fm", 2, pixels, rows), rows);
  EXPECT_EQ(remote["model_name"], "fmr");
  const json dead = post(*c, "/v2/models/fmdead/infer", infer_body(pixels, rows).dump(), 502);
  EXPECT_NE(dead["error"].get<std::string>().find("at http://127.0.0.1:1 cannot be reached"), std::string::npos)
      << dead.dump();
  const int status = stop_server(b);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  // B is gone: the remote pipeline now answers 502 naming B, and the server keeps serving.
  const json gone = post(*c, "/v2/models/fmr/infer", infer_body(pixels, rows).dump(), 502);
  EXPECT_NE(gone["error"].get<std::string>().find(url), std::string::npos) << gone.dump();
  post(*c, "/v2/models/fmp/infer", infer_body(pixels, rows).dump(), 200);
}

// Broken pipeline.json files (truncated, fields mangled): each version is UNAVAILABLE with a
// reason or READY, never a crash, and the server keeps answering.
TEST_F(ServeE2E, FuzzedPipelineConfigsNeverCrashTheServer) {
  std::mt19937 rng(20261202);
  const std::string good = test::read_text(fs::path(repo_) / "fmp" / "1" / "pipeline.json");
  const fs::path staging = dir_ / "fuzzp";
  fs::create_directories(staging);
  fs::copy_file(fs::path(repo_) / "fmp" / "config.json", staging / "config.json");
  constexpr int kVersions = 24;
  for (int v = 1; v <= kVersions; ++v) {
    std::string text = good;
    json j = json::parse(good);
    json& stage = j["stages"][rng() % 2];
    switch (rng() % 8) {
      case 0: text = good.substr(0, rng() % good.size()); break;
      case 1: stage["model"] = rng() % 2 ? json(7) : json("../../etc"); break;
      case 2: stage["inputs"] = json::object({{"input", "missing"}}); break;
      case 3: stage["outputs"] = json::array(); break;
      case 4: stage["url"] = rng() % 2 ? json("http://127.0.0.1:1") : json("file:///x"); break;
      case 5: stage["version"] = rng() % 2 ? json(-3) : json(99); break;
      case 6: j["stages"] = json::array(); break;
      default: j = json::array({1, 2}); break;
    }
    if (rng() % 8 != 0) text = j.dump();
    fs::create_directories(staging / std::to_string(v));
    std::ofstream(staging / std::to_string(v) / "pipeline.json") << text;
  }
  fs::rename(staging, fs::path(repo_) / "fuzzp");
  auto c = client();
  int listed = 0;
  for (int i = 0; i < 100 && listed < kVersions; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    listed = 0;
    for (const json& row : get(*c, "/v2/repository/index", 200))
      if (row["name"] == "fuzzp") {
        ++listed;
        if (row["state"] == "UNAVAILABLE") {
          EXPECT_TRUE(row.contains("reason")) << row.dump();
        }
      }
  }
  EXPECT_EQ(listed, kVersions);
  for (int v = 1; v <= kVersions; ++v) {
    auto r = c->Post(("/v2/models/fuzzp/versions/" + std::to_string(v) + "/infer").c_str(),
                     infer_body(random_pixels(1, 3), 1).dump(), "application/json");
    ASSERT_TRUE(r) << "version " << v;
    EXPECT_TRUE(r->status == 200 || r->status == 502 || r->status == 503) << v << ": " << r->status << " " << r->body;
  }
  EXPECT_EQ(get(*c, "/v2/health/ready", 200)["ready"], true);
  fs::remove_all(fs::path(repo_) / "fuzzp");
}

TEST_F(ServeE2E, HotReloadServesANewVersionWithoutFailingRequests) {
  std::atomic<bool> stop{false};
  std::atomic<int> sent{0}, failed{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i)
    clients.emplace_back([&, i] {
      auto c = client();
      const std::string body = infer_body(random_pixels(1, 7 + i), 1).dump();
      while (!stop) {
        auto r = c->Post("/v2/models/fm/infer", body, "application/json");
        ++sent;
        if (!r || r->status != 200) ++failed;
      }
    });
  const int64_t v3 = serve_test::export_small_model(repo_, "fm", "u8", 3);
  ASSERT_EQ(v3, 3);
  auto c = client();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  std::string version;
  while (std::chrono::steady_clock::now() < deadline && version != "3") {
    version = get(*c, "/v2/models/fm/ready", 200).value("version", "");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  stop = true;
  for (auto& t : clients) t.join();
  ASSERT_EQ(version, "3") << test::read_text(dir_ / "serve.log");
  EXPECT_GT(sent.load(), 0);
  EXPECT_EQ(failed.load(), 0) << "of " << sent.load();
  const std::vector<uint8_t> pixels = random_pixels(2, 5);
  expect_matches_engine(post(*c, "/v2/models/fm/infer", infer_body(pixels, 2).dump(), 200),
                        engine_outputs("fm", 3, pixels, 2), 2);

  // A removed version unloads; a broken one is reported and never becomes the default.
  fs::remove_all(fs::path(repo_) / "fm" / "1");
  fs::create_directories(fs::path(repo_) / "fm" / "7");
  std::ofstream(fs::path(repo_) / "fm" / "7" / "model.onnx") << "not an onnx file";
  json index;
  bool settled = false;
  for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
       !settled && std::chrono::steady_clock::now() < until;) {
    index = get(*c, "/v2/repository/index", 200);
    bool has1 = false, broken7 = false;
    for (const json& row : index) {
      has1 |= row["name"] == "fm" && row["version"] == "1";
      broken7 |= row["name"] == "fm" && row["version"] == "7" && row["state"] == "UNAVAILABLE";
    }
    settled = !has1 && broken7;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(settled) << index.dump();
  get(*c, "/v2/models/fm/versions/1/ready", 404);
  EXPECT_NE(get(*c, "/v2/models/fm/versions/7/ready", 503)["error"].get<std::string>().find(
                "version 7 of model 'fm' is not ready"),
            std::string::npos);
  EXPECT_EQ(get(*c, "/v2/models/fm/ready", 200)["version"], "3");
  const std::string log = test::read_text(dir_ / "serve.log");
  EXPECT_NE(log.find("unloaded model 'fm' version 1"), std::string::npos);
  EXPECT_NE(log.find("model 'fm' version 7 is not served"), std::string::npos);
  fs::remove_all(fs::path(repo_) / "fm" / "7");
}

// Bodies that are malformed by construction (truncated, garbage, or valid JSON with one field made
// wrong), so each must be answered with a 4xx.
std::string malformed_body(std::mt19937& rng, const std::string& good) {
  const auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  json body = json::parse(good);
  json& input = body["inputs"][0];
  switch (pick(12)) {
    case 0: return good.substr(0, pick(good.size() - 1));
    case 1: {
      std::string s(1 + pick(200), ' ');
      for (char& ch : s) ch = static_cast<char>(rng() % 256);
      return "]" + s;
    }
    case 2: input["data"].erase(input["data"].begin() + static_cast<long>(pick(input["data"].size()))); break;
    case 3:
      for (size_t i = 0, n = 1 + pick(50); i < n; ++i) input["data"].push_back(pick(256));
      break;
    case 4: {
      const char* kinds[] = {"FP32", "INT64", "uint8", "BYTES", "", "FP16"};
      input["datatype"] = kinds[pick(6)];
      break;
    }
    case 5: input["name"] = "zz" + std::to_string(rng()); break;
    case 6: input["shape"][pick(3)] = pick(2) ? json(-1 - static_cast<int>(pick(5))) : json(9 + pick(1u << 20)); break;
    case 7: {
      const json values[] = {json(256 + static_cast<int>(pick(1000))),
                             json(-1 - static_cast<int>(pick(1000))),
                             json(pick(255) + 0.5),
                             json("7"),
                             json(nullptr),
                             json(true),
                             json::object()};
      input["data"][pick(input["data"].size())] = values[pick(7)];
      break;
    }
    case 8: {
      std::string deep(20 + pick(400), '[');
      return R"({"inputs":[{"name":"input","shape":[1,8,8],"datatype":"UINT8","data":)" + deep + "1" +
             std::string(deep.size(), ']') + "}]}";
    }
    case 9: body["id"] = static_cast<int>(rng() % 100); break;
    case 10: body["inputs"] = pick(2) ? json::object() : json::array(); break;
    default: body["outputs"] = json::array({{{"name", "zz" + std::to_string(pick(100))}}}); break;
  }
  return body.dump();
}

TEST_F(ServeE2E, FuzzedBodiesAndHeadersGetOnly4xxAndNoCrash) {
  std::mt19937 rng(20261123);
  const std::string good = infer_body(random_pixels(1, 9), 1).dump();
  auto c = client();
  int answered = 0;
  for (int i = 0; i < 2000; ++i) {
    const std::string body = malformed_body(rng, good);
    auto r = c->Post("/v2/models/fm/infer", body, "application/json");
    if (!r) {  // the server closes a connection after some errors; reconnect once
      c = client();
      r = c->Post("/v2/models/fm/infer", body, "application/json");
    }
    ASSERT_TRUE(r) << "no answer to body " << i << ": " << body.substr(0, 200);
    ASSERT_GE(r->status, 400) << body.substr(0, 200);
    ASSERT_LT(r->status, 500) << body.substr(0, 200) << " -> " << r->body;
    ASSERT_TRUE(json::parse(r->body, nullptr, false).contains("error")) << r->body;
    ++answered;
  }
  EXPECT_EQ(answered, 2000);
  // Binary bodies (the binary tensor data extension): a mangled JSON header, its length header
  // right, off or not a number, the binary part cut or padded.
  const std::vector<uint8_t> pixels9 = random_pixels(1, 9);
  json binary_header = infer_body(pixels9, 1);
  binary_header["inputs"][0].erase("data");
  binary_header["inputs"][0]["parameters"] = {{"binary_data_size", pixels9.size()}};
  for (int i = 0; i < 500; ++i) {
    json h = binary_header;
    json& size = h["inputs"][0]["parameters"]["binary_data_size"];
    switch (rng() % 6) {
      case 0: size = static_cast<int64_t>(rng() % 200) - 20; break;
      case 1: size = rng() % 2 ? json("64") : json(1e30); break;
      case 2: h["inputs"][0]["shape"][rng() % 3] = static_cast<int64_t>(rng() % 20) - 2; break;
      case 3: h["inputs"][0]["data"] = json::array({1, 2}); break;
      case 4: h["inputs"][0]["parameters"] = rng() % 2 ? json("x") : json::array(); break;
      default: break;
    }
    std::string head = h.dump();
    if (rng() % 5 == 0) head = head.substr(0, rng() % head.size());
    std::string tail(pixels9.begin(), pixels9.end());
    if (rng() % 3 == 0) tail.resize(rng() % 128);
    std::string length = std::to_string(head.size());
    switch (rng() % 5) {
      case 0: length = std::to_string(rng() % (head.size() + tail.size() + 8)); break;
      case 1: length = rng() % 2 ? "-1" : "1e3"; break;
      default: break;
    }
    auto r = c->Post("/v2/models/fm/infer", {{"Inference-Header-Content-Length", length}}, head + tail,
                     "application/octet-stream");
    if (!r) {
      c = client();
      r = c->Post("/v2/models/fm/infer", {{"Inference-Header-Content-Length", length}}, head + tail,
                  "application/octet-stream");
    }
    ASSERT_TRUE(r) << "no answer to binary body " << i << ": " << head.substr(0, 200);
    ASSERT_LT(r->status, 500) << head.substr(0, 200) << " -> " << r->body.substr(0, 300);
  }
  // Broken headers straight on a socket: a 4xx status line or a closed connection, never a 5xx.
  httplib::Headers headers[] = {{{"Content-Length", "abc"}},
                                {{"Content-Length", "-5"}},
                                {{"Content-Length", "99999999999999999999999"}},
                                {{"Authorization", "Bearer"}},
                                {{"Authorization", std::string(5000, 'k')}},
                                {{"Transfer-Encoding", "gzip"}}};
  for (const auto& h : headers) {
    auto r = c->Post("/v2/models/fm/infer", h, good, "application/json");
    if (r) {
      EXPECT_LT(r->status, 500) << r->body;
    }
    c = client();
  }
  auto ok = client();
  const std::vector<uint8_t> pixels = random_pixels(1, 9);
  post(*ok, "/v2/models/fm/infer", infer_body(pixels, 1).dump(), 200);
}

TEST_F(ServeE2E, WithoutKeysAndWithJsonLogsEveryLineIsJson) {
  const fs::path log = dir_ / "json.log";
  Started s = start_server(repo_, {"--log-format", "json", "--max-queue-delay-us", "0", "--poll-seconds", "0"}, log);
  ASSERT_GT(s.port, 0) << test::read_text(log);
  httplib::Client c("127.0.0.1", s.port);
  c.set_default_headers({{"X-Request-ID", "json-1"}});
  auto r = c.Post("/v2/models/fm/infer", infer_body(random_pixels(1, 1), 1).dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("X-Request-ID"), "json-1");
  const int status = stop_server(s);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  std::istringstream lines(test::read_text(log));
  int access = 0;
  for (std::string line; std::getline(lines, line);) {
    const json j = json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << line;
    EXPECT_TRUE(j.contains("time") && j.contains("level")) << line;
    EXPECT_EQ(j.contains("status"), j.contains("path")) << line;
    if (j.value("path", "") == "/v2/models/fm/infer") {  // the other access lines are readiness probes
      ++access;
      EXPECT_EQ(j["method"], "POST");
      EXPECT_EQ(j["status"], 200);
      EXPECT_EQ(j["request_id"], "json-1");
      EXPECT_TRUE(j["latency_ms"].is_number());
    }
  }
  EXPECT_EQ(access, 1);
}

// One raw request on a fresh connection; returns the status code, 0 when the server closed the
// connection without an answer, -1 when it did not answer within 3 s.
int raw_request(int port, const std::string& bytes) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval timeout{3, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  int status = -1;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size())) {
    char buf[64] = {};
    const ssize_t n = ::recv(fd, buf, sizeof buf - 1, 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET))
      status = 0;
    else if (n >= 12 && std::string(buf, 9) == "HTTP/1.1 ")
      status = std::atoi(buf + 9);
    else if (n > 0)
      status = 999;  // not HTTP
  }
  ::close(fd);
  return status;
}

TEST_F(ServeE2E, FuzzedRequestLinesAndHeadersNeverGet5xxOrHang) {
  std::mt19937 rng(7);
  const auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  const auto junk = [&](size_t max_len) {
    std::string s(1 + pick(max_len), ' ');
    for (char& ch : s) {
      ch = static_cast<char>(rng() % 256);
      if (ch == '\r' || ch == '\n') ch = 'x';
    }
    return s;
  };
  const std::string auth = std::string("Authorization: Bearer ") + kKey + "\r\n";
  for (int i = 0; i < 300; ++i) {
    std::string request;
    switch (pick(6)) {
      case 0: request = junk(200) + "\r\n\r\n"; break;
      case 1: request = "POST /v2/models/fm/infer HTTP/" + junk(5) + "\r\n" + auth + "\r\n"; break;
      case 2: request = "GET " + junk(100) + " HTTP/1.1\r\n" + auth + "\r\n"; break;
      case 3:
        request = "POST /v2/models/fm/infer HTTP/1.1\r\n" + auth + junk(30) + ": " + junk(100) +
                  "\r\nContent-Length: 0\r\n\r\n";
        break;
      case 4:
        request =
            "GET /v2/models/fm HTTP/1.1\r\n" + auth + "X-Long: " + std::string(9000 + pick(20000), 'a') + "\r\n\r\n";
        break;
      default:
        request = "POST /v2/models/fm/infer HTTP/1.1\r\n" + auth + "Transfer-Encoding: chunked\r\n\r\n" + "z" +
                  junk(20) +
                  "\r\n0\r\n\r\n";  // a chunk size that is not hex (a hex one would make the server wait for its bytes)
        break;
    }
    const int status = raw_request(port_, request);
    ASSERT_NE(status, -1) << "no answer within 3 s to request " << i << ": "
                          << json(request.substr(0, 300)).dump(-1, ' ', true, json::error_handler_t::replace);
    ASSERT_NE(status, 999) << request.substr(0, 120);
    ASSERT_LT(status, 500) << request.substr(0, 120);
  }
  auto c = client();
  get(*c, "/v2/health/ready", 200);
}

TEST_F(ServeE2E, Holds256KeepAliveConnectionsAtOnceWithDefaultThreads) {
  const fs::path log = dir_ / "keepalive.log";
  Started s = start_server(repo_, {"--poll-seconds", "0"}, log);
  ASSERT_GT(s.port, 0) << test::read_text(log);
  constexpr int kConnections = 256;
  std::vector<int> fds;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(s.port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < kConnections; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    fds.push_back(fd);
    timeval timeout{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << "connection " << i;
  }
  // Two rounds on every connection: the second only works when all 256 stayed open and served.
  const std::string request = "GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  for (int round = 0; round < 2; ++round) {
    for (int fd : fds)
      ASSERT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
    for (size_t i = 0; i < fds.size(); ++i) {
      std::string got;
      char buf[512];
      while (got.find("{\"live\":true}") == std::string::npos) {
        const ssize_t n = ::recv(fds[i], buf, sizeof buf, 0);
        ASSERT_GT(n, 0) << "round " << round << ", connection " << i << " got no answer";
        got.append(buf, static_cast<size_t>(n));
      }
      ASSERT_EQ(got.rfind("HTTP/1.1 200", 0), 0u) << got;
    }
  }
  for (int fd : fds) ::close(fd);
  const int status = stop_server(s);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST_F(ServeE2E, SigtermWaitsForARequestStillInTheBatchQueue) {
  const fs::path log = dir_ / "drain.log";
  // A lone request waits the whole queue delay (1 s) for company: it is in flight when SIGTERM comes.
  Started s =
      start_server(repo_, {"--poll-seconds", "0", "--batching", "delay", "--max-queue-delay-us", "1000000"}, log);
  ASSERT_GT(s.port, 0) << test::read_text(log);
  std::optional<int> status_code;
  std::thread request([&] {
    httplib::Client c("127.0.0.1", s.port);
    c.set_read_timeout(20, 0);
    auto r = c.Post("/v2/models/fm/infer", infer_body(random_pixels(1, 2), 1).dump(), "application/json");
    if (r) status_code = r->status;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto signalled = std::chrono::steady_clock::now();
  const int status = stop_server(s);
  request.join();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  ASSERT_TRUE(status_code.has_value()) << "the queued request got no answer\n" << test::read_text(log);
  EXPECT_EQ(*status_code, 200);
  EXPECT_GT(std::chrono::steady_clock::now() - signalled, std::chrono::milliseconds(400))
      << "exited before the batch ran";
}

// Last: SIGTERM while clients send; every answered request is a 200, and the server exits 0.
TEST_F(ServeE2E, SigtermDrainsInFlightRequestsAndExitsZero) {
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, server_errors{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 8; ++i)
    clients.emplace_back([&, i] {
      auto c = client();
      const std::string body = infer_body(random_pixels(2, 40 + i), 2).dump();
      while (!stop) {
        auto r = c->Post("/v2/models/fm/infer", body, "application/json");
        if (!r) break;  // the server stopped accepting
        if (r->status == 200)
          ++ok;
        else
          ++server_errors;
      }
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const int status = stop_server(pid_);
  pid_ = -1;
  stop = true;
  for (auto& t : clients) t.join();
  ASSERT_NE(status, -1) << "dtrain-serve did not exit within 20 s of SIGTERM";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_GT(ok.load(), 0);
  EXPECT_EQ(server_errors.load(), 0);
  const std::string log = test::read_text(dir_ / "serve.log");
  EXPECT_NE(log.find("SIGTERM: no new connections"), std::string::npos)
      << log.substr(log.size() > 2000 ? log.size() - 2000 : 0);
  EXPECT_NE(log.find("POST /v2/models/fm/infer 200"), std::string::npos);
}

}  // namespace
}  // namespace dtrain
