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

// The contents of a text file (a config, a key list). Throws naming `what` and the path when it
// cannot be read, is a directory, or holds binary data (a NUL or another control byte that text
// does not use), without echoing the bytes.
std::string read_text_file(const std::string& path, const std::string& what);

}  // namespace dtrain
