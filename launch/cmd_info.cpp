// `dtrain info`: what this build is and what it sees.
#include <H5public.h>
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "comm/environment.h"
#include "core/config.h"
#include "core/cpu/simd.h"
#include "core/gpu.h"
#include "core/kernels.h"
#include "launch/commands.h"

namespace dtrain {

int cmd_info(const std::vector<std::string>& args) {
  if (!args.empty()) {
    std::printf(
        "usage: dtrain info\n\nPrints the version, build options (CUDA, NCCL, MPI, HDF5), visible GPUs,\n"
        "the detected launcher environment and the BLAS thread count.\n");
    return args[0] == "--help" || args[0] == "-h" ? 0 : 2;
  }
  char mpi_version[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int len = 0;
  MPI_Get_library_version(mpi_version, &len);
  for (int i = 0; i < len; ++i)
    if (mpi_version[i] == '\n' || mpi_version[i] == ',') mpi_version[i] = i + 1 < len ? ' ' : '\0';
  unsigned h5maj = 0, h5min = 0, h5rel = 0;
  H5get_libversion(&h5maj, &h5min, &h5rel);

  std::printf("dtrain %s\n", DTRAIN_VERSION);
  std::printf("build:\n");
  std::printf("  cuda:   %s\n", DTRAIN_HAVE_CUDA ? DTRAIN_CUDA_VERSION : "no (built without CUDA)");
  std::printf("  nccl:   %s\n", DTRAIN_HAVE_NCCL ? "yes" : "no");
  std::printf("  mpi:    %s\n", mpi_version);
  std::printf("  hdf5:   %u.%u.%u\n", h5maj, h5min, h5rel);
  // OPENBLAS_CORETYPE overrides OpenBLAS's own CPU detection; dtrain sets it (and restarts) when that
  // detection fell back to kernels older than the CPU (cpu::restart_with_better_blas_kernels).
  const char* forced = std::getenv("OPENBLAS_CORETYPE");
  const char* detected = std::getenv("DTRAIN_BLAS_DETECTED");
  std::string why;
  if (forced && detected)
    why = std::string(" (OpenBLAS picked ") + detected + " for this CPU; dtrain set OPENBLAS_CORETYPE=" + forced + ")";
  else if (forced)
    why = std::string(" (forced by OPENBLAS_CORETYPE=") + forced + ")";
  std::printf("  blas:   OpenBLAS, %s kernels%s, %d threads\n", cpu::blas_core_name(), why.c_str(),
              cpu::blas_threads());
  const cpu::SimdLevel simd = cpu::cpu_simd_level();
  std::printf("  simd:   %s (dtrain's own CPU kernels; DTRAIN_CPU_SIMD=avx2|0 caps it)\n",
              simd == cpu::SimdLevel::avx512 ? "AVX-512"
              : simd == cpu::SimdLevel::avx2 ? "AVX2"
                                             : "portable loops");
  const int gpus = gpu::device_count();
  std::printf("gpus:     %d visible%s\n", gpus, gpus ? "" : (" (" + gpu::no_device_reason() + ")").c_str());
  for (int i = 0; i < gpus; ++i) std::printf("  cuda:%d  %s\n", i, gpu::device_name(i).c_str());
  const LaunchEnv env = detect_launch_env();
  std::printf("launcher: %s (rank %d of %d, local rank %d of %d)\n", env.launcher.c_str(), env.rank, env.world,
              env.local_rank, env.local_world);
  return 0;
}

}  // namespace dtrain
