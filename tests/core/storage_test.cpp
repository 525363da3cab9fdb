// The per-device block cache behind Storage::allocate (core/storage.cpp): a repeated step makes no
// allocation calls. The same cache serves CUDA devices (storage_cuda_test, label gpu).
#include "core/storage.h"

#include <gtest/gtest.h>

#include <vector>

#include "core/loss.h"
#include "core/model.h"

namespace dtrain {
namespace {

// One "step": a few activation-sized blocks alive at once, then all freed.
void step(Device device, const std::vector<int64_t>& sizes) {
  std::vector<std::shared_ptr<Storage>> alive;
  for (int64_t bytes : sizes) alive.push_back(Storage::allocate(bytes, device));
}

TEST(Storage, RepeatedHostStepMakesNoCacheableAllocation) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer build: the host cache is off so ASan sees every use after free";
#endif
  const std::vector<int64_t> sizes = {300 << 10, 1 << 20, 5 << 20, 5 << 20, 12 << 20};
  step(Device::cpu(), sizes);
  const Storage::AllocatorStats before = Storage::allocator_stats(Device::cpu());
  for (int i = 0; i < 3; ++i) step(Device::cpu(), sizes);
  const Storage::AllocatorStats after = Storage::allocator_stats(Device::cpu());
  EXPECT_EQ(after.misses, before.misses);
  EXPECT_EQ(after.backend_allocations, before.backend_allocations);
  EXPECT_EQ(after.backend_frees, before.backend_frees);
  EXPECT_EQ(after.reused - before.reused, 3 * static_cast<int64_t>(sizes.size()));
  // A smaller request takes a cached block of up to twice its class.
  step(Device::cpu(), {(1 << 20) - 4096});
  EXPECT_EQ(Storage::allocator_stats(Device::cpu()).misses, after.misses);
}

TEST(Storage, ReleaseCachedFreesTheIdleBlocks) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer build: the host cache is off";
#endif
  step(Device::cpu(), {3 << 20});
  EXPECT_GT(Storage::allocator_stats(Device::cpu()).cached_bytes, 0);
  const int64_t frees = Storage::allocator_stats(Device::cpu()).backend_frees;
  Storage::release_cached(Device::cpu());
  EXPECT_EQ(Storage::allocator_stats(Device::cpu()).cached_bytes, 0);
  EXPECT_GT(Storage::allocator_stats(Device::cpu()).backend_frees, frees);
}

TEST(Storage, RepeatedCnnTrainingStepMakesNoCacheableAllocation) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer build: the host cache is off";
#endif
  ModelConfig c;
  c.type = "cnn";
  c.input_shape = Shape{1, 28, 28};
  c.num_classes = 10;
  auto model = create_model(c);
  model->build(Device::cpu(), 1);
  Generator g(RngKey{3, 0, 0});
  const Tensor x = Tensor::randn(Shape{16, 1, 28, 28}, 0, 1, g);
  const Tensor labels = Tensor::from_vector<int64_t>(std::vector<int64_t>(16, 3), Shape{16});
  auto one = [&] {
    PassContext ctx{.training = true, .dropout_rng = nullptr, .arena = &model->arena()};
    const Tensor logits = model->forward(x, ctx);
    model->backward(softmax_cross_entropy(logits, labels, 1.0f / 16).grad, ctx);
    model->arena().zero_grad();
  };
  one();
  one();
  const int64_t misses = Storage::allocator_stats(Device::cpu()).misses;
  one();
  EXPECT_EQ(Storage::allocator_stats(Device::cpu()).misses, misses)
      << "a repeated step allocated a cacheable block from the system";
}

}  // namespace
}  // namespace dtrain
