#pragma once
// Storage: one RAII allocation on one device. Tensors share it through a shared_ptr.
#include <cstdint>
#include <memory>

#include "core/types.h"

namespace dtrain {

class Storage {
 public:
  // Allocates `bytes` (uninitialised) on `device`; 64-byte aligned on the CPU. Large host blocks
  // and every CUDA device block come from and return to a per-device cache (core/storage.cpp
  // says when). A device block belongs to the calling thread's compute stream (core/gpu.h) and is
  // reused only for that stream: work that reads it on another stream must be finished (a host
  // wait on that stream) before its last tensor dies.
  static std::shared_ptr<Storage> allocate(int64_t bytes, Device device);

  // What a device's allocator has done since the process started: calls to the system (malloc /
  // cudaMalloc and free / cudaFree), the cacheable requests among them (misses: no idle block of
  // their class), and blocks handed out again from the cache.
  struct AllocatorStats {
    int64_t backend_allocations = 0, backend_frees = 0, misses = 0, reused = 0, cached_bytes = 0;
  };
  static AllocatorStats allocator_stats(Device device);
  // Frees the device's idle cached blocks.
  static void release_cached(Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  int64_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  Storage(void* data, int64_t bytes, Device device, int64_t cache_class, const void* stream = nullptr)
      : data_(data), bytes_(bytes), device_(device), cache_class_(cache_class), stream_(stream) {}
  void* data_;
  int64_t bytes_;
  Device device_;
  int64_t cache_class_;  // cache size class the block returns to; 0: freed directly
  const void* stream_;   // the stream whose cache list it returns to (gpu::stream_id; null: host)
};

}  // namespace dtrain
