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

}  // namespace dtrain
