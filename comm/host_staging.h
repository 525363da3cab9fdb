#pragma once
// HostStaging: carries gradient buckets that live on a GPU through host memory, for a communicator
// that reduces on the host (the mpi backend: the way to run two ranks on one GPU). Each bucket has
// one slot, all in one host allocation made once (page-locked on a GPU) and reused every step.
//
//   Tensor slot = staging.stage_out(b, grads);  // device -> slot, after the compute work so far
//   ... staging.copied(b) (never blocks) or staging.wait_copied(b), then the collective on `slot`
//   staging.stage_in(b, grads);                  // slot -> device; the compute stream waits for it
//
// The copies run on the device's copy streams (core/gpu.h): the host waits for neither, and the
// compute stream goes on with backward while a bucket travels. On a CPU device (tests) the copies
// are plain memcpys and a slot is ready at once.
#include <cstdint>
#include <memory>
#include <vector>

#include "core/gpu.h"
#include "core/tensor.h"

namespace dtrain {

class HostStaging {
 public:
  // One slot of slot_bytes[b] bytes per bucket, on the host, for tensors on `device`.
  HostStaging(Device device, const std::vector<int64_t>& slot_bytes);
  ~HostStaging();  // waits for the copies that still use the slots
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;

  // Queues the copy of `src` (contiguous, on the device) into bucket b's slot and returns the slot
  // as a host tensor of src's dtype and element count (valid once copied(b)).
  Tensor stage_out(size_t b, const Tensor& src);
  // Whether the last stage_out(b) has landed in the slot; never blocks.
  bool copied(size_t b) const;
  // Blocks until the last stage_out(b) has landed in the slot.
  void wait_copied(size_t b) const;
  // Queues the copy of bucket b's slot into `dst` (f32, contiguous, on the device); the compute work
  // queued from now on sees it, the host does not wait. held: the dtype the slot holds dst's
  // elements in (bf16: widened to f32 in the slot first, on the host; the slot must fit them).
  void stage_in(size_t b, const Tensor& dst, DType held = DType::f32);

  size_t slots() const { return slots_.size(); }
  int64_t slot_bytes(size_t b) const { return slots_[b].bytes; }
  const void* slot_data(size_t b) const { return static_cast<char*>(host_.raw_data()) + slots_[b].offset; }
  int64_t allocated_bytes() const { return host_.nbytes(); }

 private:
  struct Slot {
    int64_t offset = 0, bytes = 0;
    std::unique_ptr<gpu::ComputeMark> out, in;  // on a GPU: after its copy out, after its copy in
  };
  void* slot_ptr(size_t b) const { return static_cast<char*>(host_.raw_data()) + slots_[b].offset; }

  Device device_;
  Tensor host_;  // u8, every slot; page-locked from pinned_ on (a GPU device)
  void* pinned_ = nullptr;
  std::vector<Slot> slots_;
};

}  // namespace dtrain
