// core/gpu.h on the CUDA runtime. One compute stream per device, created on first use.
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <atomic>
#include <mutex>
#include <vector>

#include "core/cuda/check.h"
#include "core/gpu.h"
#include "core/kernels.h"

namespace dtrain::gpu {
namespace {
std::atomic<int64_t> host_wait_count{0};  // see host_waits()
}  // namespace

bool built() { return true; }

namespace {

// Whether the NVIDIA driver's library is installed at all (the runtime needs it for everything).
bool driver_installed() {
  static const bool installed = [] {
    void* lib = ::dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (lib) ::dlclose(lib);
    return lib != nullptr;
  }();
  return installed;
}

}  // namespace

int device_count() {
  if (!driver_installed()) return 0;
  int n = 0;
  const cudaError_t rc = cudaGetDeviceCount(&n);
  if (rc == cudaErrorNoDevice) {
    (void)cudaGetLastError();
    return 0;
  }
  DTRAIN_CUDA_CHECK(rc);
  return n;
}

std::string no_device_reason() {
  if (!driver_installed()) return "no NVIDIA driver is installed (libcuda.so.1 not found)";
  return device_count() == 0 ? "the NVIDIA driver sees no CUDA device (check CUDA_VISIBLE_DEVICES)" : "";
}

std::string device_name(int device) {
  cudaDeviceProp prop{};
  DTRAIN_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

std::string runtime_version() {
  int v = 0;
  DTRAIN_CUDA_CHECK(cudaRuntimeGetVersion(&v));
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

void* malloc(int64_t bytes, int device) {
  DTRAIN_CUDA_CHECK(cudaSetDevice(device));
  void* p = nullptr;
  DTRAIN_CUDA_CHECK(cudaMalloc(&p, static_cast<size_t>(bytes)));
  return p;
}

void* try_malloc(int64_t bytes, int device) {
  DTRAIN_CUDA_CHECK(cudaSetDevice(device));
  void* p = nullptr;
  const cudaError_t rc = cudaMalloc(&p, static_cast<size_t>(bytes));
  if (rc == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // clear it: the caller releases cached blocks and retries
    return nullptr;
  }
  DTRAIN_CUDA_CHECK(rc);
  return p;
}

void free(void* ptr, int device) noexcept {
  if (!ptr) return;
  cudaSetDevice(device);
  cudaFree(ptr);
}

void* malloc_host_pinned(int64_t bytes) {
  void* p = nullptr;
  DTRAIN_CUDA_CHECK(cudaMallocHost(&p, static_cast<size_t>(bytes)));
  return p;
}

void free_host_pinned(void* ptr) noexcept {
  if (ptr) cudaFreeHost(ptr);
}

void pin_host(void* ptr, int64_t bytes) {
  if (bytes > 0) DTRAIN_CUDA_CHECK(cudaHostRegister(ptr, static_cast<size_t>(bytes), cudaHostRegisterDefault));
}

void unpin_host(void* ptr) noexcept {
  if (ptr) cudaHostUnregister(ptr);
}

void memcpy(void* dst, const void* src, int64_t bytes, CopyKind kind, int device) {
  DTRAIN_CUDA_CHECK(cudaSetDevice(device));
  const cudaMemcpyKind k = kind == CopyKind::host_to_device   ? cudaMemcpyHostToDevice
                           : kind == CopyKind::device_to_host ? cudaMemcpyDeviceToHost
                                                              : cudaMemcpyDeviceToDevice;
  cudaStream_t s = cuda::compute_stream(device);
  DTRAIN_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), k, s));
  ++host_wait_count;
  DTRAIN_CUDA_CHECK(cudaStreamSynchronize(s));
}

void synchronize(int device) {
  ++host_wait_count;
  DTRAIN_CUDA_CHECK(cudaStreamSynchronize(cuda::compute_stream(device)));
}

int64_t host_waits() { return host_wait_count.load(); }

