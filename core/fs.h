#pragma once
// Small file-system helpers shared by the command-line tools.
#include <string>
#include <string_view>

namespace dtrain {

// Writes `contents` to PATH.tmp, fsyncs it and renames it to `path`, so readers see either the
// old file or the whole new one. Creates the parent directory. Throws naming the path.
void write_file_atomic(const std::string& path, std::string_view contents);

// Creates `dir` and its parents if missing; throws naming it when that fails.
void ensure_directory(const std::string& dir);

}  // namespace dtrain
