#include "core/storage.h"

#include <sys/mman.h>

#include <cstdlib>
#include <new>

#include "core/gpu.h"

namespace dtrain {

namespace {
// Large host buffers (activations, im2col columns) are allocated and freed every step; with 4 KiB
// pages each step pays one page fault per 4 KiB on first touch, which dominated a CNN step. Aligning
// them to 2 MiB and asking for transparent huge pages cuts the faults 512-fold.
constexpr int64_t kHugePageBytes = int64_t{2} << 20;
constexpr int64_t kHugePageMinBytes = int64_t{4} << 20;
}  // namespace

std::shared_ptr<Storage> Storage::allocate(int64_t bytes, Device device) {
  DTRAIN_CHECK(bytes >= 0, "cannot allocate ", bytes, " bytes");
  const int64_t rounded = (std::max<int64_t>(bytes, 1) + 63) / 64 * 64;
  void* p = nullptr;
  if (device.is_cpu()) {
    if (rounded >= kHugePageMinBytes) {
      const int64_t huge = (rounded + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
      p = std::aligned_alloc(kHugePageBytes, static_cast<size_t>(huge));
#ifdef MADV_HUGEPAGE
      if (p != nullptr) madvise(p, static_cast<size_t>(huge), MADV_HUGEPAGE);  // a hint: failure is harmless
#endif
    } else {
      p = std::aligned_alloc(64, static_cast<size_t>(rounded));
    }
    DTRAIN_CHECK(p != nullptr, "out of host memory allocating ", bytes, " bytes");
  } else {
    p = gpu::malloc(rounded, device.index);
  }
  return std::shared_ptr<Storage>(new Storage(p, bytes, device));
}

Storage::~Storage() {
  if (device_.is_cpu())
    std::free(data_);
  else
    gpu::free(data_, device_.index);
}

}  // namespace dtrain
