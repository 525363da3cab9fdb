#pragma once
// The one logger (spdlog), prefixed "[rank r/w]". Rank 0 logs info; other ranks only warnings
// and errors unless all ranks were asked for (--log-all-ranks).
#include <spdlog/spdlog.h>

namespace dtrain {

void init_logging(int rank, int world, bool all_ranks);

template <typename... Args>
void log_info(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  spdlog::info(fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void log_warn(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  spdlog::warn(fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void log_error(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  spdlog::error(fmt, std::forward<Args>(args)...);
}

}  // namespace dtrain
