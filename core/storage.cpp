#include "core/storage.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
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

class HostCache {
 public:
  static HostCache& get() {
    static HostCache* cache = new HostCache;  // never destroyed: tensors may die during static destruction
    return *cache;
  }
  bool enabled() const { return cap_ > 0; }

  // An idle block of class `cls` to 2 * `cls` and its class, or {nullptr, 0}.
  std::pair<void*, int64_t> take(int64_t cls) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = free_.lower_bound(cls); it != free_.end() && it->first <= 2 * cls; ++it) {
      if (it->second.empty()) continue;
      void* p = it->second.back();
      it->second.pop_back();
      cached_ -= it->first;
      return {p, it->first};
    }
    return {nullptr, 0};
  }
  void give(void* p, int64_t cls) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (cached_ + cls <= cap_) {
        free_[cls].push_back(p);
        cached_ += cls;
        return;
      }
    }
    std::free(p);
  }

 private:
  HostCache() {
#if defined(__SANITIZE_ADDRESS__)
    cap_ = 0;
#else
    cap_ = int64_t{1024} << 20;
    if (const char* env = std::getenv("DTRAIN_HOST_CACHE_MB")) {
      char* end = nullptr;
      const long long mb = std::strtoll(env, &end, 10);
      if (end != env && *end == '\0' && mb >= 0) cap_ = static_cast<int64_t>(mb) << 20;
    }
#endif
  }
  std::mutex mu_;
  std::map<int64_t, std::vector<void*>> free_;  // size class -> idle blocks
  int64_t cached_ = 0, cap_ = 0;
};
}  // namespace

std::shared_ptr<Storage> Storage::allocate(int64_t bytes, Device device) {
  DTRAIN_CHECK(bytes >= 0, "cannot allocate ", bytes, " bytes");
  const int64_t rounded = (std::max<int64_t>(bytes, 1) + 63) / 64 * 64;
  if (!device.is_cpu())
    return std::shared_ptr<Storage>(new Storage(gpu::malloc(rounded, device.index), bytes, device, 0));
  HostCache& cache = HostCache::get();
  if (rounded < kCacheMinBytes || !cache.enabled())
    return std::shared_ptr<Storage>(new Storage(host_alloc(rounded), bytes, device, 0));
  auto [p, cls] = cache.take(size_class(rounded));
  if (p == nullptr) p = host_alloc(cls = size_class(rounded));
  return std::shared_ptr<Storage>(new Storage(p, bytes, device, cls));
}

Storage::~Storage() {
  if (!device_.is_cpu())
    gpu::free(data_, device_.index);
  else if (cache_class_ > 0)
    HostCache::get().give(data_, cache_class_);
  else
    std::free(data_);
}

}  // namespace dtrain
