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
// Page-locks `bytes` of existing host memory (e.g. a host tensor's storage) for asynchronous copies,
// as malloc_host_pinned's memory is; unpin_host undoes it before the memory is freed.
void pin_host(void* ptr, int64_t bytes);
void unpin_host(void* ptr) noexcept;
enum class CopyKind { host_to_device, device_to_host, device_to_device };
// "The compute stream" of a device, here and below, is the calling thread's: its StreamScope's
// stream for that device if it is in one, else the device's shared compute stream.
// Copies on the compute stream of `device` and waits for it.
void memcpy(void* dst, const void* src, int64_t bytes, CopyKind kind, int device);
void synchronize(int device);  // waits for the compute stream of `device`
// How often this process's host has waited for a compute stream so far (memcpy and synchronize:
// each drains the work queued before it), for tests that count a training step's waits.
int64_t host_waits();
// A device's streams: every kernel runs on its compute stream; copies that overlap the compute run
// on one copy stream per direction.
enum class Stream { compute, to_device, to_host };
// Queues a copy of `bytes` from pinned host memory (malloc_host_pinned, pin_host) to `device` on the
// device's to_device copy stream and makes its compute stream wait for it (an event); the host does
// not wait. `src` and `dst` must stay as they are until a ComputeMark recorded after this call has
// passed.
void copy_to_device_async(void* dst, const void* src, int64_t bytes, int device);
// Queues a copy of `bytes` from `device` memory to pinned host memory on the device's to_host copy
// stream, after the work queued on its compute stream so far (an event); the host does not wait.
// `dst` holds the bytes once a ComputeMark(device, Stream::to_host) recorded after this call has
// passed.
void copy_to_host_async(void* dst, const void* src, int64_t bytes, int device);

// A point in one of a device's streams (RAII over a CUDA event; the compute stream unless told):
// record() marks the work queued there so far; wait() blocks the host until that work is done,
// passed() asks without blocking (both: at once when unrecorded).
class ComputeMark {
 public:
  explicit ComputeMark(int device, Stream stream = Stream::compute);
  ~ComputeMark();
  ComputeMark(const ComputeMark&) = delete;
  ComputeMark& operator=(const ComputeMark&) = delete;
  void record();
  void wait() const;
  bool passed() const;

 private:
  void* event_ = nullptr;  // cudaEvent_t
  int device_;
  Stream stream_;
  bool recorded_ = false;
};
void set_device(int device);
// The compute stream of `device` for the calling thread, as an opaque id (a cudaStream_t): the
// device block cache reuses a freed block only for allocations on the stream that allocated it.
const void* stream_id(int device);

// Makes `device` the calling thread's current device and gives the thread a compute stream of its
// own for it until the scope ends, so threads that run independent work at once (dtrain-serve's
// workers) do not queue behind each other on the device's shared stream. The stream comes from a
// per-device pool and goes back to it at the end, after the host has waited for its work; scopes
// nest (the innermost wins). Tensors allocated inside the scope belong to its stream: see
// core/storage.h for the rule on using them from another stream.
class StreamScope {
 public:
  explicit StreamScope(int device);
  ~StreamScope();
  StreamScope(const StreamScope&) = delete;
  StreamScope& operator=(const StreamScope&) = delete;

 private:
  void* stream_ = nullptr;  // cudaStream_t
  int device_;
  void* outer_stream_ = nullptr;  // the scope this one nests in (null: none), restored at the end
  int outer_device_ = -1;
};
// How f32 GEMMs use the tensor cores (process-wide; f32 by default). Inputs, outputs and the
// accumulation stay f32 in every mode; tf32 rounds the inputs to a 10-bit mantissa (about 8x the
// f32 rate on Ampere and later), bf16 to bf16's 7 bits (about 16x).
enum class GemmMath { f32, tf32, bf16 };
void set_gemm_math(GemmMath math);

}  // namespace dtrain::gpu
