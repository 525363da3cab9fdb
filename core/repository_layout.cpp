#include "core/repository_layout.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"

namespace dtrain {

namespace fs = std::filesystem;

bool is_model_version_name(const std::string& s) {
  return !s.empty() && s.size() < 19 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
         s[0] != '0';
}

std::vector<int64_t> list_model_versions(const std::string& repo, const std::string& name) {
  std::vector<int64_t> versions;
  const fs::path dir = fs::path(repo) / name;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return versions;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string v = e.path().filename().string();
    if (e.is_directory(ec) && is_model_version_name(v)) versions.push_back(std::stoll(v));
  }
  DTRAIN_CHECK(!ec, "cannot list ", dir.string(), ": ", ec.message());
  std::sort(versions.begin(), versions.end());
  return versions;
}

}  // namespace dtrain
