// The block cache on a CUDA device: a repeated step makes no cudaMalloc or cudaFree (cudaFree
// synchronises the whole device). Skips with its reason without a GPU.
#include <gtest/gtest.h>

#include <vector>

#include "core/storage.h"
#include "tests/core/cuda_test_util.h"

namespace dtrain {
namespace {

TEST(StorageCuda, RepeatedStepMakesNoCudaMallocOrFree) {
  DTRAIN_SKIP_WITHOUT_GPU();
  const std::vector<int64_t> sizes = {256, 4096, 300 << 10, 1 << 20, 5 << 20, 64 << 20};
  auto step = [&] {
    std::vector<Tensor> alive;
    for (int64_t bytes : sizes) alive.push_back(Tensor::zeros(Shape{bytes / 4}, DType::f32, test::kGpu));
  };
  step();
  const Storage::AllocatorStats before = Storage::allocator_stats(test::kGpu);
  for (int i = 0; i < 3; ++i) step();
  const Storage::AllocatorStats after = Storage::allocator_stats(test::kGpu);
  EXPECT_EQ(after.backend_allocations, before.backend_allocations);
  EXPECT_EQ(after.backend_frees, before.backend_frees);
  EXPECT_EQ(after.reused - before.reused, 3 * static_cast<int64_t>(sizes.size()));
  Storage::release_cached(test::kGpu);
  EXPECT_EQ(Storage::allocator_stats(test::kGpu).cached_bytes, 0);
}

}  // namespace
}  // namespace dtrain
