// The nccl backend on a GPU (label gpu; skipped without one): collectives and a world-of-one
// run through the same ParamSync path as the mpi backend.
#include <gtest/gtest.h>

#include "comm/param_sync.h"
#include "core/config.h"
#include "core/gpu.h"

namespace dtrain {
namespace {

class NcclCommunicator : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!DTRAIN_HAVE_NCCL) GTEST_SKIP() << "built without NCCL";
    if (gpu::device_count() == 0) GTEST_SKIP() << "no GPU visible";
  }
};

TEST_F(NcclCommunicator, CollectivesInAWorldOfOne) {
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

TEST_F(NcclCommunicator, ParamSyncAveragesGradientsOnTheGpu) {
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

}  // namespace
}  // namespace dtrain
