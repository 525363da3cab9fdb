#include "serve/server.h"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>
#include <thread>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "serve/generate_request.h"
#include "serve/infer_request.h"
#include "serve/kserve_types.h"
#include "serve/model_store.h"
#include "serve/utf8.h"
#include "serve/worker_pool.h"

using nlohmann::json;

namespace dtrain::serve {
namespace {

using Clock = std::chrono::steady_clock;

// The binary tensor data extension's header: the length of the JSON at the body's start.
constexpr const char* kBinaryHeader = "Inference-Header-Content-Length";

// Per connection thread: when the current request started and its id (set before routing, read
// by the access logger on the same thread).
thread_local Clock::time_point t_request_start;
thread_local std::string t_request_id;

// Compares every byte of the key whatever the candidate holds (the time depends on the key's
// length only).
bool constant_time_equal(const std::string& candidate, const std::string& key) {
  unsigned char diff = candidate.size() == key.size() ? 0 : 1;
  for (size_t i = 0; i < key.size(); ++i)
    diff |= static_cast<unsigned char>(key[i] ^ (i < candidate.size() ? candidate[i] : 0));
  return diff == 0;
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void reply(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, "application/json");
}

void reply_error(httplib::Response& res, int status, const std::string& message) {
  reply(res, status, error_json(message));
}

std::optional<std::string> version_of(const httplib::Request& req) {
  if (req.matches.size() > 3 && req.matches[3].matched) return req.matches[3].str();
  return std::nullopt;
}

json tensor_list(const std::vector<TensorInfo>& infos) {
  json out = json::array();
  for (const TensorInfo& t : infos)
    out.push_back({{"name", t.name}, {"datatype", kserve_dtype(t.dtype)}, {"shape", t.shape}});
  return out;
}

// A request id a client may set (X-Request-ID): printable, at most 64 characters.
bool usable_request_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id)
    if (c < 0x21 || c > 0x7e || c == '"' || c == '\\') return false;
  return true;
}

// httplib::Server with a deeper accept queue: Debian's libcpp-httplib listens with a backlog of 5
// (compiled in), which drops SYNs (1 s client retries) when many clients connect at once; Linux
// takes a second listen() on the bound socket as a new backlog.
class HttpServer : public httplib::Server {
 public:
  void widen_backlog(int backlog) { ::listen(svr_sock_, backlog); }
};

// httplib's task queue on a WorkerPool (see worker_pool.h for why not httplib's ThreadPool).
class PoolQueue : public httplib::TaskQueue {
 public:
  explicit PoolQueue(size_t max_threads) : pool_(max_threads) {}
  void enqueue(std::function<void()> fn) override { pool_.enqueue(std::move(fn)); }
  void shutdown() override { pool_.shutdown(); }

 private:
  WorkerPool pool_;
};

// Writes one generation as Server-Sent Events, as Triton's generate_stream does: one
// "data: {json}\n\n" per token (text_output: the text that token completes), then one with
// finish_reason (or {"error"} when the engine failed). Destroyed before the end (the client went
// away, or the server stopped), it cancels the generation.
class SseWriter {
 public:
  SseWriter(std::shared_ptr<const ModelVersion> version, std::optional<std::string> id,
            std::shared_ptr<GenerationStream> stream)
      : version_(std::move(version)), id_(std::move(id)), stream_(std::move(stream)) {}
  ~SseWriter() { stream_->cancel(); }
  SseWriter(const SseWriter&) = delete;
  SseWriter& operator=(const SseWriter&) = delete;

  // httplib's chunked content provider: blocks for the next tokens; false when the client is gone.
  bool write_next(httplib::DataSink& sink) {
    const GenerationStream::Event e = stream_->next();
    for (int64_t token : e.tokens)
      if (!write(sink, event(decoder_.push(static_cast<uint8_t>(token)), ""))) return false;
    if (!e.done) return true;
    const std::string last = e.error.empty()
                                 ? event(decoder_.finish(), e.finish_reason)
                                 : sse_event(error_json("generation failed on model '" + version_->name + "' version " +
                                                        std::to_string(version_->version) + ": " + e.error));
    if (!write(sink, last)) return false;
    sink.done();
    return true;
  }

 private:
  static bool write(httplib::DataSink& sink, const std::string& bytes) {
    return sink.write(bytes.data(), bytes.size());
  }
  std::string event(const std::string& text, const std::string& finish_reason) const {
    return sse_event(generate_response_json(version_->name, version_->version, id_, text, finish_reason));
  }

