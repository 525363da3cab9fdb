#include "data/batch_stager.h"

#include <cstring>

#include "core/error.h"

namespace dtrain::data {
namespace {

// Page-locked host memory (RAII), the source of asynchronous host-to-device copies.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(int64_t bytes) : data_(gpu::malloc_host_pinned(bytes)), bytes_(bytes) {}
  ~PinnedBuffer() { gpu::free_host_pinned(data_); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  void* data() const { return data_; }
  int64_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  int64_t bytes_ = 0;
};

}  // namespace

// One batch in flight: pinned and device buffers for x (0) and y (1), grown to the largest batch
// seen, and the mark after the compute work queued on them.
struct BatchStager::Slot {
  explicit Slot(int device) : done(device) {}
  std::unique_ptr<PinnedBuffer> host[2];
  Tensor device[2];  // 1-D, of the batch's dtype
  gpu::ComputeMark done;
};

BatchStager::BatchStager(Device device, int slots) : device_(device) {
  DTRAIN_CHECK(device.is_cuda(), "BatchStager: stages batches on a cuda device, not ", device.str());
  DTRAIN_CHECK(slots >= 2, "BatchStager: needs at least 2 slots, got ", slots);
  for (int i = 0; i < slots; ++i) slots_.push_back(std::make_unique<Slot>(device.index));
}

BatchStager::~BatchStager() {
  // No copy may still read a pinned buffer freed below: mark the last batch's work too.
  if (any_) slots_[(next_ + slots_.size() - 1) % slots_.size()]->done.record();
  for (auto& s : slots_) s->done.wait();
}

// Copies `host` into the slot's buffers and queues the copy to the device; returns the device view.
Tensor BatchStager::put(Slot& slot, int which, const Tensor& host) {
  DTRAIN_CHECK(host.device().is_cpu() && host.is_contiguous(), "BatchStager: batches come from the host, contiguous");
  const int64_t bytes = host.nbytes();
  Tensor& dst = slot.device[which];
  if (!slot.host[which] || slot.host[which]->bytes() < bytes || dst.dtype() != host.dtype()) {
    slot.host[which] = std::make_unique<PinnedBuffer>(bytes);
    dst = Tensor::empty(Shape{host.numel()}, host.dtype(), device_);
    // The block may come from the device cache, freed by work the compute stream has not run yet;
    // the copy stream would not wait for it. Once per slot and size: wait for the compute stream.
    gpu::synchronize(device_.index);
  }
  std::memcpy(slot.host[which]->data(), host.raw_data(), static_cast<size_t>(bytes));
  gpu::copy_to_device_async(dst.raw_data(), slot.host[which]->data(), bytes, device_.index);
  return dst.flat_range(0, host.numel()).view(host.shape());
}

BatchStager::Staged BatchStager::stage(const Batch& batch) {
  // The previous batch's work is queued by now: mark its end, then take the oldest slot, waiting
  // for its batch's work (stage() was called slots - 1 times since).
  if (any_) slots_[(next_ + slots_.size() - 1) % slots_.size()]->done.record();
  Slot& slot = *slots_[next_];
  next_ = (next_ + 1) % slots_.size();
  any_ = true;
  slot.done.wait();
  return {put(slot, 0, batch.x), put(slot, 1, batch.y)};
}

}  // namespace dtrain::data
