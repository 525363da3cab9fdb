// core/gpu.h on the CUDA runtime. One shared compute stream per device, created on first use, and
// the per-thread streams of StreamScopes, which compute_stream() returns inside a scope.
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

// The calling thread's innermost StreamScope (stream null: none).
struct ScopedStream {
  cudaStream_t stream = nullptr;
  int device = -1;
};
thread_local ScopedStream scoped;

// Streams of ended scopes, per device, for the next scope. They are never destroyed, so a stream
// id the device block cache holds stays one stream's for the life of the process.
class StreamPool {
 public:
  cudaStream_t take(int device) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (device < static_cast<int>(idle_.size()) && !idle_[device].empty()) {
        cudaStream_t s = idle_[device].back();
        idle_[device].pop_back();
        return s;
      }
    }
    cudaStream_t s = nullptr;
    DTRAIN_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return s;
  }
  void give(int device, cudaStream_t s) {
    std::lock_guard<std::mutex> lock(mu_);
    if (device >= static_cast<int>(idle_.size())) idle_.resize(device + 1);
    idle_[device].push_back(s);
  }

 private:
  std::mutex mu_;  // guards idle_
  std::vector<std::vector<cudaStream_t>> idle_;
};

StreamPool& stream_pool() {
  static StreamPool* pool = new StreamPool;  // never destroyed: scopes may end during static destruction
  return *pool;
}
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

const void* stream_id(int device) { return cuda::compute_stream(device); }

StreamScope::StreamScope(int device) : device_(device) {
  DTRAIN_CUDA_CHECK(cudaSetDevice(device));
  cudaStream_t s = stream_pool().take(device);
  stream_ = s;
  outer_stream_ = scoped.stream;
  outer_device_ = scoped.device;
  scoped = {s, device};
}

StreamScope::~StreamScope() {
  cudaStream_t s = static_cast<cudaStream_t>(stream_);
  ++host_wait_count;
  cudaStreamSynchronize(s);  // the next scope may be on another thread: hand the stream over idle
  scoped = {static_cast<cudaStream_t>(outer_stream_), outer_device_};
  stream_pool().give(device_, s);
}

void set_gemm_math(GemmMath math) { cuda::set_gemm_math(math); }

}  // namespace dtrain::gpu

namespace dtrain::cuda {

cudaStream_t compute_stream(int device) {
  if (gpu::scoped.stream && gpu::scoped.device == device) return gpu::scoped.stream;
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