  std::shared_ptr<const ModelVersion> version_;  // held until the stream ends
  std::optional<std::string> id_;
  std::shared_ptr<GenerationStream> stream_;
  Utf8Decoder decoder_;
};

}  // namespace

struct Server::Impl {
  ServeOptions options;
  std::vector<std::string> api_keys;
  ServeMetrics metrics;
  ModelStore store;
  HttpServer http;
  std::atomic<uint64_t> next_request_id{1};
  std::atomic<bool> draining{false};
  std::thread loader;
  int port = 0;

  Impl(const ServeOptions& o, StoreOptions store_options)
      : options(o),
        api_keys(o.api_key_file.empty() ? std::vector<std::string>{} : read_api_keys(o.api_key_file)),
        store(std::move(store_options), &metrics) {
    setup();
  }

  ~Impl() {
    if (loader.joinable()) loader.join();
  }

  bool authorized(const httplib::Request& req) const {
    if (api_keys.empty()) return true;
    const std::string header = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (header.size() <= prefix.size() || header.compare(0, prefix.size(), prefix) != 0) return false;
    const std::string candidate = header.substr(prefix.size());
    bool ok = false;
    for (const std::string& key : api_keys) ok |= constant_time_equal(candidate, key);
    return ok;
  }

  httplib::Server::HandlerResponse before_routing(const httplib::Request& req, httplib::Response& res) {
    t_request_start = Clock::now();
    const std::string given = req.get_header_value("X-Request-ID");
    t_request_id = usable_request_id(given) ? given : "r" + std::to_string(next_request_id++);
    res.set_header("X-Request-ID", t_request_id);
    if (req.path.rfind("/v2/health/", 0) != 0 && !authorized(req)) {
      res.set_header("WWW-Authenticate", "Bearer");
      reply_error(
          res, 401,
          req.has_header("Authorization") ? "the API key is not valid" : "missing API key (Authorization: Bearer KEY)");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (req.has_header("Content-Length")) {
      const std::string length = req.get_header_value("Content-Length");
      unsigned long long n = 0;
      bool valid = !length.empty() && length.size() <= 19;
      for (char c : length) valid = valid && c >= '0' && c <= '9';
      if (valid) n = std::stoull(length);
      if (!valid) {
        reply_error(res, 400, "Content-Length '" + length + "' is not a number");
        res.set_header("Connection", "close");
        return httplib::Server::HandlerResponse::Handled;
      }
      if (n > static_cast<unsigned long long>(options.max_body_bytes)) {
        reply_error(res, 413,
                    "request body of " + length + " bytes is over the limit of " +
                        std::to_string(options.max_body_bytes) + " bytes (--max-body-bytes)");
        res.set_header("Connection", "close");
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return httplib::Server::HandlerResponse::Unhandled;
  }

  void access_log(const httplib::Request& req, const httplib::Response& res) const {
    const double ms = t_request_start == Clock::time_point{}
                          ? 0.0
                          : std::chrono::duration<double, std::milli>(Clock::now() - t_request_start).count();
    if (options.log_format == "json")
      log_info("{}", dump(json{{"method", req.method},
                               {"path", req.path},
                               {"status", res.status},
                               {"latency_ms", std::round(ms * 1000) / 1000},
                               {"request_id", t_request_id}}));
    else
      log_info("{} {} {} {:.3f} ms id={}", req.method.empty() ? "-" : req.method, req.path.empty() ? "-" : req.path,
               res.status, ms, t_request_id.empty() ? "-" : t_request_id);
    t_request_start = Clock::time_point{};
    t_request_id.clear();
  }

  void model_metadata(const httplib::Request& req, httplib::Response& res) const {
    const std::string name = req.matches[1].str();
    const Lookup l = store.find(name, version_of(req));
    if (!l.version) return reply_error(res, l.status, l.error);
    const ModelVersion& v = *l.version;
    json versions = json::array();
    if (version_of(req)) {
      versions.push_back(std::to_string(v.version));
    } else {
      for (const VersionStatus& s : store.index())
        if (s.model == name && s.state == "READY") versions.push_back(std::to_string(s.version));
    }
    json body{{"name", v.name},
              {"versions", versions},
              {"platform", v.platform},
              {"inputs", tensor_list(v.inputs)},
              {"outputs", tensor_list(v.outputs)},
              {"parameters", {{"max_batch_size", v.max_batch}, {"version", std::to_string(v.version)}}}};
    if (!v.labels.empty()) body["parameters"]["labels"] = v.labels;
    if (v.pipeline) {
      json stages = json::array();
      for (const PipelineStage& s : v.pipeline->stages) {
        json stage{{"model", s.model}, {"inputs", json::object()}, {"outputs", json::object()}};
        if (s.version > 0) stage["version"] = std::to_string(s.version);
        if (!s.url.empty()) stage["url"] = s.url;
        for (const auto& [name, tensor] : s.inputs) stage["inputs"][name] = tensor;
        for (const auto& [name, tensor] : s.outputs) stage["outputs"][name] = tensor;
        stages.push_back(std::move(stage));
      }
      body["parameters"]["stages"] = std::move(stages);
    }
    if (v.language_model) {
      const LanguageModelSpec& lm = v.language_model->spec();
      body["parameters"]["language_model"] = {{"vocab", lm.vocab},     {"ctx", lm.ctx},
                                              {"n_layer", lm.n_layer}, {"n_head", lm.n_head},
                                              {"n_embd", lm.n_embd},   {"kv_cache", v.language_model->has_cache()}};
    }
    reply(res, 200, dump(body));
  }

  void model_ready(const httplib::Request& req, httplib::Response& res) const {
    const Lookup l = store.find(req.matches[1].str(), version_of(req));
    if (!l.version) return reply_error(res, l.status, l.error);
    reply(res, 200,
          dump(json{{"name", l.version->name}, {"version", std::to_string(l.version->version)}, {"ready", true}}));
  }

  // The version a request's path names; otherwise answers 404 or 503 (counted) and returns null.
  std::shared_ptr<const ModelVersion> find_or_reply(const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1].str();
    Lookup l = store.find(name, version_of(req));
    if (!l.version) {
      // Unknown names share one series: a client must not be able to grow the metrics at will.
      metrics.count_request(l.status == 404 ? "" : name, 0, l.status);
      reply_error(res, l.status, l.error);
    }
    return std::move(l.version);
  }

  void infer(const httplib::Request& req, httplib::Response& res) {
    const auto start = Clock::now();
    const std::shared_ptr<const ModelVersion> found = find_or_reply(req, res);
    if (!found) return;
    const ModelVersion& v = *found;
    if (!v.batcher && !v.pipeline) {
      metrics.count_request(v.name, v.version, 400);
      return reply_error(res, 400,
                         "model '" + v.name + "' version " + std::to_string(v.version) +
                             " is a language model: send text to /v2/models/" + v.name +
                             "/generate or /generate_stream");
    }
    InferRequest request;
    try {
      std::optional<std::string> header_length;
      if (req.has_header(kBinaryHeader)) header_length = req.get_header_value(kBinaryHeader);
      request = parse_infer_request(req.body, v.inputs, v.outputs, v.max_batch, header_length);
    } catch (const Error& e) {
      metrics.count_request(v.name, v.version, 400);
      return reply_error(res, 400, e.what());
    }
    BatchResult result;
    if (v.pipeline && !run_pipeline_request(v, request, result, res)) return;
    try {
      if (!v.pipeline) result = v.batcher->submit(request.inputs, request.timeout_us).get();
    } catch (const QueueFull& e) {
      metrics.count_request(v.name, v.version, 429);
      res.set_header("Retry-After", "1");
      return reply_error(res, 429,
                         std::string("model '") + v.name + "' version " + std::to_string(v.version) + ": " + e.what());
    } catch (const std::exception& e) {
      metrics.count_request(v.name, v.version, 503);
      return reply_error(res, 503,
                         std::string("model '") + v.name + "' version " + std::to_string(v.version) +
                             " cannot take requests: " + e.what());
    }
    if (result.timed_out) {
      metrics.count_request(v.name, v.version, 503);
      return reply_error(res, 503, "model '" + v.name + "' version " + std::to_string(v.version) + ": " + result.error);
    }
    if (!result.error.empty()) {
      metrics.count_request(v.name, v.version, 500);
      return reply_error(
          res, 500,
          "inference failed on model '" + v.name + "' version " + std::to_string(v.version) + ": " + result.error);
    }
    InferResponse answer = infer_response(v.name, v.version, request, v.outputs, result.outputs);
    if (answer.json_length == 0) {
      reply(res, 200, answer.body);
    } else {
      res.status = 200;
      res.set_header(kBinaryHeader, std::to_string(answer.json_length));
      res.set_content(std::move(answer.body), "application/octet-stream");
    }
    metrics.count_request(v.name, v.version, 200);
    metrics.observe_request(v.name, v.version, result.queue_s,
                            std::chrono::duration<double>(Clock::now() - start).count());
  }

  // A pipeline's stages, in this server or on others; false after answering a failed stage.
  bool run_pipeline_request(const ModelVersion& v, const InferRequest& request, BatchResult& result,
                            httplib::Response& res) {
    const auto local = [this, &request](const PipelineStage& stage, const NamedTensors& inputs) {
      const Lookup l =
          store.find(stage.model, stage.version > 0 ? std::optional(std::to_string(stage.version)) : std::nullopt);
      if (!l.version) throw StageError(l.status == 404 ? 503 : l.status, "stage: " + l.error);
      const ModelVersion& s = *l.version;
      if (!s.batcher)
        throw StageError(503, "stage model '" + s.name + "' is not a plain model (a pipeline or a language model)");
      std::vector<Tensor> ordered;
      for (const TensorInfo& in : s.inputs) {
        const auto it = inputs.find(in.name);
        if (it == inputs.end())
          throw StageError(503,
                           "stage model '" + s.name + "' takes '" + in.name + "', which the pipeline does not give it");
        ordered.push_back(it->second);
      }
      const BatchResult r = s.batcher->submit(std::move(ordered), request.timeout_us).get();
      if (!r.error.empty()) throw StageError(r.timed_out ? 503 : 500, "stage model '" + s.name + "': " + r.error);
      NamedTensors out;
      for (size_t k = 0; k < s.outputs.size(); ++k) out[s.outputs[k].name] = r.outputs[k];
      return out;
    };
    const auto observe = [this, &v](size_t stage, double seconds) {
      metrics.observe_stage(v.name, v.version, static_cast<int64_t>(stage + 1), seconds);
    };
    try {
      result.outputs = run_pipeline(*v.pipeline, v.inputs, request.inputs, v.outputs, local, observe);
      return true;
    } catch (const StageError& e) {
      metrics.count_request(v.name, v.version, e.status());
      reply_error(res, e.status(), "pipeline '" + v.name + "' version " + std::to_string(v.version) + ": " + e.what());
    } catch (const std::exception& e) {
      metrics.count_request(v.name, v.version, 500);
      reply_error(res, 500, "pipeline '" + v.name + "' version " + std::to_string(v.version) + ": " + e.what());
    }
    return false;
  }

  // The generate extension. Errors before generation starts answer 4xx JSON; then /generate
  // answers once, /generate_stream streams Server-Sent Events (SseWriter).
  void generate(const httplib::Request& req, httplib::Response& res, bool streaming) {
    const std::shared_ptr<const ModelVersion> found = find_or_reply(req, res);
    if (!found) return;
    const ModelVersion& v = *found;
    GenerateRequest g;
    try {
      DTRAIN_CHECK(v.generator, "model '", v.name, "' version ", v.version,
                   " is not a language model (its config.json has no \"language_model\"); use /infer");
      g = parse_generate_request(req.body, options.max_tokens);
    } catch (const Error& e) {
      metrics.count_request(v.name, v.version, 400);
      return reply_error(res, 400, e.what());
    }
    std::vector<int64_t> prompt;
    for (unsigned char c : g.text_input) prompt.push_back(c);
    std::shared_ptr<GenerationStream> stream = v.generator->submit(std::move(prompt), g.max_tokens, g.sampling, g.seed);
    if (streaming) {
      metrics.count_request(v.name, v.version, 200);
      auto writer = std::make_shared<SseWriter>(found, g.id, std::move(stream));
      res.set_header("Cache-Control", "no-cache");
      res.set_chunked_content_provider("text/event-stream; charset=utf-8",
                                       [writer](size_t, httplib::DataSink& sink) { return writer->write_next(sink); });
      return;
    }
    std::string bytes;
    GenerationStream::Event e;
    while (!e.done) {
      e = stream->next();
      for (int64_t token : e.tokens) bytes += static_cast<char>(token);
    }
    metrics.count_request(v.name, v.version, e.error.empty() ? 200 : 500);
    if (!e.error.empty())
      return reply_error(
          res, 500,
          "generation failed on model '" + v.name + "' version " + std::to_string(v.version) + ": " + e.error);
    reply(res, 200, generate_response_json(v.name, v.version, g.id, decode_utf8_bytes(bytes), e.finish_reason));
  }

  void repository_index(httplib::Response& res) const {
    json out = json::array();
    for (const VersionStatus& s : store.index()) {
      json row{{"name", s.model}, {"version", std::to_string(s.version)}, {"state", s.state}};
      if (!s.reason.empty()) row["reason"] = s.reason;
      out.push_back(std::move(row));
    }
    reply(res, 200, dump(out));
  }

  void setup() {
    const int threads = options.threads;
    // httplib takes ownership of the queue it is handed.
    http.new_task_queue = [threads] { return new PoolQueue(static_cast<size_t>(threads)); };
    http.set_payload_max_length(static_cast<size_t>(options.max_body_bytes));
    http.set_keep_alive_max_count(1000);
    http.set_tcp_nodelay(true);
    http.set_pre_routing_handler(
        [this](const httplib::Request& req, httplib::Response& res) { return before_routing(req, res); });
    http.set_logger([this](const httplib::Request& req, const httplib::Response& res) { access_log(req, res); });
    http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      std::string message = "HTTP " + std::to_string(res.status);
      if (res.status == 404) message = "no endpoint " + req.method + " " + req.path;
      if (res.status == 413) message = "request body is over the limit (--max-body-bytes)";
      if (res.status == 400) message = "malformed HTTP request";
      res.set_content(error_json(message), "application/json");
    });
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unknown error";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {}
      reply_error(res, 500, "internal error: " + what);
    });

    http.Get("/v2", [](const httplib::Request&, httplib::Response& res) {
      reply(res, 200,
            dump(json{{"name", "dtrain-serve"},
                      {"version", DTRAIN_VERSION},
                      {"extensions", {"model_repository", "metrics", "generate", "binary_tensor_data"}}}));
    });
    http.Get("/v2/health/live",
             [](const httplib::Request&, httplib::Response& res) { reply(res, 200, R"({"live":true})"); });
    http.Get("/v2/health/ready", [this](const httplib::Request&, httplib::Response& res) {
      if (draining) return reply_error(res, 503, "draining: the server is shutting down");
      if (store.ready()) return reply(res, 200, R"({"ready":true})");
      reply_error(res, 503, "the model repository is still loading");
    });
    const std::string model = R"(/v2/models/([^/]+)(/versions/([^/]+))?)";
    http.Get(model, [this](const httplib::Request& req, httplib::Response& res) { model_metadata(req, res); });
    http.Get(model + "/ready", [this](const httplib::Request& req, httplib::Response& res) { model_ready(req, res); });
    http.Post(model + "/infer", [this](const httplib::Request& req, httplib::Response& res) { infer(req, res); });
    http.Post(model + "/generate",
              [this](const httplib::Request& req, httplib::Response& res) { generate(req, res, false); });
    http.Post(model + "/generate_stream",
              [this](const httplib::Request& req, httplib::Response& res) { generate(req, res, true); });
    http.Get("/v2/repository/index",
             [this](const httplib::Request&, httplib::Response& res) { repository_index(res); });
    http.Post("/v2/repository/index",
              [this](const httplib::Request&, httplib::Response& res) { repository_index(res); });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.status = 200;
      res.set_content(metrics.render(store.gauges()), "text/plain; version=0.0.4");
    });
  }
};

