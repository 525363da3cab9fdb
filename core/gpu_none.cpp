// core/gpu.h for builds without CUDA: no devices, every other call explains why.
#include "core/error.h"
#include "core/gpu.h"

namespace dtrain::gpu {
namespace {
[[noreturn]] void unavailable(const char* what) {
  fail(what, ": this dtrain was built without CUDA (configure with -DDTRAIN_CUDA=ON and the CUDA Toolkit)");
}
}  // namespace

bool built() { return false; }
int device_count() { return 0; }
void set_gemm_math(GemmMath) {}
std::string no_device_reason() { return "this dtrain was built without CUDA"; }
std::string device_name(int) { unavailable("gpu::device_name"); }
std::string runtime_version() { return "none"; }
void* malloc(int64_t, int) { unavailable("allocating on a cuda device"); }
void* try_malloc(int64_t, int) { unavailable("allocating on a cuda device"); }
void free(void*, int) noexcept {}
void* malloc_host_pinned(int64_t) { unavailable("pinned host memory"); }
void free_host_pinned(void*) noexcept {}
void pin_host(void*, int64_t) { unavailable("pinned host memory"); }
void unpin_host(void*) noexcept {}
void memcpy(void*, const void*, int64_t, CopyKind, int) { unavailable("copying to or from a cuda device"); }
void synchronize(int) { unavailable("gpu::synchronize"); }
int64_t host_waits() { return 0; }
void copy_to_device_async(void*, const void*, int64_t, int) { unavailable("copying to a cuda device"); }
void copy_to_host_async(void*, const void*, int64_t, int) { unavailable("copying from a cuda device"); }
ComputeMark::ComputeMark(int device, Stream stream) : device_(device), stream_(stream) {
  unavailable("gpu::ComputeMark");
}
ComputeMark::~ComputeMark() = default;
void ComputeMark::record() { unavailable("gpu::ComputeMark"); }
void ComputeMark::wait() const {}
bool ComputeMark::passed() const { return true; }
void set_device(int) { unavailable("gpu::set_device"); }
const void* stream_id(int) { unavailable("gpu::stream_id"); }
StreamScope::StreamScope(int device) : device_(device) { unavailable("gpu::StreamScope"); }
StreamScope::~StreamScope() = default;

}  // namespace dtrain::gpu
