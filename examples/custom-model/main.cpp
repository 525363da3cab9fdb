// resmlp-train: `dtrain train` with one more model type. Same keys, same launchers:
//   resmlp-train --config resmlp.ini [--section.key=value ...]
//   mpirun -np 2 resmlp-train --config resmlp.ini          srun resmlp-train --config resmlp.ini
#include <cstdio>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/kernels.h"
#include "launch/commands.h"
#include "resmlp.h"

int main(int argc, char** argv) {
  dtrain::cpu::restart_with_better_blas_kernels(argv);
  try {
    resmlp::register_resmlp();
    return dtrain::cmd_train(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const dtrain::Error& e) {
    std::fprintf(stderr, "resmlp-train: error: %s\n", e.what());
    return 1;
  }
}