Server::Server(const ServeOptions& options) : Server(options, {}) {}

Server::Server(const ServeOptions& options, const std::function<void(StoreOptions&)>& customize_store) {
  std::error_code ec;
  DTRAIN_CHECK(std::filesystem::is_directory(options.repo, ec), "the model repository --repo ", options.repo,
               " is not a directory (dtrain export --repo creates one)");
  StoreOptions store{
      options.repo, Device::parse(options.device),
      BatcherOptions{options.max_batch, options.max_queue_delay_us, options.instances,
                     parse_batch_policy(options.batching), options.max_queue_size, options.queue_timeout_us}};
  if (customize_store) customize_store(store);
  impl_ = std::make_unique<Impl>(options, std::move(store));
}

Server::~Server() = default;

int Server::bind() {
  Impl& s = *impl_;
  if (s.options.port == 0) {
    s.port = s.http.bind_to_any_port(s.options.host);
    DTRAIN_CHECK(s.port > 0, "cannot listen on ", s.options.host, " (any port)");
  } else {
    DTRAIN_CHECK(s.http.bind_to_port(s.options.host, s.options.port), "cannot listen on ", s.options.host, ":",
                 s.options.port, " (in use, or not an address of this machine)");
    s.port = s.options.port;
  }
  s.http.widen_backlog(1024);
  return s.port;
}

void Server::serve() {
  Impl& s = *impl_;
  // The logger's registry is made on first use: make it here, before the loader and HTTP threads
  // log at once (a server embedded without init_logging, as in the tests).
  (void)spdlog::default_logger_raw();
  s.loader = std::thread([&s] {
    try {
      s.store.scan();
    } catch (const std::exception& e) {
      log_error("loading the model repository {} failed: {}", s.options.repo, e.what());
    }
    s.store.start_polling(s.options.poll_seconds);
  });
  s.http.listen_after_bind();
}

void Server::stop() { impl_->http.stop(); }

void Server::begin_drain() { impl_->draining = true; }

}  // namespace dtrain::serve