namespace {

// The copy streams beside the compute stream, one per direction and device, and the event one
// stream waits on after the other (cudaStreamWaitEvent takes the event's state when it is called,
// so one event per stream serves every copy).
struct CopyStream {
  cudaStream_t stream = nullptr;
  cudaEvent_t handoff = nullptr;
};

CopyStream& copy_stream(int device, Stream which) {
  static std::mutex mu;                    // guards streams
  static std::vector<CopyStream> streams;  // [device * 2 + (which == to_host)]
  std::lock_guard<std::mutex> lock(mu);
  const size_t i = static_cast<size_t>(device) * 2 + (which == Stream::to_host ? 1 : 0);
  if (i >= streams.size()) streams.resize(i + 2);
  CopyStream& s = streams[i];
  if (!s.stream) {
    DTRAIN_CUDA_CHECK(cudaSetDevice(device));
    DTRAIN_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
    DTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&s.handoff, cudaEventDisableTiming));
  }
  return s;
}

cudaStream_t stream_of(int device, Stream which) {
  return which == Stream::compute ? cuda::compute_stream(device) : copy_stream(device, which).stream;
}

std::mutex handoff_mu;  // guards each copy's record-then-wait of a shared event

}  // namespace

void copy_to_device_async(void* dst, const void* src, int64_t bytes, int device) {
  if (bytes <= 0) return;
  DTRAIN_CUDA_CHECK(cudaSetDevice(device));
  const CopyStream& c = copy_stream(device, Stream::to_device);
  std::lock_guard<std::mutex> lock(handoff_mu);
  DTRAIN_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyHostToDevice, c.stream));
  DTRAIN_CUDA_CHECK(cudaEventRecord(c.handoff, c.stream));
  DTRAIN_CUDA_CHECK(cudaStreamWaitEvent(cuda::compute_stream(device), c.handoff, 0));
}

void copy_to_host_async(void* dst, const void* src, int64_t bytes, int device) {
  if (bytes <= 0) return;
  DTRAIN_CUDA_CHECK(cudaSetDevice(device));
  const CopyStream& c = copy_stream(device, Stream::to_host);
  std::lock_guard<std::mutex> lock(handoff_mu);
  DTRAIN_CUDA_CHECK(cudaEventRecord(c.handoff, cuda::compute_stream(device)));
  DTRAIN_CUDA_CHECK(cudaStreamWaitEvent(c.stream, c.handoff, 0));
  DTRAIN_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToHost, c.stream));
}

ComputeMark::ComputeMark(int device, Stream stream) : device_(device), stream_(stream) {
  DTRAIN_CUDA_CHECK(cudaSetDevice(device));
  cudaEvent_t e = nullptr;
  DTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  event_ = e;
}

ComputeMark::~ComputeMark() {
  if (event_) cudaEventDestroy(static_cast<cudaEvent_t>(event_));
}

void ComputeMark::record() {
  DTRAIN_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event_), stream_of(device_, stream_)));
  recorded_ = true;
}

void ComputeMark::wait() const {
  if (recorded_) DTRAIN_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event_)));
}

bool ComputeMark::passed() const {
  if (!recorded_) return true;
  const cudaError_t rc = cudaEventQuery(static_cast<cudaEvent_t>(event_));
  if (rc == cudaErrorNotReady) return false;
  DTRAIN_CUDA_CHECK(rc);
  return true;
}

void set_device(int device) { DTRAIN_CUDA_CHECK(cudaSetDevice(device)); }

void set_gemm_math(GemmMath math) { cuda::set_gemm_math(math); }

}  // namespace dtrain::gpu

namespace dtrain::cuda {

cudaStream_t compute_stream(int device) {
  static std::mutex mu;  // guards streams
  static std::vector<cudaStream_t> streams;
  std::lock_guard<std::mutex> lock(mu);
  if (device >= static_cast<int>(streams.size())) streams.resize(device + 1, nullptr);
  if (!streams[device]) {
    DTRAIN_CUDA_CHECK(cudaSetDevice(device));
    DTRAIN_CUDA_CHECK(cudaStreamCreateWithFlags(&streams[device], cudaStreamNonBlocking));
  }
  return streams[device];
}

int current_device() {
  int d = 0;
  DTRAIN_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

}  // namespace dtrain::cuda
