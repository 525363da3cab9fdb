// CPU-vs-CUDA checks for causal multi-head self-attention (core/layers/attention.cpp against
// core/cuda/attention.cu). The CUDA outputs start as NaN, so an element either side leaves
// unwritten fails. The shapes cover one head and four, b above and below heads (the two ways the
// CUDA GEMMs batch over (batch, head)), t of 1, below 32 and not a multiple of 32 (one warp per
// softmax row). Each test skips with the reason when the build has no CUDA or no GPU is visible.
#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/kernels.h"
#include "core/tensor.h"
#include "tests/core/cuda_test_util.h"

namespace dtrain::test {
namespace {

#if !DTRAIN_HAVE_CUDA

TEST(CudaAttention, SkippedWithoutCuda) {
  GTEST_SKIP() << "built without CUDA (DTRAIN_CUDA=OFF or no nvcc): there are no cuda:: kernels to compare";
}

#else

struct Case {
  int64_t b, t, c, heads;
  std::string str() const {
    return "b=" + std::to_string(b) + " t=" + std::to_string(t) + " c=" + std::to_string(c) +
           " heads=" + std::to_string(heads);
  }
};

const std::vector<Case> kCases = {{1, 1, 4, 1},   {2, 1, 8, 4},   {2, 37, 16, 1},
                                  {2, 37, 64, 4}, {5, 33, 32, 4}, {2, 100, 48, 4}};

// One side's tensors for a case: the forward's outputs and the backward's.
struct Side {
  Tensor out, att, dqkv, scratch;
};

class CudaAttention : public CpuVsCuda {
 protected:
  Side cpu_side(const Case& s) {
    return {empty_cpu(Shape{s.b, s.t, s.c}), empty_cpu(Shape{s.b, s.heads, s.t, s.t}),
            empty_cpu(Shape{s.b, s.t, 3 * s.c}), empty_cpu(Shape{s.b, s.heads, s.t, s.t})};
  }
  // Filled with NaN: what the kernels do not write stays NaN and fails the comparison.
  Side gpu_side(const Case& s) {
    Side g{empty_gpu(Shape{s.b, s.t, s.c}), empty_gpu(Shape{s.b, s.heads, s.t, s.t}),
           empty_gpu(Shape{s.b, s.t, 3 * s.c}), empty_gpu(Shape{s.b, s.heads, s.t, s.t})};
    for (Tensor* x : {&g.out, &g.att, &g.dqkv, &g.scratch})
      cuda::fill(x->data<float>(), x->numel(), std::numeric_limits<float>::quiet_NaN());
    return g;
  }
};

TEST_F(CudaAttention, ForwardMatchesTheCpuWithZerosAboveTheDiagonal) {
  for (const Case& s : kCases) {
    const Tensor qkv = randn(Shape{s.b, s.t, 3 * s.c}), qkvg = qkv.to(kGpu);
    Side cpu_out = cpu_side(s), gpu_out = gpu_side(s);
    cpu::attention_forward(qkv.data<float>(), cpu_out.out.data<float>(), cpu_out.att.data<float>(), s.b, s.t, s.c,
                           s.heads);
    cuda::attention_forward(qkvg.data<float>(), gpu_out.out.data<float>(), gpu_out.att.data<float>(), s.b, s.t, s.c,
                            s.heads);
    expect_close(cpu_out.att, gpu_out.att, 1e-4f, "attention_forward att " + s.str());
    expect_close(cpu_out.out, gpu_out.out, 1e-4f, "attention_forward out " + s.str());

    const std::vector<float> att = gpu_out.att.to_vector<float>();
    int64_t nonzero_above = 0;
    for (int64_t row = 0; row < s.b * s.heads * s.t; ++row)
      for (int64_t j = row % s.t + 1; j < s.t; ++j) nonzero_above += att[row * s.t + j] != 0.0f;
    EXPECT_EQ(nonzero_above, 0) << "attention_forward att above the diagonal is not exactly 0, " << s.str();
  }
}

TEST_F(CudaAttention, BackwardMatchesTheCpuAndWritesAllOfDqkv) {
  for (const Case& s : kCases) {
    const Tensor qkv = randn(Shape{s.b, s.t, 3 * s.c}), qkvg = qkv.to(kGpu);
    const Tensor dout = randn(Shape{s.b, s.t, s.c}), doutg = dout.to(kGpu);
    Side cpu_out = cpu_side(s), gpu_out = gpu_side(s);
    cpu::attention_forward(qkv.data<float>(), cpu_out.out.data<float>(), cpu_out.att.data<float>(), s.b, s.t, s.c,
                           s.heads);
    cuda::attention_forward(qkvg.data<float>(), gpu_out.out.data<float>(), gpu_out.att.data<float>(), s.b, s.t, s.c,
                            s.heads);
    cpu::attention_backward(dout.data<float>(), qkv.data<float>(), cpu_out.att.data<float>(),
                            cpu_out.dqkv.data<float>(), cpu_out.scratch.data<float>(), s.b, s.t, s.c, s.heads);
    cuda::attention_backward(doutg.data<float>(), qkvg.data<float>(), gpu_out.att.data<float>(),
                             gpu_out.dqkv.data<float>(), gpu_out.scratch.data<float>(), s.b, s.t, s.c, s.heads);
    expect_close(cpu_out.dqkv, gpu_out.dqkv, 1e-4f, "attention_backward dqkv " + s.str());
  }
}

#endif

}  // namespace
}  // namespace dtrain::test
