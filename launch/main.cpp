// dtrain: the command-line front end. `dtrain <command> [options]`, `dtrain --help`.
#include "core/kernels.h"
#include "launch/commands.h"

int main(int argc, char** argv) {
  dtrain::cpu::restart_with_better_blas_kernels(argv);
  return dtrain::run_dtrain_cli(argc, argv);
}
