// dtrain-serve options: defaults, INI file with the same keys, and one-line errors naming the option.
#include "serve/options.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace dtrain::serve {
namespace {

TEST(ServeOptions, DefaultsAndCommandLine) {
  const ParsedOptions p = parse_serve_options({"--repo", "models", "--port", "9000", "--max-body-bytes", "1KiB"});
  ASSERT_TRUE(p.run) << p.message;
  EXPECT_EQ(p.options.repo, "models");
  EXPECT_EQ(p.options.host, "127.0.0.1");
  EXPECT_EQ(p.options.port, 9000);
  EXPECT_EQ(p.options.max_batch, 64);
  EXPECT_EQ(p.options.max_queue_delay_us, 2000);
  EXPECT_EQ(p.options.instances, 1);
  EXPECT_EQ(p.options.max_body_bytes, 1024);
  EXPECT_EQ(p.options.poll_seconds, 5);
  EXPECT_EQ(p.options.max_tokens, 256);
  EXPECT_EQ(parse_serve_options({"--repo", "m", "--max-tokens", "1000"}).options.max_tokens, 1000);
}

TEST(ServeOptions, ReadsTheSameKeysFromAnIniFileAndTheCommandLineWins) {
  const auto path = std::filesystem::temp_directory_path() / ("serve_options_" + std::to_string(::getpid()) + ".ini");
  std::ofstream(path) << "repo = /srv/models\nport = 8100\nmax-batch = 16\nmax-body-bytes = 2MiB\n";
  const ParsedOptions p = parse_serve_options({"--config", path.string(), "--port", "8200"});
  std::filesystem::remove(path);
  ASSERT_TRUE(p.run) << p.message;
  EXPECT_EQ(p.options.repo, "/srv/models");
  EXPECT_EQ(p.options.port, 8200);
  EXPECT_EQ(p.options.max_batch, 16);
  EXPECT_EQ(p.options.max_body_bytes, 2 << 20);
}

TEST(ServeOptions, BadOptionsExitTwoWithOneLineNamingTheOption) {
  const auto expect_usage_error = [](const std::vector<std::string>& args, const std::string& needle) {
    const ParsedOptions p = parse_serve_options(args);
    EXPECT_FALSE(p.run);
    EXPECT_EQ(p.exit_code, 2);
    EXPECT_NE(p.message.find(needle), std::string::npos) << p.message;
    EXPECT_EQ(p.message.find('\n'), p.message.size() - 1) << "one line: " << p.message;
  };
  expect_usage_error({}, "'--repo' is required");
  expect_usage_error({"--repo", "m", "--port", "abc"}, "--port");
  expect_usage_error({"--repo", "m", "--port", "70000"}, "'--port'");
  expect_usage_error({"--repo", "m", "--max-batch", "0"}, "'--max-batch'");
  expect_usage_error({"--repo", "m", "--max-tokens", "0"}, "'--max-tokens'");
  expect_usage_error({"--repo", "m", "--max-body-bytes", "8XB"}, "'--max-body-bytes'");
  expect_usage_error({"--repo", "m", "--frobnicate"}, "--frobnicate");
  expect_usage_error({"--repo", "m", "serve.ini"}, "unexpected argument 'serve.ini'");
  expect_usage_error({"--repo", "m", "--device", "tpu"}, "'--device'");
  expect_usage_error({"--repo", "m", "--log-format", "xml"}, "'--log-format'");
  expect_usage_error({"--config", "/nonexistent/serve.ini"}, "/nonexistent/serve.ini");
  expect_usage_error({"--config", "/tmp"}, "--config file /tmp is a directory");
  expect_usage_error({"--config", "/proc/self/exe"}, "is not a text file (byte");
  const ParsedOptions help = parse_serve_options({"--help"});
  EXPECT_FALSE(help.run);
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.message.find("--max-queue-delay-us"), std::string::npos);
}

TEST(ServeOptions, ByteSizesAndKeyFiles) {
  EXPECT_EQ(parse_byte_size("8MiB"), 8 << 20);
  EXPECT_EQ(parse_byte_size("512k"), 512 << 10);
  EXPECT_EQ(parse_byte_size("1000"), 1000);
  EXPECT_THROW(parse_byte_size("lots"), Error);
  const auto path = std::filesystem::temp_directory_path() / ("serve_keys_" + std::to_string(::getpid()));
  std::ofstream(path) << "# keys\n  alpha  \n\nbeta # second\n";
  EXPECT_EQ(read_api_keys(path.string()), (std::vector<std::string>{"alpha", "beta"}));
  std::ofstream(path) << "# none\n";
  try {
    read_api_keys(path.string());
    ADD_FAILURE() << "an empty key file was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos);
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace dtrain::serve
