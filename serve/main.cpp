// dtrain-serve: KServe V2 REST inference server over a model repository written by `dtrain export`
// (docs/serve.md). SIGTERM/SIGINT stop accepting connections, let in-flight requests finish (up to
// --drain-seconds) and exit 0.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/error.h"
#include "core/kernels.h"
#include "core/log.h"
#include "serve/options.h"
#include "serve/server.h"

namespace {

// The write end of SignalWatcher's pipe: the one thing the signal handler may touch. (Blocking the
// signals and calling sigwait is not enough: threads that libraries start before main, such as
// OpenBLAS's pool, would still take SIGTERM with its default action.)
int g_signal_pipe_write = -1;

extern "C" void on_stop_signal(int sig) {
  const char c = static_cast<char>(sig);
  [[maybe_unused]] const ssize_t n = ::write(g_signal_pipe_write, &c, 1);
}

// --log-format json: every line one JSON object. A message that is itself a JSON object (an access
// log record) lends its fields; any other message becomes "message".
class JsonFields : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    const std::string_view text(msg.payload.data(), msg.payload.size());
    std::string fields;
    if (text.size() > 2 && text.front() == '{' && text.back() == '}')
      fields = text.substr(1, text.size() - 2);
    else
      fields = "\"message\":" +
               nlohmann::json(std::string(text)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(fields.data(), fields.data() + fields.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonFields>(); }
};

// Waits for SIGTERM/SIGINT (through a pipe written by the handler), stops the server, and bounds
// the drain; its destructor (the server stopped) ends it.
class SignalWatcher {
 public:
  SignalWatcher(dtrain::serve::Server& server, double notice_seconds, double drain_seconds) {
    DTRAIN_CHECK(::pipe(pipe_) == 0, "cannot create the signal pipe");
    g_signal_pipe_write = pipe_[1];
    struct sigaction action {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    ::sigaction(SIGTERM, &action, nullptr);
    ::sigaction(SIGINT, &action, nullptr);
    thread_ =
        std::thread([this, &server, notice_seconds, drain_seconds] { watch(server, notice_seconds, drain_seconds); });
  }
  ~SignalWatcher() {
    {
      std::lock_guard<std::mutex> lock(done_mutex_);
      done_ = true;
    }
    done_changed_.notify_all();
    const char quit = 0;
    [[maybe_unused]] const ssize_t n = ::write(pipe_[1], &quit, 1);
    thread_.join();
    ::signal(SIGTERM, SIG_DFL);
    ::signal(SIGINT, SIG_DFL);
    ::close(pipe_[0]);
    ::close(pipe_[1]);
  }

 private:
  void watch(dtrain::serve::Server& server, double notice_seconds, double drain_seconds) {
    char sig = 0;
    while (::read(pipe_[0], &sig, 1) < 0 && errno == EINTR) {}
    if (sig != SIGTERM && sig != SIGINT) return;
    const char* name = sig == SIGTERM ? "SIGTERM" : "SIGINT";
    if (notice_seconds > 0) {
      dtrain::log_info("{}: answering not-ready on /v2/health/ready for {} s, still serving (--drain-notice-seconds)",
                       name, notice_seconds);
      server.begin_drain();
      std::unique_lock<std::mutex> lock(done_mutex_);
      if (done_changed_.wait_for(lock, std::chrono::duration<double>(notice_seconds), [this] { return done_; })) return;
    }
    dtrain::log_info("{}: no new connections, finishing in-flight requests (up to {} s)", name, drain_seconds);
    server.stop();
    std::unique_lock<std::mutex> lock(done_mutex_);
    if (!done_changed_.wait_for(lock, std::chrono::duration<double>(drain_seconds), [this] { return done_; })) {
      dtrain::log_error("requests still in flight after {} s (--drain-seconds); exiting anyway", drain_seconds);
      std::_Exit(1);
    }
  }

  int pipe_[2] = {-1, -1};
  std::mutex done_mutex_;  // guards done_
  std::condition_variable done_changed_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  dtrain::cpu::restart_with_better_blas_kernels(argv);
  const dtrain::serve::ParsedOptions parsed =
      dtrain::serve::parse_serve_options(std::vector<std::string>(argv + 1, argv + argc));
  if (!parsed.run) {
    std::fputs(parsed.message.c_str(), parsed.exit_code == 0 ? stdout : stderr);
    return parsed.exit_code;
  }
  auto logger = spdlog::stderr_logger_mt("dtrain-serve");
  if (parsed.options.log_format == "json") {
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<JsonFields>('*').set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%e","level":"%l",%*})");
    logger->set_formatter(std::move(formatter));
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  }
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);

  signal(SIGPIPE, SIG_IGN);

  try {
    const dtrain::serve::ServeOptions& o = parsed.options;
    dtrain::cpu::set_blas_threads(o.engine_threads);
    dtrain::serve::Server server(o);
    const int port = server.bind();
    dtrain::log_info(
        "dtrain-serve {} listening on http://{}:{} (repo {}, max batch {}, {} batching{}, {} instance(s), "
        "{} engine thread(s), {} threads{})",
        DTRAIN_VERSION, o.host, port, o.repo, o.max_batch, o.batching,
        o.batching == "delay" ? fmt::format(" up to {} us", o.max_queue_delay_us) : std::string(), o.instances,
        o.engine_threads, o.threads, o.api_key_file.empty() ? "" : ", API keys required");
    {
      SignalWatcher watcher(server, o.drain_notice_seconds, o.drain_seconds);
      server.serve();
    }
    dtrain::log_info("stopped");
    return 0;
  } catch (const dtrain::Error& e) {
    std::fprintf(stderr, "dtrain-serve: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dtrain-serve: internal error: %s\n", e.what());
    return 1;
  }
}
