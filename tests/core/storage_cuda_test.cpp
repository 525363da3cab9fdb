// The block cache on a CUDA device: a repeated step makes no cudaMalloc or cudaFree (cudaFree
// synchronises the whole device), and a block freed on one stream (gpu::StreamScope) is reused
// only on that stream. Skips with its reason without a GPU.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "core/gpu.h"
#include "core/ops.h"
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

// A block freed by a thread in a StreamScope may still be read by queued work on that scope's
// stream: another stream must not get it, the same stream may.
TEST(StorageCuda, AFreedBlockIsReusedOnlyOnItsOwnStream) {
  DTRAIN_SKIP_WITHOUT_GPU();
  Storage::release_cached(test::kGpu);
  const void* shared = gpu::stream_id(0);
  const void* scoped = nullptr;
  const void* block = nullptr;
  {
    gpu::StreamScope scope(0);
    scoped = gpu::stream_id(0);
    const Tensor t = Tensor::zeros(Shape{1 << 18}, DType::f32, test::kGpu);
    block = t.raw_data();
  }
  EXPECT_NE(scoped, shared) << "a StreamScope must give the thread its own stream";
  EXPECT_EQ(gpu::stream_id(0), shared) << "the scope's end must restore the shared stream";
  {
    const Tensor t = Tensor::empty(Shape{1 << 18}, DType::f32, test::kGpu);
    EXPECT_NE(t.raw_data(), block) << "the shared stream got a block its scope's stream freed";
  }
  {
    gpu::StreamScope scope(0);  // the pool hands the idle stream out again
    EXPECT_EQ(gpu::stream_id(0), scoped);
    const Tensor t = Tensor::empty(Shape{1 << 18}, DType::f32, test::kGpu);
    EXPECT_EQ(t.raw_data(), block) << "the same stream should reuse its own block";
  }
  Storage::release_cached(test::kGpu);
}

// Threads in their own scopes at once get different streams; the kernels each launches run on its
// own, and every thread's results are right.
TEST(StorageCuda, ConcurrentStreamScopesComputeIndependently) {
  DTRAIN_SKIP_WITHOUT_GPU();
  constexpr int kThreads = 4;
  constexpr int64_t kN = 1 << 20;
  std::vector<const void*> streams(kThreads);
  std::vector<float> sums(kThreads);
  std::vector<std::thread> threads;
  for (int k = 0; k < kThreads; ++k)
    threads.emplace_back([&, k] {
      gpu::StreamScope scope(0);
      streams[k] = gpu::stream_id(0);
      for (int round = 0; round < 20; ++round) {
        const Tensor x = Tensor::full(Shape{kN}, static_cast<float>(k + 1), test::kGpu);
        sums[k] = ops::sum(x);
      }
    });
  for (std::thread& t : threads) t.join();
  for (int k = 0; k < kThreads; ++k) {
    EXPECT_EQ(sums[k], static_cast<float>((k + 1) * kN)) << "thread " << k;
    for (int j = 0; j < k; ++j) EXPECT_NE(streams[j], streams[k]) << "threads " << j << " and " << k;
  }
  Storage::release_cached(test::kGpu);
}

}  // namespace
}  // namespace dtrain
