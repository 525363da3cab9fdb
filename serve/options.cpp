#include "serve/options.h"

#include <boost/program_options.hpp>

#include <cctype>
#include <sstream>

#include "core/error.h"
#include "core/fs.h"
#include "core/types.h"

namespace po = boost::program_options;

namespace dtrain::serve {

int64_t parse_byte_size(const std::string& text) {
  size_t end = 0;
  long double value = 0;
  try {
    value = std::stold(text, &end);
  } catch (const std::exception&) {
    fail("'", text, "' is not a size (expected e.g. 8MiB, 512KiB, 1000000)");
  }
  std::string unit = text.substr(end);
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  long double scale = 0;
  if (unit.empty() || unit == "b")
    scale = 1;
  else if (unit == "k" || unit == "kb" || unit == "kib")
    scale = 1024.0L;
  else if (unit == "m" || unit == "mb" || unit == "mib")
    scale = 1024.0L * 1024;
  else if (unit == "g" || unit == "gb" || unit == "gib")
    scale = 1024.0L * 1024 * 1024;
  DTRAIN_CHECK(scale > 0, "'", text, "' has an unknown unit '", text.substr(end), "' (expected B, KiB, MiB or GiB)");
  const long double bytes = value * scale;
  DTRAIN_CHECK(bytes >= 1 && bytes < 1e15L, "'", text, "' is not a size between 1 byte and 1 PB");
  return static_cast<int64_t>(bytes);
}

std::vector<std::string> read_api_keys(const std::string& path) {
  std::istringstream in(read_text_file(path, "API key file"));
  std::vector<std::string> keys;
  for (std::string line; std::getline(in, line);) {
    if (const size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    const size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos) continue;
    const size_t last = line.find_last_not_of(" \t\r");
    keys.push_back(line.substr(first, last - first + 1));
  }
  DTRAIN_CHECK(!keys.empty(), "the API key file ", path, " holds no key (one key per line)");
  return keys;
}

namespace {

// The option table: every key with its default (the option struct's) and what it does.
po::options_description option_table(ServeOptions& o, std::string& max_body) {
  po::options_description keys("dtrain-serve options (also as KEY = VALUE lines in --config FILE.ini)");
  keys.add_options()("repo", po::value(&o.repo), "model repository written by `dtrain export` (required)")(
      "host", po::value(&o.host)->default_value(o.host), "address to listen on")(
      "port", po::value(&o.port)->default_value(o.port), "TCP port (0: any free port, printed at start)")(
      "threads", po::value(&o.threads)->default_value(o.threads),
      "HTTP worker threads at most: connections served at once (an idle keep-alive connection holds one); started as "
      "needed")("max-batch", po::value(&o.max_batch)->default_value(o.max_batch),
                "rows per engine run (also the largest request; a model's config.json max_batch_size may lower it)")(
      "batching", po::value(&o.batching)->default_value(o.batching),
      "eager: an idle engine worker runs what is queued at once, batches form while workers are busy; delay: "
      "wait up to --max-queue-delay-us for a batch to fill (Triton's dynamic batcher)")(
      "max-queue-delay-us", po::value(&o.max_queue_delay_us)->default_value(o.max_queue_delay_us),
      "--batching delay: how long a request waits for others to join its batch (0: no waiting)")(
      "max-queue-size", po::value(&o.max_queue_size)->default_value(o.max_queue_size),
      "requests that may wait per model version; more get 429 (0: no limit)")(
      "queue-timeout-us", po::value(&o.queue_timeout_us)->default_value(o.queue_timeout_us),
      "a request still queued after this long gets 503 without running (0: no limit; a request's parameters.timeout "
      "may shorten it)")("instances", po::value(&o.instances)->default_value(o.instances),
                         "engine workers per model version")(
      "engine-threads", po::value(&o.engine_threads)->default_value(o.engine_threads),
      "threads for the engine's matrix products and its other CPU passes (process-wide); the HTTP threads parsing JSON "
      "need the "
      "other cores, so raise it only for large models on many cores")(
      "max-tokens", po::value(&o.max_tokens)->default_value(o.max_tokens),
      "largest max_tokens a generate request may ask for (language models)")(
      "api-key-file", po::value(&o.api_key_file), "file with one API key per line: require Authorization: Bearer KEY")(
      "max-body-bytes", po::value(&max_body)->default_value(max_body), "largest request body (413 above it)")(
      "poll-seconds", po::value(&o.poll_seconds)->default_value(o.poll_seconds),
      "how often the repository is scanned for new or removed versions (0: never)")(
      "drain-seconds", po::value(&o.drain_seconds)->default_value(o.drain_seconds),
      "on SIGTERM/SIGINT, how long in-flight requests may take before the server exits anyway")(
      "drain-notice-seconds", po::value(&o.drain_notice_seconds)->default_value(o.drain_notice_seconds),
      "on SIGTERM/SIGINT, first answer 503 on /v2/health/ready for this long while still serving, so a load "
      "balancer's health check takes the server out of rotation (0: stop accepting at once)")(
      "device", po::value(&o.device)->default_value(o.device), "cpu | cuda | cuda:N")(
      "log-format", po::value(&o.log_format)->default_value(o.log_format),
      "log lines: text | json (one JSON object per line)");
  return keys;
}

// Range checks of the parsed values; throws po::error naming the option.
void check_values(ServeOptions& o, const std::string& max_body) {
  auto require = [](bool ok, const std::string& what) {
    if (!ok) throw po::error(what);
  };
  require(!o.repo.empty(), "the option '--repo' is required");
  require(o.port >= 0 && o.port <= 65535, "the option '--port' must be 0..65535");
  require(o.threads >= 1 && o.threads <= 4096, "the option '--threads' must be 1..4096");
  require(o.max_batch >= 1 && o.max_batch <= 1 << 20, "the option '--max-batch' must be at least 1");
  require(o.max_queue_delay_us >= 0 && o.max_queue_delay_us <= 10'000'000,
          "the option '--max-queue-delay-us' must be 0..10000000");
  require(o.batching == "eager" || o.batching == "delay", "the option '--batching' must be eager or delay");
  require(o.max_queue_size >= 0 && o.max_queue_size <= 1 << 24, "the option '--max-queue-size' must be 0..16777216");
  require(o.queue_timeout_us >= 0 && o.queue_timeout_us <= 3'600'000'000LL,
          "the option '--queue-timeout-us' must be 0..3600000000");
  require(o.engine_threads >= 1 && o.engine_threads <= 1024, "the option '--engine-threads' must be 1..1024");
  require(o.instances >= 1 && o.instances <= 256, "the option '--instances' must be 1..256");
  require(o.max_tokens >= 1 && o.max_tokens <= 1 << 20, "the option '--max-tokens' must be 1..1048576");
  require(o.poll_seconds >= 0, "the option '--poll-seconds' must not be negative");
  require(o.log_format == "text" || o.log_format == "json", "the option '--log-format' must be text or json");
  require(o.drain_seconds > 0, "the option '--drain-seconds' must be positive");
  require(o.drain_notice_seconds >= 0 && o.drain_notice_seconds <= 3600,
          "the option '--drain-notice-seconds' must be 0..3600");
  try {
    Device::parse(o.device);
  } catch (const Error& e) {
    throw po::error(std::string("the option '--device': ") + e.what());
  }
  try {
    o.max_body_bytes = parse_byte_size(max_body);
  } catch (const Error& e) {
    throw po::error(std::string("the option '--max-body-bytes': ") + e.what());
  }
}

}  // namespace

ParsedOptions parse_serve_options(const std::vector<std::string>& args) {
  ParsedOptions r;
  ServeOptions& o = r.options;
  std::string max_body = "8MiB", config_file;
  const po::options_description keys = option_table(o, max_body);
  po::options_description cli("dtrain-serve");
  cli.add_options()("help,h", "show this help")("config", po::value(&config_file), "INI file with the keys below");
  cli.add(keys);
  const std::string usage =
      "usage: dtrain-serve --repo DIR [--host 127.0.0.1] [--port 8000] [--config FILE.ini] [options]\n";
  po::variables_map vm;
  try {
    const po::parsed_options parsed = po::command_line_parser(args).options(cli).run();
    for (const po::option& opt : parsed.options)  // a bare word is no option: Boost would drop it silently
      if (opt.position_key >= 0)
        throw po::error("unexpected argument '" + (opt.value.empty() ? std::string() : opt.value.back()) +
                        "' (a config file goes after --config; every value goes after its --option)");
    po::store(parsed, vm);
    if (vm.count("config")) {
      std::istringstream in;
      try {
        in.str(read_text_file(vm["config"].as<std::string>(), "--config file"));
      } catch (const Error& e) {
        throw po::error(e.what());
      }
      po::store(po::parse_config_file(in, keys), vm);
    }
    po::notify(vm);
    if (vm.count("help")) {
      std::ostringstream os;
      os << usage << "\n" << cli << "\n";
      r.message = os.str();
      return r;
    }
    check_values(o, max_body);
  } catch (const po::error& e) {
    r.exit_code = 2;
    r.message = std::string("dtrain-serve: ") + e.what() + " (dtrain-serve --help lists the options)\n";
    return r;
  }
  r.run = true;
  return r;
}

}  // namespace dtrain::serve
