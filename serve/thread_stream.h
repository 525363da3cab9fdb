#pragma once
// The device context of a serve thread that runs models for its whole life (a Batcher worker, a
// generation scheduler): on a CUDA device the device is made current and the thread gets a
// compute stream of its own (gpu::StreamScope), so instances and model versions do not queue
// behind each other on one stream; on the CPU nothing. Held on the thread's stack.
#include <optional>

#include "core/gpu.h"
#include "core/types.h"

namespace dtrain::serve {

class ThreadStream {
 public:
  explicit ThreadStream(Device device) {
    if (device.is_cuda()) scope_.emplace(device.index);
  }

 private:
  std::optional<gpu::StreamScope> scope_;
};

}  // namespace dtrain::serve
