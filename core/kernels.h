#pragma once
// Declares the kernel interface (core/kernel_list.inc) for each backend. core/dispatch.h picks
// one by device (core's own files); users call the validated wrappers in core/ops.h.
#include <cstdint>

#include "core/config.h"
#include "core/rng.h"

namespace dtrain::cpu {
#include "core/kernel_list.inc"
void set_blas_threads(int threads);  // OpenBLAS threads (process-wide)
int blas_threads();
const char* blas_core_name();  // the kernel family OpenBLAS chose for this CPU, e.g. "SkylakeX"
// OpenBLAS picks its kernels by CPU model; a model newer than it knows gets its oldest x86-64
// kernels (Debian 12's 0.3.21 runs SSE3 "Prescott" code on Emerald Rapids, 2-4x slower).
// blas_cpu_core: the kernel family this CPU's instruction set allows ("SkylakeX" for AVX-512,
// "Haswell" for AVX2+FMA, "Sandybridge" for AVX, else nullptr); blas_core_tier: 0 (SSE) .. 3
// (AVX-512) for a family name.
const char* blas_cpu_core();
int blas_core_tier(const char* name);
// First thing in main(), before any thread or output: when OPENBLAS_CORETYPE is unset and
// blas_cpu_core()'s tier is above the chosen family's, sets OPENBLAS_CORETYPE to it (and
// DTRAIN_BLAS_DETECTED to the family OpenBLAS picked) and executes the program again, since
// OpenBLAS reads the variable only while it loads. Returns when there is nothing to do or the
// exec failed (with a warning).
void restart_with_better_blas_kernels(char** argv);
}  // namespace dtrain::cpu

#if DTRAIN_HAVE_CUDA
#include "core/gpu.h"
namespace dtrain::cuda {
#include "core/kernel_list.inc"
// The compute type of every f32 GEMM through cuBLAS (gpu::set_gemm_math).
void set_gemm_math(gpu::GemmMath math);
}  // namespace dtrain::cuda
#endif
