#pragma once
// dtrain-serve's options: one struct, filled from the command line and an optional INI file with
// the same keys (the command line wins).
#include <cstdint>
#include <string>
#include <vector>

namespace dtrain::serve {

struct ServeOptions {
  std::string repo;
  std::string host = "127.0.0.1";
  int port = 8000;
  int threads = 256;  // HTTP worker threads = connections served at once (keep-alive holds one)
  int64_t max_batch = 64;
  int64_t max_queue_delay_us = 2000;
  std::string batching = "eager";  // eager | delay (serve/batcher.h)
  int64_t max_queue_size = 0;      // requests waiting per model version (0: no limit)
  int64_t queue_timeout_us = 0;    // how long a request may wait in the queue (0: no limit)
  int instances = 1;
  int engine_threads =
      1;  // OpenBLAS threads for the engine's GEMMs (process-wide)              // engine workers per model version
  int64_t max_tokens = 256;  // largest max_tokens a generate request may ask for
  std::string api_key_file;
  int64_t max_body_bytes = 8 << 20;
  double poll_seconds = 5;
  double drain_seconds = 30;
  double drain_notice_seconds = 0;  // on SIGTERM: answer not-ready this long before closing
  std::string device = "cpu";
  std::string log_format = "text";  // access log lines: text | json
};

// What parse_serve_options decided: run with `options`, or exit with `exit_code` after printing
// `message` (help text on stdout for 0, a one-line error naming the option on stderr for 2).
struct ParsedOptions {
  ServeOptions options;
  bool run = false;
  int exit_code = 0;
  std::string message;
};

ParsedOptions parse_serve_options(const std::vector<std::string>& args);

// "8MiB", "512k", "1000000", "2G" (binary multiples) -> bytes; throws dtrain::Error naming `text`.
int64_t parse_byte_size(const std::string& text);

// Non-empty lines of the key file, trimmed; '#' starts a comment. Throws naming the file when it
// cannot be read or holds no key.
std::vector<std::string> read_api_keys(const std::string& path);

}  // namespace dtrain::serve
