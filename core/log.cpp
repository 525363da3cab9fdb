#include "core/log.h"

#include <spdlog/sinks/stdout_sinks.h>

namespace dtrain {

void init_logging(int rank, int world, bool all_ranks) {
  auto logger = spdlog::stderr_logger_mt("dtrain-" + std::to_string(rank));
  logger->set_pattern("[rank " + std::to_string(rank) + "/" + std::to_string(world) + "] %^%l%$: %v");
  logger->set_level(rank == 0 || all_ranks ? spdlog::level::info : spdlog::level::warn);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

}  // namespace dtrain
