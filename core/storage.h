#pragma once
// Storage: one RAII allocation on one device. Tensors share it through a shared_ptr.
#include <cstdint>
#include <memory>

#include "core/types.h"

namespace dtrain {

class Storage {
 public:
  // Allocates `bytes` (uninitialised) on `device`; 64-byte aligned on the CPU. Large host blocks
  // come from and return to a process-wide cache (core/storage.cpp says when).
  static std::shared_ptr<Storage> allocate(int64_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  int64_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  Storage(void* data, int64_t bytes, Device device, int64_t cache_class)
      : data_(data), bytes_(bytes), device_(device), cache_class_(cache_class) {}
  void* data_;
  int64_t bytes_;
  Device device_;
  int64_t cache_class_;  // host cache size class the block returns to; 0: freed directly
};

}  // namespace dtrain
