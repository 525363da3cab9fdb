// CPU-vs-CUDA checks for the fill, elementwise, conversion, reduction and GEMM kernels
// (core/cpu/elementwise.cpp, core/cpu/blas.cpp against core/cuda/*.cu). Each test skips with the
// reason when the build has no CUDA or no GPU is visible.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/kernels.h"
#if DTRAIN_HAVE_CUDA
#include "core/cuda/blas.cuh"
#endif
#include "core/tensor.h"
#include "tests/core/cuda_test_util.h"

namespace dtrain::test {
namespace {

#if !DTRAIN_HAVE_CUDA

TEST(CudaKernels, SkippedWithoutCuda) {
  GTEST_SKIP() << "built without CUDA (DTRAIN_CUDA=OFF or no nvcc): there are no cuda:: kernels to compare";
}

#else

using CudaKernels = CpuVsCuda;

std::string at(const char* kernel, int64_t n) { return std::string(kernel) + " n=" + std::to_string(n); }

TEST_F(CudaKernels, FillsMatchTheCpu) {
  const RngStream stream = rng_stream(RngKey{7, 3, static_cast<uint32_t>(RngPurpose::init)});
  for (int64_t n : kOddSizes) {
    Tensor c = empty_cpu(Shape{n}), g = empty_gpu(Shape{n});
    cpu::fill(c.data<float>(), n, 2.5f);
    cuda::fill(g.data<float>(), n, 2.5f);
    expect_equal<float>(c, g, at("fill", n));

    // Uniforms are exact: the same Philox counters and no fused multiply-add.
    cpu::uniform_fill(c.data<float>(), n, -0.3f, 0.7f, stream, 1001);
    cuda::uniform_fill(g.data<float>(), n, -0.3f, 0.7f, stream, 1001);
    expect_equal<float>(c, g, at("uniform_fill", n));

    // Normals agree to a few ulps (device logf/cosf are not the host's libm).
    cpu::normal_fill(c.data<float>(), n, 0.5f, 2.0f, stream, 77);
    cuda::normal_fill(g.data<float>(), n, 0.5f, 2.0f, stream, 77);
    expect_close(c, g, 1e-5f, at("normal_fill", n));
  }
}

TEST_F(CudaKernels, ElementwiseArithmeticMatchesTheCpuExactly) {
  for (int64_t n : kOddSizes) {
    const Tensor a = randn(Shape{n}), b = randn(Shape{n});
    const Tensor ag = a.to(kGpu), bg = b.to(kGpu);

    Tensor c = a.clone(), g = ag.clone();
    cpu::scale(c.data<float>(), n, -1.75f);
    cuda::scale(g.data<float>(), n, -1.75f);
    expect_equal<float>(c, g, at("scale", n));

    c = b.clone(), g = bg.clone();
    cpu::axpy(0.3f, a.data<float>(), c.data<float>(), n);
    cuda::axpy(0.3f, ag.data<float>(), g.data<float>(), n);
    expect_equal<float>(c, g, at("axpy", n));

    c = empty_cpu(Shape{n}), g = empty_gpu(Shape{n});
    cpu::add(a.data<float>(), b.data<float>(), c.data<float>(), n);
    cuda::add(ag.data<float>(), bg.data<float>(), g.data<float>(), n);
    expect_equal<float>(c, g, at("add", n));
  }
}

TEST_F(CudaKernels, ConversionsMatchTheCpuBitForBit) {
  for (int64_t n : kOddSizes) {
    Tensor x = randn(Shape{n}, 100.0f);
    if (n >= 7) {  // specials: NaN, infinities, a tie that rounds to even, a tie that rounds up, -0
      std::vector<float> v = x.to_vector<float>();
      const float specials[7] = {std::numeric_limits<float>::quiet_NaN(),
                                 std::numeric_limits<float>::infinity(),
                                 -std::numeric_limits<float>::infinity(),
                                 1.00390625f,
                                 1.01171875f,
                                 -0.0f,
                                 3.4028235e38f};
      std::copy(specials, specials + 7, v.begin());
      x = Tensor::from_vector<float>(v, Shape{n});
    }
    const Tensor xg = x.to(kGpu);
    Tensor c = empty_cpu(Shape{n}, DType::bf16), g = empty_gpu(Shape{n}, DType::bf16);
    cpu::f32_to_bf16(x.data<float>(), static_cast<uint16_t*>(c.raw_data()), n);
    cuda::f32_to_bf16(xg.data<float>(), static_cast<uint16_t*>(g.raw_data()), n);
    expect_equal<bf16>(c, g, at("f32_to_bf16", n));

    Tensor cf = empty_cpu(Shape{n}), gf = empty_gpu(Shape{n});
    cpu::bf16_to_f32(static_cast<const uint16_t*>(c.raw_data()), cf.data<float>(), n);
    cuda::bf16_to_f32(static_cast<const uint16_t*>(g.raw_data()), gf.data<float>(), n);
    expect_equal<float>(cf, gf, at("bf16_to_f32", n));

    std::vector<uint8_t> bytes(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) bytes[i] = static_cast<uint8_t>((i * 37 + 11) % 256);
    const Tensor u = Tensor::from_vector<uint8_t>(bytes, Shape{n}), ug = u.to(kGpu);
    cpu::u8_to_f32(u.data<uint8_t>(), cf.data<float>(), n, 1.0f / 255.0f, -0.1307f);
    cuda::u8_to_f32(ug.data<uint8_t>(), gf.data<float>(), n, 1.0f / 255.0f, -0.1307f);
    expect_equal<float>(cf, gf, at("u8_to_f32", n));
  }
}

TEST_F(CudaKernels, ReductionsMatchTheCpuAndAreDeterministic) {
  for (int64_t n : {int64_t{1}, int64_t{255}, int64_t{257}, int64_t{100003}, int64_t{3000001}}) {
    const Tensor x = randn(Shape{n}), xg = x.to(kGpu);
    Tensor c = empty_cpu(Shape{1}), g1 = empty_gpu(Shape{1}), g2 = empty_gpu(Shape{1});
    cpu::sum(x.data<float>(), n, c.data<float>());
    cuda::sum(xg.data<float>(), n, g1.data<float>());
    cuda::sum(xg.data<float>(), n, g2.data<float>());
    expect_close(c, g1, 1e-6f, at("sum", n));
    expect_equal<float>(g1, g2, at("sum run twice", n));

    cpu::sum_squares(x.data<float>(), n, c.data<float>());
    cuda::sum_squares(xg.data<float>(), n, g1.data<float>());
    cuda::sum_squares(xg.data<float>(), n, g2.data<float>());
    expect_close(c, g1, 1e-6f, at("sum_squares", n));
    expect_equal<float>(g1, g2, at("sum_squares run twice", n));
  }
  Tensor g = Tensor::full(Shape{1}, 9.0f, kGpu);
  cuda::sum(nullptr, 0, g.data<float>());
  EXPECT_EQ(g.to_vector<float>()[0], 0.0f) << "sum of nothing is 0";
}

TEST_F(CudaKernels, ArgmaxRowsPicksTheFirstMaximumLikeTheCpu) {
  const std::vector<std::pair<int64_t, int64_t> > shapes = {{1, 1}, {3, 1}, {37, 10}, {5, 300}, {2, 1000}};
  for (auto [rows, cols] : shapes) {
    std::vector<float> v = randn(Shape{rows, cols}).to_vector<float>();
    for (int64_t r = 0; r < rows; ++r) {  // ties: the lower column must win
      v[r * cols + (r * 7) % cols] = 50.0f;
      v[r * cols + (r * 13 + 5) % cols] = 50.0f;
    }
    const Tensor x = Tensor::from_vector<float>(v, Shape{rows, cols}), xg = x.to(kGpu);
    Tensor c = empty_cpu(Shape{rows}, DType::i64), g = empty_gpu(Shape{rows}, DType::i64);
    cpu::argmax_rows(x.data<float>(), rows, cols, c.data<int64_t>());
    cuda::argmax_rows(xg.data<float>(), rows, cols, g.data<int64_t>());
    EXPECT_EQ(c.to_vector<int64_t>(), g.to_vector<int64_t>()) << "rows=" << rows << " cols=" << cols;
  }
}

TEST_F(CudaKernels, CountHitsAddsTheRowsWhoseArgmaxIsTheLabel) {
  for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t> >{{1, 1}, {37, 10}, {4096, 256}, {100003, 3}}) {
    const Tensor x = randn(Shape{rows, cols});
    std::vector<int64_t> labels(static_cast<size_t>(rows));
    const std::vector<float> v = x.to_vector<float>();
    for (int64_t r = 0; r < rows; ++r) {  // every third row's label is its argmax
      int64_t best = 0;
      for (int64_t c = 1; c < cols; ++c)
        if (v[r * cols + c] > v[r * cols + best]) best = c;
      labels[r] = r % 3 == 0 ? best : (best + 1) % cols;
    }
    const Tensor y = Tensor::from_vector(labels, Shape{rows}), yg = y.to(kGpu), xg = x.to(kGpu);
    Tensor c = Tensor::from_vector(std::vector<int64_t>{5}, Shape{1}), g = c.to(kGpu);  // it adds to *hits
    cpu::count_hits(x.data<float>(), y.data<int64_t>(), rows, cols, c.data<int64_t>());
    cuda::count_hits(xg.data<float>(), yg.data<int64_t>(), rows, cols, g.data<int64_t>());
    const int64_t want = 5 + (cols == 1 ? rows : (rows + 2) / 3);
    EXPECT_EQ(c.to_vector<int64_t>()[0], want) << "rows=" << rows << " cols=" << cols;
    EXPECT_EQ(g.to_vector<int64_t>()[0], want) << "rows=" << rows << " cols=" << cols;
  }
}

// C = alpha op(A) op(B) + beta C for every transpose combination, with row strides wider than
// the matrices (a view of the left columns of a wider buffer).
TEST_F(CudaKernels, GemmMatchesTheCpuForEveryTransposeAndOddSizes) {
  struct Case {
    int64_t m, n, k, pad;
  };
  for (const Case& s : {Case{1, 1, 1, 0}, Case{5, 7, 3, 0}, Case{33, 65, 129, 3}, Case{128, 96, 257, 0}})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const int64_t a_rows = ta ? s.k : s.m, a_cols = ta ? s.m : s.k;
        const int64_t b_rows = tb ? s.n : s.k, b_cols = tb ? s.k : s.n;
        const int64_t lda = a_cols + s.pad, ldb = b_cols + s.pad, ldc = s.n + s.pad;
        const Tensor a = randn(Shape{a_rows, lda}), b = randn(Shape{b_rows, ldb});
        const Tensor c0 = randn(Shape{s.m, ldc});
        const Tensor ag = a.to(kGpu), bg = b.to(kGpu);
        Tensor c = c0.clone(), g = c0.to(kGpu);
        cpu::gemm(ta, tb, s.m, s.n, s.k, 1.5f, a.data<float>(), lda, b.data<float>(), ldb, 0.5f, c.data<float>(), ldc);
        cuda::gemm(ta, tb, s.m, s.n, s.k, 1.5f, ag.data<float>(), lda, bg.data<float>(), ldb, 0.5f, g.data<float>(),
                   ldc);
        expect_close(c, g, 1e-4f,
                     "gemm m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) + " k=" + std::to_string(s.k) +
                         " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
      }
}

TEST_F(CudaKernels, GemmWithEmptyInnerDimensionScalesC) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (float beta : {0.0f, 2.0f}) {
    std::vector<float> init(12, beta == 0.0f ? nan : 1.5f);  // beta == 0 must not read C
    const Tensor c0 = Tensor::from_vector<float>(init, Shape{3, 4});
    Tensor c = c0.clone(), g = c0.to(kGpu);
    cpu::gemm(false, false, 3, 4, 0, 1.0f, nullptr, 1, nullptr, 4, beta, c.data<float>(), 4);
    cuda::gemm(false, false, 3, 4, 0, 1.0f, nullptr, 1, nullptr, 4, beta, g.data<float>(), 4);
    expect_equal<float>(c, g, "gemm k=0 beta=" + std::to_string(beta));
  }
  cuda::gemm(false, false, 0, 4, 3, 1.0f, nullptr, 3, nullptr, 4, 0.0f, nullptr, 4);  // m == 0: nothing to do
  cuda::gemm(false, false, 3, 0, 3, 1.0f, nullptr, 3, nullptr, 1, 0.0f, nullptr, 1);  // n == 0
}

