#include "core/storage.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "core/gpu.h"

namespace dtrain {

namespace {
// Large host buffers (activations, im2col columns) are allocated and freed every step; with 4 KiB
// pages each step pays one page fault per 4 KiB on first touch, which dominated a CNN step. Aligning
// them to 2 MiB and asking for transparent huge pages cuts the faults 512-fold.
constexpr int64_t kHugePageBytes = int64_t{2} << 20;
constexpr int64_t kHugePageMinBytes = int64_t{4} << 20;

// Host blocks of at least kCacheMinBytes are kept after their last tensor dies and handed to the
// next allocation of the same size class, so a training step or an inference batch that repeats
// the previous one's sizes faults no pages and makes no system calls (glibc returns large blocks
// to the kernel on free, and the kernel zeroes each page again on the next touch). Classes are
// 4 per power of two (at most 25 % slack); a request takes the smallest idle block of its class or
// up to twice its size, so a server warmed up at its largest batch serves smaller ones from the
// same blocks instead of growing a set per batch size. Idle cached
// bytes are capped by DTRAIN_HOST_CACHE_MB (default 1024; 0 turns the cache off); a block that
// would exceed the cap is freed. Sanitizer builds skip the cache so ASan still sees every
// use-after-free.
constexpr int64_t kCacheMinBytes = int64_t{256} << 10;

int64_t size_class(int64_t bytes) {
  int64_t top = 1;
  while (top * 2 <= bytes) top *= 2;
  const int64_t granule = std::max<int64_t>(64, top / 4);
  int64_t c = (bytes + granule - 1) / granule * granule;
  if (c >= kHugePageMinBytes) c = (c + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  return c;
}

void* host_alloc(int64_t bytes) {
  void* p = nullptr;
  if (bytes >= kHugePageMinBytes) {
    const int64_t huge = (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
    p = std::aligned_alloc(kHugePageBytes, static_cast<size_t>(huge));
#ifdef MADV_HUGEPAGE
    if (p != nullptr) madvise(p, static_cast<size_t>(huge), MADV_HUGEPAGE);  // a hint: failure is harmless
#endif
  } else {
    p = std::aligned_alloc(64, static_cast<size_t>(bytes));
  }
  DTRAIN_CHECK(p != nullptr, "out of host memory allocating ", bytes, " bytes");
  return p;
}

// One cache per device (the host is one of them). CUDA device blocks of every size are cached:
// cudaFree synchronises the whole device (which also cancels ParamSync's overlap) and each step
// allocates and frees the same 25-40 activations, so a repeated step makes no cudaMalloc or
// cudaFree at all. A device block belongs to the stream it was allocated for (the allocating
// thread's compute stream: its gpu::StreamScope's or the device's shared one) and is reused only by
// a later allocation for that same stream: work on one stream runs in order, so the block's old
// readers have finished before its new writer runs. Another stream that reads a tensor must be
// done with it (a host wait on that stream) before the tensor's last reference goes; NCCL's works
// keep their tensors alive until their event has fired. When cudaMalloc runs out of memory the
// device's idle blocks (of every stream) are released and the allocation retried once. Idle device
// bytes are capped by DTRAIN_DEVICE_CACHE_MB (default: no cap; 0 turns the device cache off).
class BlockCache {
 public:
  // The cache of `device`; never destroyed (tensors may die during static destruction).
  static BlockCache& of(Device device) {
    if (device.is_cpu()) {  // the common case, without the lock
      static BlockCache* host = &of_device(device);
      return *host;
    }
    return of_device(device);
  }
  static BlockCache& of_device(Device device) {
    static std::mutex mu;
    static std::map<int, BlockCache*> caches;  // -1: the host
    std::lock_guard<std::mutex> lock(mu);
    BlockCache*& c = caches[device.is_cpu() ? -1 : device.index];
    if (!c) c = new BlockCache(device);
    return *c;
  }
  bool enabled() const { return cap_ > 0; }
  int64_t min_bytes() const { return device_.is_cpu() ? kCacheMinBytes : 0; }

  // The stream a block allocated now belongs to (null on the host).
  const void* stream() const { return device_.is_cpu() ? nullptr : gpu::stream_id(device_.index); }

  // A block for `bytes` on `stream`: an idle one of its class (up to twice its size) that belongs to
  // the same stream, or a new one; the class.
  std::pair<void*, int64_t> get(int64_t bytes, const void* stream) {
    const int64_t cls = size_class(bytes);
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = free_.lower_bound({stream, cls});
           it != free_.end() && it->first.first == stream && it->first.second <= 2 * cls; ++it) {
        if (it->second.empty()) continue;
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= it->first.second;
        ++stats_.reused;
        return {p, it->first.second};
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.misses;
    }
    return {fresh(cls), cls};
  }
  void give(void* p, int64_t cls, const void* stream) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (cached_ + cls <= cap_) {
        free_[{stream, cls}].push_back(p);
        cached_ += cls;
        return;
      }
    }
    release_block(p);
  }
  // A block outside the cache (too small, or the cache off).
  void* fresh(int64_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.backend_allocations;
    }
    if (device_.is_cpu()) return host_alloc(bytes);
    if (void* p = gpu::try_malloc(bytes, device_.index)) return p;
    release_idle();  // out of device memory: give the idle blocks back and try once more
    return gpu::malloc(bytes, device_.index);
  }
  void release_block(void* p) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.backend_frees;
    }
    if (device_.is_cpu())
      std::free(p);
    else
      gpu::free(p, device_.index);
  }
  void release_idle() {
    std::map<std::pair<const void*, int64_t>, std::vector<void*>> idle;
    {
      std::lock_guard<std::mutex> lock(mu_);
      idle.swap(free_);
      cached_ = 0;
    }
    for (auto& [key, blocks] : idle)
      for (void* p : blocks) release_block(p);
  }
  Storage::AllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    Storage::AllocatorStats s = stats_;
    s.cached_bytes = cached_;
    return s;
  }

 private:
  explicit BlockCache(Device device) : device_(device) {
    const char* env = std::getenv(device.is_cpu() ? "DTRAIN_HOST_CACHE_MB" : "DTRAIN_DEVICE_CACHE_MB");
    cap_ = device.is_cpu() ? int64_t{1024} << 20 : std::numeric_limits<int64_t>::max();
#if defined(__SANITIZE_ADDRESS__)
    if (device.is_cpu()) env = "0";
#endif
    if (env) {
      char* end = nullptr;
      const long long mb = std::strtoll(env, &end, 10);
      if (end != env && *end == '\0' && mb >= 0) cap_ = static_cast<int64_t>(mb) << 20;
    }
  }
  Device device_;
  std::mutex mu_;
  std::map<std::pair<const void*, int64_t>, std::vector<void*>> free_;  // (stream, size class) -> idle blocks
  int64_t cached_ = 0, cap_ = 0;
  Storage::AllocatorStats stats_;
};
}  // namespace

std::shared_ptr<Storage> Storage::allocate(int64_t bytes, Device device) {
  DTRAIN_CHECK(bytes >= 0, "cannot allocate ", bytes, " bytes");
  const int64_t rounded = (std::max<int64_t>(bytes, 1) + 63) / 64 * 64;
  BlockCache& cache = BlockCache::of(device);
  if (rounded < cache.min_bytes() || !cache.enabled())
    return std::shared_ptr<Storage>(new Storage(cache.fresh(rounded), bytes, device, 0));
  const void* stream = cache.stream();
  auto [p, cls] = cache.get(rounded, stream);
  return std::shared_ptr<Storage>(new Storage(p, bytes, device, cls, stream));
}

Storage::AllocatorStats Storage::allocator_stats(Device device) { return BlockCache::of(device).stats(); }

void Storage::release_cached(Device device) { BlockCache::of(device).release_idle(); }

Storage::~Storage() {
  BlockCache& cache = BlockCache::of(device_);
  if (cache_class_ > 0)
    cache.give(data_, cache_class_, stream_);
  else
    cache.release_block(data_);
}

}  // namespace dtrain
