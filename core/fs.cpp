#include "core/fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"

namespace dtrain {

void ensure_directory(const std::string& dir) {
  if (dir.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail("cannot create directory ", dir, ": ", ec.message());
}

void probe_writable_directory(const std::string& dir, const std::string& what) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail(what, " ", dir, " cannot be created: ", ec.message());
  const std::string probe =
      (std::filesystem::path(dir) / (".dtrain-write-probe-" + std::to_string(::getpid()))).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(what, " ", dir, " is not writable: ", std::strerror(errno));
  const char bytes[4096] = {};
  const bool ok = ::write(fd, bytes, sizeof bytes) == static_cast<ssize_t>(sizeof bytes) && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  std::remove(probe.c_str());
  if (!ok) fail(what, " ", dir, " is not writable: ", std::strerror(err));
}

std::string read_text_file(const std::string& path, const std::string& what) {
  std::error_code ec;
  DTRAIN_CHECK(!std::filesystem::is_directory(path, ec), what, " ", path, " is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(what, " ", path, ": cannot open it: ", std::strerror(errno));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  DTRAIN_CHECK(!in.bad(), what, " ", path, ": read error: ", std::strerror(errno));
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 && c != '\n' && c != '\r' && c != '\t' && c != '\f' && c != '\v')
      fail(what, " ", path, " is not a text file (byte ", i, " is 0x", "0123456789abcdef"[c >> 4],
           "0123456789abcdef"[c & 15], ")");
  }
  return text;
}

void write_file_atomic(const std::string& path, std::string_view contents) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) ensure_directory(parent.string());
  const std::string temp = path + ".tmp";
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create ", temp, ": ", std::strerror(errno));
  size_t written = 0;
  while (written < contents.size()) {
    const ssize_t n = ::write(fd, contents.data() + written, contents.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      std::remove(temp.c_str());
      fail("cannot write ", temp, ": ", std::strerror(err));
    }
    written += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!synced || std::rename(temp.c_str(), path.c_str()) != 0) {
    std::remove(temp.c_str());
    fail("cannot write ", path, ": ", std::strerror(synced ? errno : err));
  }
}

}  // namespace dtrain
