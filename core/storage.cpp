#include "core/storage.h"

#include <cstdlib>
#include <new>

#include "core/gpu.h"

namespace dtrain {

std::shared_ptr<Storage> Storage::allocate(int64_t bytes, Device device) {
  DTRAIN_CHECK(bytes >= 0, "cannot allocate ", bytes, " bytes");
  const int64_t rounded = (std::max<int64_t>(bytes, 1) + 63) / 64 * 64;
  void* p = nullptr;
  if (device.is_cpu()) {
    p = std::aligned_alloc(64, static_cast<size_t>(rounded));
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
