// The nccl backend on a GPU (label gpu; skipped without one): collectives and a world-of-one
// run through the same ParamSync path as the mpi backend.
#include <gtest/gtest.h>

#include "comm/environment.h"
#include "comm/param_sync.h"
#include "core/config.h"
#include "core/gpu.h"
#include "tests/core/cuda_test_util.h"

namespace dtrain {
namespace {

class NcclCommunicator : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!DTRAIN_HAVE_NCCL) GTEST_SKIP() << "built without NCCL";
    DTRAIN_SKIP_WITHOUT_GPU();
  }
};

TEST_F(NcclCommunicator, CollectivesInAWorldOfOne) {
  if (detect_launch_env().world != 1) GTEST_SKIP() << "a world-of-one test (ctest runs it as nccl_backend_test)";
  auto comm = make_communicator(CommOptions{.backend = "nccl", .model_device = Device::cuda(0)});
  ASSERT_EQ(comm->size(), 1);
  for (int64_t n : {0, 1, 7, 65537}) {
    Tensor t = Tensor::full(Shape{n}, 1.5f, comm->device());
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::average, ReduceOp::max}) ASSERT_TRUE(comm->allreduce(t, op).wait(30));
    ASSERT_TRUE(comm->broadcast(t, 0).wait(30));
    Tensor out = Tensor::zeros(Shape{n}, DType::f32, comm->device());
    ASSERT_TRUE(comm->allgather(t, out).wait(30));
    for (float v : out.to_vector<float>()) ASSERT_EQ(v, 1.5f);
  }
  ASSERT_TRUE(comm->barrier().wait(30));
}

// Values that differ per rank (rank + 1), so a wrong reduction op cannot pass as it does in a world
// of one. Runs under mpiexec (nccl_backend_test_np2); skips with the reason where a node has fewer
// GPUs than ranks (NCCL needs one GPU per rank).
TEST_F(NcclCommunicator, CollectivesCombineEveryRanksValues) {
  const LaunchEnv env = detect_launch_env();
  if (env.world < 2) GTEST_SKIP() << "needs 2 or more ranks (ctest runs nccl_backend_test_np2)";
  if (env.local_world > gpu::device_count())
    GTEST_SKIP() << env.local_world << " ranks on this node but " << gpu::device_count()
                 << " GPU(s): NCCL needs one GPU per rank (the mpi backend carries GPU tensors instead)";
  auto comm = make_communicator(CommOptions{.backend = "nccl", .model_device = Device::cuda(env.local_rank)});
  const int n = comm->size();
  const float mine = static_cast<float>(comm->rank() + 1);
  const float sum = static_cast<float>(n * (n + 1) / 2);
  for (const auto& [op, want] :
       {std::pair{ReduceOp::sum, sum}, std::pair{ReduceOp::average, sum / static_cast<float>(n)},
        std::pair{ReduceOp::max, static_cast<float>(n)}}) {
    Tensor t = Tensor::full(Shape{1000}, mine, comm->device());
    ASSERT_TRUE(comm->allreduce(t, op).wait(30));
    for (float v : t.to_vector<float>()) ASSERT_FLOAT_EQ(v, want) << reduce_op_name(op);
  }
  Tensor root = Tensor::full(Shape{5}, mine, comm->device());
  ASSERT_TRUE(comm->broadcast(root, n - 1).wait(30));
  for (float v : root.to_vector<float>()) ASSERT_EQ(v, static_cast<float>(n));
  Tensor out = Tensor::zeros(Shape{3 * n}, DType::f32, comm->device());
  ASSERT_TRUE(comm->allgather(Tensor::full(Shape{3}, mine, comm->device()), out).wait(30));
  const std::vector<float> all = out.to_vector<float>();
  for (int r = 0; r < n; ++r) ASSERT_EQ(all[static_cast<size_t>(3 * r)], static_cast<float>(r + 1));
}

