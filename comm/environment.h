#pragma once
// Where this process was launched from: mpirun (Open MPI), srun (Slurm, with or without PMIx),
// or a plain single process. Read from the environment only, before MPI is initialised.
#include <string>

namespace dtrain {

struct LaunchEnv {
  std::string launcher = "single";  // "mpirun", "srun", "single"
  int rank = 0;
  int world = 1;
  int local_rank = 0;
  int local_world = 1;
  bool under_mpi = false;  // an MPI launcher (mpirun, or srun with PMI/PMIx) started us
};

LaunchEnv detect_launch_env();

// Tasks on node `node_index` from a Slurm tasks-per-node list such as "4(x2),3" (node 0: 4, node 1: 4,
// node 2: 3). `variable` names the list's source in the error a malformed or too short list gets.
int slurm_tasks_on_node(const std::string& spec, int node_index, const std::string& variable);

}  // namespace dtrain
