#pragma once
// Declares the kernel interface (core/kernel_list.inc) for each backend. Dispatch by device
// happens in core/ops.cpp; callers use core/ops.h.
#include <cstdint>

#include "core/config.h"
#include "core/rng.h"

namespace dtrain::cpu {
#include "core/kernel_list.inc"
void set_blas_threads(int threads);  // OpenBLAS threads (process-wide)
int blas_threads();
const char* blas_core_name();  // the kernel family OpenBLAS chose for this CPU, e.g. "SkylakeX"
}  // namespace dtrain::cpu

#if DTRAIN_HAVE_CUDA
namespace dtrain::cuda {
#include "core/kernel_list.inc"
// cuBLAS math mode for f32 GEMMs: TF32 tensor cores are off unless allowed (process-wide).
void set_allow_tf32(bool allow);
}  // namespace dtrain::cuda
#endif