TEST_F(NcclCommunicator, ParamSyncAveragesGradientsOnTheGpu) {
  if (detect_launch_env().world != 1) GTEST_SKIP() << "a world-of-one test (ctest runs it as nccl_backend_test)";
  auto comm = make_communicator(CommOptions{.backend = "nccl", .model_device = Device::cuda(0)});
  ParameterArena arena;
  auto fill = [](float v) { return [v](Tensor& t, Generator&) { t.fill(v); }; };
  Parameter& w = arena.add("0.weight", Shape{300, 7}, fill(1.0f));
  Parameter& b = arena.add("0.bias", Shape{7}, fill(2.0f));
  Generator gen(RngKey{1, 0, 0});
  arena.allocate(comm->device(), gen);
  ParamSync sync(*comm, arena, {.bucket_bytes = 4096, .first_bucket_bytes = 64, .check_every_steps = 1});
  sync.verify_signature();
  sync.broadcast_parameters();
  for (int micro = 0; micro < 2; ++micro) {
    sync.begin_backward(micro == 1);
    b.grad.copy_from(Tensor::full(b.shape, 4.0f, comm->device()));
    arena.grad_ready(b);
    w.grad.copy_from(Tensor::full(w.shape, 6.0f, comm->device()));
    arena.grad_ready(w);
    sync.finish_backward();
  }
  // Two micro-steps, world 1: the average is the gradient divided by 2.
  for (float v : b.grad.to_vector<float>()) ASSERT_FLOAT_EQ(v, 2.0f);
  for (float v : w.grad.to_vector<float>()) ASSERT_FLOAT_EQ(v, 3.0f);
  EXPECT_NO_THROW(sync.after_step(1));
}

// On 2 ranks with a GPU each: finish_backward makes the compute stream wait for each bucket's
// all-reduce (no host wait), the values are right when read, and comm_s comes from the CUDA events
// around the collectives.
TEST_F(NcclCommunicator, ParamSyncWaitsOnTheDeviceNotTheHost) {
  const LaunchEnv env = detect_launch_env();
  if (env.world < 2) GTEST_SKIP() << "needs 2 or more ranks (ctest runs nccl_backend_test_np2)";
  if (env.local_world > gpu::device_count())
    GTEST_SKIP() << env.local_world << " ranks on this node but " << gpu::device_count() << " GPU(s)";
  auto comm = make_communicator(CommOptions{.backend = "nccl", .model_device = Device::cuda(env.local_rank)});
  for (bool bf16 : {false, true}) {  // a bf16 wire is widened on the device too
    ParameterArena arena;
    auto fill = [](float v) { return [v](Tensor& t, Generator&) { t.fill(v); }; };
    Parameter& w = arena.add("0.weight", Shape{3000, 7}, fill(1.0f));
    Parameter& b = arena.add("0.bias", Shape{7}, fill(2.0f));
    Generator gen(RngKey{1, 0, 0});
    arena.allocate(comm->device(), gen);
    ParamSyncOptions o{.bucket_bytes = 4096, .first_bucket_bytes = 64};
    o.compress_bf16 = bf16;
    ParamSync sync(*comm, arena, o);
    const float mine = static_cast<float>(comm->rank() + 1), n = static_cast<float>(comm->size());
    for (int step = 0; step < 3; ++step) {  // small integers and halves: exact in bf16
      sync.begin_backward();
      b.grad.copy_from(Tensor::full(b.shape, mine, comm->device()));
      arena.grad_ready(b);
      w.grad.copy_from(Tensor::full(w.shape, 2 * mine, comm->device()));
      arena.grad_ready(w);
      const int64_t before = gpu::host_waits();
      sync.finish_backward();
      EXPECT_EQ(gpu::host_waits(), before) << "finish_backward waited for the GPU on the host (bf16 " << bf16 << ")";
      for (float v : b.grad.to_vector<float>()) ASSERT_FLOAT_EQ(v, (n + 1) / 2);
      for (float v : w.grad.to_vector<float>()) ASSERT_FLOAT_EQ(v, n + 1);
      const SyncStats& stats = sync.last_stats();
      ASSERT_EQ(stats.collectives.size(), sync.buckets().size());
      EXPECT_GT(stats.comm_s, 0.0);
      for (const SyncStats::Span& span : stats.collectives) EXPECT_LE(span.begin, span.end) << span.name;
    }
  }
}

}  // namespace
}  // namespace dtrain
