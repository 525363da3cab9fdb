// Every registered optimizer's CUDA update kernel against its CPU loop (label gpu; skips with the
// reason without a GPU): the same arena, gradients and steps on both devices.
#include <gtest/gtest.h>

#include "optim/optimizer.h"
#include "tests/core/cuda_test_util.h"

namespace dtrain {
namespace {

// An arena of `n` values on `device`, initialised from the same stream on both devices.
void fill_arena(ParameterArena& arena, int64_t n, Device device) {
  arena.add("w", Shape{n}, [](Tensor& v, Generator& g) { v.copy_from(Tensor::randn(v.shape(), 0.0f, 1.0f, g)); });
  Generator g(RngKey{7, 0, static_cast<uint32_t>(RngPurpose::test)});
  arena.allocate(device, g);
}

class CudaOptimizer : public test::CpuVsCuda {};

TEST_F(CudaOptimizer, EveryRegisteredOptimizerMatchesItsCpuLoop) {
  for (const auto& [name, summary] : registered_optimizers())
    for (int64_t n : test::kOddSizes) {
      OptimizerConfig c;
      c.type = name;
      c.lr = 0.01f;
      c.weight_decay = 0.01f;
      c.nesterov = name == "sgd";
      ParameterArena cpu_arena, gpu_arena;
      fill_arena(cpu_arena, n, Device::cpu());
      fill_arena(gpu_arena, n, test::kGpu);
      auto cpu_opt = make_optimizer(c, cpu_arena), gpu_opt = make_optimizer(c, gpu_arena);
      for (int step = 0; step < 3; ++step) {
        const Tensor g = randn(Shape{n});
        cpu_arena.grads().copy_from(g);
        gpu_arena.grads().copy_from(g);
        cpu_opt->step(cpu_arena, c.lr);
        gpu_opt->step(gpu_arena, c.lr);
      }
      test::expect_close(cpu_arena.values(), gpu_arena.values(), 1e-5f, name + " n=" + std::to_string(n));
      for (size_t s = 0; s < cpu_opt->slots().size(); ++s)
        test::expect_close(*cpu_opt->slots()[s].second, *gpu_opt->slots()[s].second, 1e-5f,
                           name + " slot " + cpu_opt->slots()[s].first + " n=" + std::to_string(n));
    }
}

}  // namespace
}  // namespace dtrain
