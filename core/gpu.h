#pragma once
// The CUDA runtime as the rest of the project sees it. Without a CUDA build,
// available() is false, device_count() is 0 and everything else throws.
#include <cstdint>
#include <string>

namespace dtrain::gpu {

bool built();        // compiled with CUDA
int device_count();  // 0 when not built or no GPU is visible
std::string device_name(int device);
std::string runtime_version();  // "13.0" or "none"
void* malloc(int64_t bytes, int device);
void free(void* ptr, int device) noexcept;
void* malloc_host_pinned(int64_t bytes);
void free_host_pinned(void* ptr) noexcept;
enum class CopyKind { host_to_device, device_to_host, device_to_device };
// Copies on the compute stream of `device` and waits for it.
void memcpy(void* dst, const void* src, int64_t bytes, CopyKind kind, int device);
void synchronize(int device);  // waits for the compute stream of `device`
void set_device(int device);

}  // namespace dtrain::gpu
