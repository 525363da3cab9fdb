#include "comm/host_staging.h"

#include <cstring>

#include "core/error.h"

namespace dtrain {
namespace {

constexpr int64_t kPageBytes = 4096;  // slots start on their own pages: no page is pinned twice

int64_t round_up(int64_t n, int64_t to) { return (n + to - 1) / to * to; }

}  // namespace

HostStaging::HostStaging(Device device, const std::vector<int64_t>& slot_bytes) : device_(device) {
  int64_t total = 0;
  for (int64_t bytes : slot_bytes) {
    DTRAIN_CHECK(bytes >= 0, "HostStaging: negative slot size ", bytes);
    slots_.push_back(Slot{total, bytes, nullptr, nullptr});
    total += round_up(bytes, kPageBytes);
  }
  // One page more than the slots, so that the first can start on a page boundary.
  host_ = Tensor::empty(Shape{total + kPageBytes}, DType::u8);
  const auto base = reinterpret_cast<uintptr_t>(host_.raw_data());
  const auto skip = static_cast<int64_t>(round_up(static_cast<int64_t>(base), kPageBytes) - static_cast<int64_t>(base));
  for (Slot& s : slots_) s.offset += skip;
  if (!device_.is_cuda()) return;
  if (total > 0) {  // nothing to pin (and so nothing to unpin) for a model without buckets
    pinned_ = static_cast<char*>(host_.raw_data()) + skip;
    gpu::pin_host(pinned_, total);
  }
  for (Slot& s : slots_) {
    s.out = std::make_unique<gpu::ComputeMark>(device_.index, gpu::Stream::to_host);
    s.in = std::make_unique<gpu::ComputeMark>(device_.index, gpu::Stream::to_device);
  }
}

HostStaging::~HostStaging() {
  for (const Slot& s : slots_)
    if (s.out) {
      s.out->wait();
      s.in->wait();
    }
  gpu::unpin_host(pinned_);
}

Tensor HostStaging::stage_out(size_t b, const Tensor& src) {
  DTRAIN_CHECK(b < slots_.size(), "HostStaging: bucket ", b, " of ", slots_.size());
  DTRAIN_CHECK(src.device() == device_ && src.is_contiguous(), "HostStaging: stages contiguous tensors on ",
               device_.str(), ", got one on ", src.device().str());
  Slot& s = slots_[b];
  DTRAIN_CHECK(src.nbytes() <= s.bytes, "HostStaging: bucket ", b, " has ", src.nbytes(), " bytes, its slot ", s.bytes);
  if (s.out) {
    gpu::copy_to_host_async(slot_ptr(b), src.raw_data(), src.nbytes(), device_.index);
    s.out->record();
  } else if (src.nbytes() > 0) {
    std::memcpy(slot_ptr(b), src.raw_data(), static_cast<size_t>(src.nbytes()));
  }
  return host_.bytes_as(src.dtype(), s.offset, src.numel());
}

bool HostStaging::copied(size_t b) const { return !slots_[b].out || slots_[b].out->passed(); }

void HostStaging::wait_copied(size_t b) const {
  if (slots_[b].out) slots_[b].out->wait();
}

void HostStaging::stage_in(size_t b, const Tensor& dst, DType held) {
  DTRAIN_CHECK(b < slots_.size(), "HostStaging: bucket ", b, " of ", slots_.size());
  DTRAIN_CHECK(dst.device() == device_ && dst.is_contiguous() && dst.dtype() == DType::f32,
               "HostStaging: stages contiguous f32 tensors on ", device_.str(), ", got ", dtype_name(dst.dtype()),
               " on ", dst.device().str());
  DTRAIN_CHECK(held == DType::f32 || held == DType::bf16, "HostStaging: a slot holds f32 or bf16, not ",
               dtype_name(held));
  Slot& s = slots_[b];
  DTRAIN_CHECK(dst.nbytes() <= s.bytes, "HostStaging: bucket ", b, " has ", dst.nbytes(), " bytes, its slot ", s.bytes);
  if (held == DType::bf16) {
    // In place from the last element down: f32 element i covers bf16 elements 2i and 2i + 1, both
    // read by then (i < 2i for i > 0; element 0 is read before it is written). Byte copies: the
    // two views of the slot alias.
    char* p = static_cast<char*>(slot_ptr(b));
    for (int64_t i = dst.numel() - 1; i >= 0; --i) {
      bf16 h;
      std::memcpy(&h, p + 2 * i, sizeof h);
      const float f = from_bf16(h);
      std::memcpy(p + 4 * i, &f, sizeof f);
    }
  }
  if (s.in) {
    gpu::copy_to_device_async(dst.raw_data(), slot_ptr(b), dst.nbytes(), device_.index);
    s.in->record();
  } else if (dst.nbytes() > 0) {
    std::memcpy(dst.raw_data(), slot_ptr(b), static_cast<size_t>(dst.nbytes()));
  }
}

}  // namespace dtrain
