#pragma once
// One exception type for the whole project. Messages say what failed, where
// (file, key, rank, tensor name) and what was expected.
#include <sstream>
#include <stdexcept>
#include <string>

namespace dtrain {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

// Throws dtrain::Error with the arguments streamed together.
template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(detail::concat(args...));
}

}  // namespace dtrain

// Checks a condition that depends on input (not an internal invariant) and throws with a message.
#define DTRAIN_CHECK(cond, ...)               \
  do {                                        \
    if (!(cond)) ::dtrain::fail(__VA_ARGS__); \
  } while (0)
