#pragma once
// Wall-clock intervals for logs, metrics and benchmarks: one monotonic clock everywhere.
#include <chrono>

namespace dtrain {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace dtrain
