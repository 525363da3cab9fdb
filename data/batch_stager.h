#pragma once
// BatchStager: moves a batch to the model's GPU without the host waiting for the GPU. Each batch's
// bytes go into the next slot of a ring of pinned host buffers and on to that slot's device buffers
// by an asynchronous copy on the device's copy stream, which the compute stream waits for (an
// event). A slot is reused `slots` batches later, once the compute work queued after its batch is
// done: by then normally long done, so the host runs up to `slots` - 1 batches ahead of the GPU.
#include <cstdint>
#include <memory>
#include <vector>

#include "core/gpu.h"
#include "core/tensor.h"
#include "data/batch_source.h"

namespace dtrain::data {

class BatchStager {
 public:
  struct Staged {
    Tensor x, y;  // on the device, as the batch's (dtype, shape); views of the slot's buffers
  };
  explicit BatchStager(Device device, int slots = 3);
  ~BatchStager();
  BatchStager(const BatchStager&) = delete;
  BatchStager& operator=(const BatchStager&) = delete;

  // The batch's x and y on the device, valid while the work queued on them runs (until `slots`
  // more stage() calls).
  Staged stage(const Batch& batch);

 private:
  struct Slot;
  Tensor put(Slot& slot, int which, const Tensor& host);

  Device device_;
  std::vector<std::unique_ptr<Slot>> slots_;
  size_t next_ = 0;
  bool any_ = false;
};

}  // namespace dtrain::data