TEST_F(CudaKernels, Tf32GemmStaysCloseAndCanBeSwitchedOff) {
  const int64_t m = 256, n = 256, k = 256;
  const Tensor a = randn(Shape{m, k}), b = randn(Shape{k, n});
  const Tensor ag = a.to(kGpu), bg = b.to(kGpu);
  Tensor c = empty_cpu(Shape{m, n}), g = empty_gpu(Shape{m, n});
  cpu::gemm(false, false, m, n, k, 1.0f, a.data<float>(), k, b.data<float>(), n, 0.0f, c.data<float>(), n);
  cuda::set_gemm_math(gpu::GemmMath::tf32);
  cuda::gemm(false, false, m, n, k, 1.0f, ag.data<float>(), k, bg.data<float>(), n, 0.0f, g.data<float>(), n);
  cuda::set_gemm_math(gpu::GemmMath::f32);
  expect_close(c, g, 0.05f, "gemm with TF32 (10-bit mantissa inputs)");
  cuda::gemm(false, false, m, n, k, 1.0f, ag.data<float>(), k, bg.data<float>(), n, 0.0f, g.data<float>(), n);
  expect_close(c, g, 1e-4f, "gemm after TF32 is switched off again");
}

// train.precision=bf16: inputs rounded to bf16's 8-bit significand (relative error 2^-9 each),
// products accumulated in f32; strided batches (attention) go the same way.
TEST_F(CudaKernels, Bf16GemmStaysCloseAndCanBeSwitchedOff) {
  const int64_t m = 128, n = 96, k = 256, batch = 3;
  const Tensor a = randn(Shape{batch * m * k}), b = randn(Shape{batch * k * n});
  const Tensor ag = a.to(kGpu), bg = b.to(kGpu);
  Tensor c = empty_cpu(Shape{batch * m * n}), g = empty_gpu(Shape{batch * m * n});
  for (int64_t i = 0; i < batch; ++i)
    cpu::gemm(false, true, m, n, k, 1.0f, a.data<float>() + i * m * k, k, b.data<float>() + i * k * n, k, 0.0f,
              c.data<float>() + i * m * n, n);
  cuda::set_gemm_math(gpu::GemmMath::bf16);
  cuda::gemm_strided_batched(false, true, m, n, k, 1.0f, ag.data<float>(), k, m * k, bg.data<float>(), k, k * n, 0.0f,
                             g.data<float>(), n, m * n, batch);
  cuda::set_gemm_math(gpu::GemmMath::f32);
  // |error| of a sum of k products of N(0,1) inputs: about 2^-8 * sqrt(k) = 0.06 at most here.
  expect_close(c, g, 0.1f, "strided batched gemm with bf16 inputs");
  cuda::gemm_strided_batched(false, true, m, n, k, 1.0f, ag.data<float>(), k, m * k, bg.data<float>(), k, k * n, 0.0f,
                             g.data<float>(), n, m * n, batch);
  expect_close(c, g, 1e-4f, "strided batched gemm after bf16 is switched off again");
}

TEST_F(CudaKernels, EmptyInputsLaunchNothing) {
  cuda::fill(nullptr, 0, 1.0f);
  cuda::scale(nullptr, 0, 2.0f);
  cuda::axpy(1.0f, nullptr, nullptr, 0);
  cuda::add(nullptr, nullptr, nullptr, 0);
  cuda::f32_to_bf16(nullptr, nullptr, 0);
  cuda::argmax_rows(nullptr, 0, 5, nullptr);
  gpu::synchronize(0);
}

#endif  // DTRAIN_HAVE_CUDA

}  // namespace
}  // namespace dtrain::test
