// ParamSync with the parameters on a GPU and the mpi backend: what two ranks on one GPU run (NCCL
// refuses them). Each bucket goes through its page-locked host slot (comm/host_staging.h) and back
// into the arena without the host waiting for the GPU in between. Runs as param_sync_gpu_test_np2
// (labels gpu, mpi); skips with the reason without a GPU (DTRAIN_REQUIRE_GPU=1: fails instead).
#include <gtest/gtest.h>

#include "comm/param_sync.h"
#include "core/gpu.h"
#include "tests/comm/mpi_comm.h"
#include "tests/core/cuda_test_util.h"

namespace dtrain {
namespace {

using testing::comm;

class ParamSyncOnGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    DTRAIN_SKIP_WITHOUT_GPU();
    if (comm().size() < 2) GTEST_SKIP() << "needs 2 ranks (ctest runs param_sync_gpu_test_np2)";
  }
};

// Three parameters (three buckets with these sizes), every rank on GPU 0.
struct GpuArena {
  ParameterArena arena;
  Parameter *w, *b, *v;
  GpuArena() {
    auto fill = [](float x) { return [x](Tensor& t, Generator&) { t.fill(x); }; };
    w = &arena.add("0.weight", Shape{300, 7}, fill(1.0f));
    b = &arena.add("0.bias", Shape{7}, fill(2.0f));
    v = &arena.add("1.weight", Shape{1001}, fill(3.0f));
    Generator gen(RngKey{1, 0, 0});
    arena.allocate(test::kGpu, gen);
  }
  // Rank r's gradient of step s for parameter p: (r + 1) * (s + 1) * (p + 1), reported in arena
  // order (the last registered first), as backward does.
  void backward(int step, int rank) {
    for (Parameter* p : {v, b, w}) {
      p->grad.copy_from(
          Tensor::full(p->shape, static_cast<float>((rank + 1) * (step + 1) * (p->index + 1)), test::kGpu));
      arena.grad_ready(*p);
    }
  }
};

TEST_F(ParamSyncOnGpu, TwoRanksOnOneGpuAverageThroughHostSlots) {
  GpuArena m;
  ParamSync sync(comm(), m.arena, {.bucket_bytes = 4096, .first_bucket_bytes = 64, .check_every_steps = 2});
  ASSERT_EQ(sync.buckets().size(), 3u);
  sync.verify_signature();
  sync.broadcast_parameters();
  const int n = comm().size();
  const float rank_mean = static_cast<float>(n + 1) / 2;  // the mean of rank + 1 over the ranks
  for (int step = 0; step < 4; ++step) {                  // the slots are reused every step
    m.arena.zero_grad();
    sync.begin_backward();
    m.backward(step, comm().rank());
    sync.finish_backward();
    for (Parameter* p : {m.w, m.b, m.v}) {
      const float want = rank_mean * static_cast<float>((step + 1) * (p->index + 1));
      for (float g : p->grad.to_vector<float>()) ASSERT_FLOAT_EQ(g, want) << p->name << " step " << step;
    }
    const SyncStats& stats = sync.last_stats();
    EXPECT_EQ(stats.collectives.size(), 3u);
    EXPECT_GE(stats.comm_s, 0.0);
    EXPECT_NO_THROW(sync.after_step(step + 1));
  }
}

// The trainer's mode: summed gradients and sample counts, the average left to the optimizer, and a
// bf16 wire widened in its slot.
TEST_F(ParamSyncOnGpu, SampleCountsAndBf16WireThroughHostSlots) {
  GpuArena m;
  ParamSyncOptions o{.bucket_bytes = 4096, .first_bucket_bytes = 64};
  o.defer_average = true;
  o.summed_gradients = true;
  o.compress_bf16 = true;
  ParamSync sync(comm(), m.arena, o);
  const int n = comm().size();
  int64_t global = 0;
  for (int r = 0; r < n; ++r) global += 3 + r;
  float rank_sum = 0;
  for (int r = 0; r < n; ++r) rank_sum += static_cast<float>(r + 1);
  for (int step = 0; step < 3; ++step) {
    m.arena.zero_grad();
    sync.begin_backward(true, 3 + comm().rank());
    m.backward(step, comm().rank());  // small integers: exact in bf16
    sync.finish_backward();
    EXPECT_FLOAT_EQ(sync.grad_scale(), 1.0f / static_cast<float>(global));
    for (Parameter* p : {m.w, m.b, m.v}) {
      const float want = rank_sum * static_cast<float>((step + 1) * (p->index + 1));
      for (float g : p->grad.to_vector<float>()) ASSERT_FLOAT_EQ(g, want) << p->name << " step " << step;
    }
  }
}

}  // namespace
}  // namespace dtrain
