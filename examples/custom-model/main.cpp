// dtrain-resmlp: dtrain's whole command line with one more model type, `resmlp`. Same commands,
// keys and launchers as `dtrain`:
//   dtrain-resmlp train --config resmlp.ini [--section.key=value ...]   (mpirun -np 2 ..., srun ...)
//   dtrain-resmlp export --checkpoint RUN/ckpt/step-N.h5 --repo models --name resmlp
//   dtrain-serve --repo models     (the exported model uses standard ONNX ops only)
#include "core/kernels.h"
#include "launch/commands.h"
#include "resmlp.h"

int main(int argc, char** argv) {
  dtrain::cpu::restart_with_better_blas_kernels(argv);
  resmlp::register_resmlp();
  return dtrain::run_dtrain_cli(argc, argv);
}
