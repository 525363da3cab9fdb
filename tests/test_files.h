#pragma once
// Helpers the end-to-end tests share: where the built binaries are, and reading a file whole.
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

}  // namespace dtrain::test
