// dtrain-serve: KServe V2 REST inference server over a model repository written by `dtrain export`
// (docs/serve.md). SIGTERM/SIGINT stop accepting connections, let in-flight requests finish (up to
// --drain-seconds) and exit 0.
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "serve/options.h"
#include "serve/server.h"

namespace {

// Waits for SIGTERM/SIGINT (blocked in every thread, taken here with sigwait), stops the server,
// and bounds the drain; SIGUSR1 from main() ends it when the server stopped on its own.
class SignalWatcher {
 public:
  SignalWatcher(dtrain::serve::Server& server, double drain_seconds)
      : thread_([this, &server, drain_seconds] { watch(server, drain_seconds); }) {}
  ~SignalWatcher() {
    {
      std::lock_guard<std::mutex> lock(done_mutex_);
      done_ = true;
    }
    done_changed_.notify_all();
    pthread_kill(thread_.native_handle(), SIGUSR1);
    thread_.join();
  }

 private:
  void watch(dtrain::serve::Server& server, double drain_seconds) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    int sig = 0;
    sigwait(&set, &sig);
    if (sig == SIGUSR1) return;
    dtrain::log_info("{}: no new connections, finishing in-flight requests (up to {} s)",
                     sig == SIGTERM ? "SIGTERM" : "SIGINT", drain_seconds);
    server.stop();
    std::unique_lock<std::mutex> lock(done_mutex_);
    if (!done_changed_.wait_for(lock, std::chrono::duration<double>(drain_seconds), [this] { return done_; })) {
      dtrain::log_error("requests still in flight after {} s (--drain-seconds); exiting anyway", drain_seconds);
      std::_Exit(1);
    }
  }

  std::mutex done_mutex_;  // guards done_
  std::condition_variable done_changed_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  const dtrain::serve::ParsedOptions parsed = dtrain::serve::parse_serve_options(std::vector<std::string>(argv + 1, argv + argc));
  if (!parsed.run) {
    std::fputs(parsed.message.c_str(), parsed.exit_code == 0 ? stdout : stderr);
    return parsed.exit_code;
  }
  auto logger = spdlog::stderr_logger_mt("dtrain-serve");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);

  // Every thread started from here on inherits the blocked set; only SignalWatcher takes them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  try {
    const dtrain::serve::ServeOptions& o = parsed.options;
    dtrain::serve::Server server(o);
    const int port = server.bind();
    dtrain::log_info("dtrain-serve {} listening on http://{}:{} (repo {}, max batch {}, queue delay {} us, {} instance(s), "
                     "{} threads{})",
                     DTRAIN_VERSION, o.host, port, o.repo, o.max_batch, o.max_queue_delay_us, o.instances, o.threads,
                     o.api_key_file.empty() ? "" : ", API keys required");
    {
      SignalWatcher watcher(server, o.drain_seconds);
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
