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

// Creates `dir` (and its parents) and proves it writable with a real write: a probe file written,
// fsynced and removed. Throws "<what> <dir> is not writable: <OS error>" (EACCES, EROFS, ENOSPC,
// ...) otherwise, so a run learns at its start what it would learn at its first write.
void probe_writable_directory(const std::string& dir, const std::string& what);

// The contents of a text file (a config, a key list). Throws naming `what` and the path when it
// cannot be read, is a directory, or holds binary data (a NUL or another control byte that text
// does not use), without echoing the bytes.
std::string read_text_file(const std::string& path, const std::string& what);

}  // namespace dtrain
