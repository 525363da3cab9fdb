#include "comm/environment.h"

#include <cstdlib>
#include <string>

#include "core/error.h"

namespace dtrain {
namespace {

// Reads an integer variable; returns `fallback` if unset, throws naming it if malformed.
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  DTRAIN_CHECK(end && *end == '\0' && x >= 0 && x < (1 << 30), "environment variable ", name, "='", v,
               "' is not a non-negative integer");
  return static_cast<int>(x);
}

bool env_set(const char* name) { return std::getenv(name) != nullptr; }

}  // namespace

LaunchEnv detect_launch_env() {
  LaunchEnv e;
  if (env_set("OMPI_COMM_WORLD_SIZE")) {
    e.launcher = "mpirun";
    e.under_mpi = true;
    e.rank = env_int("OMPI_COMM_WORLD_RANK", 0);
    e.world = env_int("OMPI_COMM_WORLD_SIZE", 1);
    e.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0);
    e.local_world = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1);
  } else if (env_set("SLURM_PROCID") && env_set("SLURM_NTASKS")) {
    e.launcher = "srun";
    e.rank = env_int("SLURM_PROCID", 0);
    e.world = env_int("SLURM_NTASKS", 1);
    e.local_rank = env_int("SLURM_LOCALID", 0);
    e.local_world = env_int("SLURM_NTASKS_PER_NODE", env_int("SLURM_TASKS_PER_NODE", 1));
    // srun --mpi=pmix (or pmi2) wires MPI; with --mpi=none only the SLURM_* variables exist.
    e.under_mpi = env_set("PMIX_RANK") || env_set("PMI_RANK") || env_set("PMI_FD");
  } else if (env_set("PMIX_RANK")) {
    e.launcher = "pmix";
    e.under_mpi = true;
    e.rank = env_int("PMIX_RANK", 0);
    e.world = env_int("PMIX_SIZE", 1);
  }
  DTRAIN_CHECK(e.rank < e.world, "launcher ", e.launcher, " reports rank ", e.rank, " of world size ", e.world);
  return e;
}

}  // namespace dtrain
