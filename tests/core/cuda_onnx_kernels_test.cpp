// CPU-vs-CUDA checks for the kernels the ONNX engine added: mul, affine, erf_forward,
// softmax_rows. Each test skips with the reason when the build has no CUDA or no GPU is visible.
#include <gtest/gtest.h>

#include "core/config.h"
#include "core/kernels.h"
#include "tests/core/cuda_test_util.h"

namespace dtrain::test {
namespace {

#if !DTRAIN_HAVE_CUDA

TEST(CudaOnnxKernels, SkippedWithoutCuda) {
  GTEST_SKIP() << "built without CUDA (DTRAIN_CUDA=OFF or no nvcc): there are no cuda:: kernels to compare";
}

#else

using CudaOnnxKernels = CpuVsCuda;

TEST_F(CudaOnnxKernels, MulAndAffineMatchTheCpuExactly) {
  for (int64_t n : kOddSizes) {
    const Tensor a = randn(Shape{n}), b = randn(Shape{n});
    const Tensor ag = a.to(kGpu), bg = b.to(kGpu);
    Tensor c = empty_cpu(Shape{n}), g = empty_gpu(Shape{n});
    cpu::mul(a.data<float>(), b.data<float>(), c.data<float>(), n);
    cuda::mul(ag.data<float>(), bg.data<float>(), g.data<float>(), n);
    expect_equal<float>(c, g, "mul n=" + std::to_string(n));
    cpu::affine(a.data<float>(), c.data<float>(), n, 0.3f, -1.25f);
    cuda::affine(ag.data<float>(), g.data<float>(), n, 0.3f, -1.25f);
    expect_equal<float>(c, g, "affine n=" + std::to_string(n));
  }
}

TEST_F(CudaOnnxKernels, ErfMatchesTheCpu) {
  for (int64_t n : kOddSizes) {
    const Tensor a = randn(Shape{n}, 2.0f);
    Tensor c = empty_cpu(Shape{n}), g = empty_gpu(Shape{n});
    const Tensor ag = a.to(kGpu);
    cpu::erf_forward(a.data<float>(), c.data<float>(), n);
    cuda::erf_forward(ag.data<float>(), g.data<float>(), n);
    expect_close(c, g, 1e-6f, "erf_forward n=" + std::to_string(n));
  }
}

TEST_F(CudaOnnxKernels, SoftmaxRowsMatchesTheCpu) {
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {37, 10}, {3, 1000}, {70000, 7}}) {
    const Tensor x = randn(Shape{rows, cols}, 3.0f);
    Tensor c = empty_cpu(Shape{rows, cols}), g = empty_gpu(Shape{rows, cols});
    const Tensor xg = x.to(kGpu);
    cpu::softmax_rows(x.data<float>(), c.data<float>(), rows, cols);
    cuda::softmax_rows(xg.data<float>(), g.data<float>(), rows, cols);
    expect_close(c, g, 1e-5f, "softmax_rows " + std::to_string(rows) + "x" + std::to_string(cols));
  }
}

#endif

}  // namespace
}  // namespace dtrain::test
