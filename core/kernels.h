#pragma once
// Declares the kernel interface (core/kernel_list.inc) for each backend. Dispatch by device
// happens in core/ops.cpp; callers use core/ops.h.
#include <cstdint>

#include "core/config.h"
#include "core/rng.h"

namespace dtrain::cpu {
#include "core/kernel_list.inc"
// Direct stride-1 convolution (AVX-512; the ONNX engine's CPU Conv where it applies): available
// when the CPU has AVX-512 and oc % 16 == 0. conv2d_direct_pack reorders w [oc, c, k, k] into
// wpack [oc / V, c, k, k, V] (V = 32 when oc allows, else 16; same size as w); conv2d_direct
// writes one sample's y [oc, oh, ow] (no bias) from
// x [c, h, w] with `pad` zeros around, `padded` being scratch of c * (h + 2 pad) * (w + 2 pad).
bool conv2d_direct_available(int64_t oc, int64_t stride);
void conv2d_direct_pack(const float* w, float* wpack, int64_t oc, int64_t c, int64_t k);
void conv2d_direct(const float* x, const float* wpack, float* y, float* padded, int64_t c, int64_t h, int64_t wd,
                   int64_t oc, int64_t k, int64_t pad);
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
namespace dtrain::cuda {
#include "core/kernel_list.inc"
// cuBLAS math mode for f32 GEMMs: TF32 tensor cores are off unless allowed (process-wide).
void set_allow_tf32(bool allow);
}  // namespace dtrain::cuda
#endif
