#pragma once
// Helpers the end-to-end tests share: where the built binaries are, reading a file whole, and
// running a command for its exit code and output.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace dtrain::test {

// A path inside the build tree: $DTRAIN_BINARY_DIR (ctest sets it) / relative, or ./relative.
inline std::string built_file(const std::string& relative) {
  const char* dir = std::getenv("DTRAIN_BINARY_DIR");
  return std::string(dir && *dir ? dir : ".") + "/" + relative;
}

// The whole file as text (empty when it cannot be read).
inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct CommandResult {
  int exit_code = -1;  // -1: the command did not exit normally (or could not start)
  std::string output;  // stdout and stderr
};

// Runs `command` through the shell with stderr folded into stdout.
inline CommandResult run_command(const std::string& command) {
  CommandResult r;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace dtrain::test
