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

// Parses the leading decimal number of `s` from `pos`, advancing it; -1 if there is none.
long parse_count(const std::string& s, size_t& pos) {
  const size_t start = pos;
  long x = 0;
  while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9' && x < (1L << 30)) x = x * 10 + (s[pos++] - '0');
  return pos == start ? -1 : x;
}

}  // namespace

int slurm_tasks_on_node(const std::string& spec, int node_index, const std::string& variable) {
  const std::string bad = detail::concat("environment variable ", variable, "='", spec,
                                         "' is not a Slurm tasks-per-node list such as 4(x2),3");
  size_t pos = 0;
  long node = 0, found = -1;
  while (true) {  // the whole list is checked, not just the entries up to this node
    const long tasks = parse_count(spec, pos);
    DTRAIN_CHECK(tasks > 0, bad);
    long repeat = 1;
    if (spec.compare(pos, 2, "(x") == 0) {
      pos += 2;
      repeat = parse_count(spec, pos);
      DTRAIN_CHECK(repeat > 0 && pos < spec.size() && spec[pos] == ')', bad);
      ++pos;
    }
    if (found < 0 && node_index < node + repeat) found = tasks;
    node += repeat;
    if (pos == spec.size()) break;
    DTRAIN_CHECK(spec[pos] == ',', bad);
    ++pos;
  }
  if (found > 0) return static_cast<int>(found);
  fail("environment variable ", variable, "='", spec, "' lists ", node, " node(s), but this is node ", node_index,
       " (SLURM_NODEID)");
}

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
    // The step's own list first: inside a batch job, SLURM_TASKS_PER_NODE describes the allocation,
    // and SLURM_NTASKS_PER_NODE only echoes --ntasks-per-node, whatever srun -n chose.
    const char* list_var = env_set("SLURM_STEP_TASKS_PER_NODE") ? "SLURM_STEP_TASKS_PER_NODE" : "SLURM_TASKS_PER_NODE";
    if (const char* list = std::getenv(list_var))
      e.local_world = slurm_tasks_on_node(list, env_int("SLURM_NODEID", 0), list_var);
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
