// HostStaging's bookkeeping on the CPU (where its copies are memcpys): one allocation for every
// slot, made once and reused, each slot on its own pages and as large as asked; a bucket's bytes
// out and back as f32 and as bf16 widened in its slot. The copies on a GPU's streams are covered by
// param_sync_gpu_test (2 ranks on one GPU through the mpi backend).
#include "comm/host_staging.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>

#include "core/ops.h"

namespace dtrain {
namespace {

Tensor iota(int64_t n, float from) {
  std::vector<float> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), from);
  return Tensor::from_vector(v, Shape{n});
}

TEST(HostStaging, OneSlotPerBucketOnItsOwnPages) {
  HostStaging staging(Device::cpu(), {40, 0, 5000, 4});
  ASSERT_EQ(staging.slots(), 4u);
  EXPECT_EQ(staging.slot_bytes(0), 40);
  EXPECT_EQ(staging.slot_bytes(1), 0);
  EXPECT_EQ(staging.slot_bytes(2), 5000);
  // Pages: 1 + 0 + 2 + 1, and one for the alignment of the first.
  EXPECT_EQ(staging.allocated_bytes(), 5 * 4096);
  for (size_t b = 0; b < staging.slots(); ++b)
    EXPECT_EQ(reinterpret_cast<uintptr_t>(staging.slot_data(b)) % 4096, 0u) << "slot " << b;
  EXPECT_LT(staging.slot_data(0), staging.slot_data(2));
  EXPECT_LT(staging.slot_data(2), staging.slot_data(3));
}

TEST(HostStaging, SlotsAreReusedEveryStep) {
  HostStaging staging(Device::cpu(), {400, 4000});
  const void* first[2] = {staging.slot_data(0), staging.slot_data(1)};
  for (int step = 0; step < 5; ++step) {
    for (size_t b = 0; b < 2; ++b) {
      const Tensor grads = iota(b == 0 ? 100 : 1000, static_cast<float>(step));
      Tensor slot = staging.stage_out(b, grads);
      EXPECT_EQ(slot.raw_data(), first[b]) << "step " << step << " bucket " << b;
      EXPECT_TRUE(slot.device().is_cpu());
      EXPECT_EQ(slot.numel(), grads.numel());
      ASSERT_TRUE(staging.copied(b));
      staging.wait_copied(b);
      EXPECT_EQ(slot.to_vector<float>(), grads.to_vector<float>());
      ops::scale(slot, 2.0f);  // the reduction, in the slot
      Tensor back = Tensor::zeros(grads.shape());
      staging.stage_in(b, back);
      const std::vector<float> want = grads.to_vector<float>(), got = back.to_vector<float>();
      for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], 2 * want[i]) << "element " << i;
    }
    EXPECT_EQ(staging.allocated_bytes(), 3 * 4096);
  }
}

TEST(HostStaging, Bf16IsWidenedInItsSlot) {
  constexpr int64_t n = 1001;  // odd: the widening runs over more than the bf16 half
  HostStaging staging(Device::cpu(), {n * 4});
  std::vector<float> values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) values[static_cast<size_t>(i)] = static_cast<float>(i % 251 - 125);
  const Tensor grads = Tensor::from_vector(values, Shape{n});  // integers up to 256 are exact in bf16
  const Tensor wire = ops::to_dtype(grads, DType::bf16);
  const Tensor slot = staging.stage_out(0, wire);
  EXPECT_EQ(slot.dtype(), DType::bf16);
  EXPECT_EQ(slot.nbytes(), n * 2);
  Tensor back = Tensor::zeros(Shape{n});
  staging.stage_in(0, back, DType::bf16);
  EXPECT_EQ(back.to_vector<float>(), grads.to_vector<float>());
}

TEST(HostStaging, RejectsABucketLargerThanItsSlot) {
  HostStaging staging(Device::cpu(), {16});
  try {
    staging.stage_out(0, iota(5, 0));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bucket 0 has 20 bytes, its slot 16"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dtrain
