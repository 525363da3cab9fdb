#pragma once
// The CUDA runtime as the rest of the project sees it. Without a CUDA build,
// available() is false, device_count() is 0 and everything else throws.
#include <cstdint>
#include <string>

namespace dtrain::gpu {

bool built();  // compiled with CUDA
// The visible CUDA devices: 0 when the build has no CUDA, no NVIDIA driver is installed
// (libcuda.so.1 is absent: a machine without a GPU) or the driver sees no device. A driver that is
// installed but cannot be used (too old for this runtime, broken) throws with the CUDA error: a
// broken setup must not read as "no GPU".
int device_count();
// Why device_count() is 0 ("" when it is not), for skip messages and errors.
std::string no_device_reason();
std::string device_name(int device);
std::string runtime_version();  // "13.0" or "none"
void* malloc(int64_t bytes, int device);
// nullptr when the device is out of memory (other CUDA errors throw).
void* try_malloc(int64_t bytes, int device);
void free(void* ptr, int device) noexcept;
void* malloc_host_pinned(int64_t bytes);
void free_host_pinned(void* ptr) noexcept;
enum class CopyKind { host_to_device, device_to_host, device_to_device };
// Copies on the compute stream of `device` and waits for it.
void memcpy(void* dst, const void* src, int64_t bytes, CopyKind kind, int device);
void synchronize(int device);  // waits for the compute stream of `device`
void set_device(int device);
// TF32 tensor cores for f32 GEMMs (process-wide; off by default): about 8x the f32 GEMM rate on
// Ampere and later, with products rounded to a 10-bit mantissa.
void set_allow_tf32(bool allow);

}  // namespace dtrain::gpu
