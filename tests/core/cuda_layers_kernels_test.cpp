// CPU-vs-CUDA checks for the layer and loss kernels: Linear/Conv helpers, activations, pooling,
// layer norm, embedding, dropout, losses (core/cpu/*.cpp against core/cuda/*.cu). Parameter
// gradients start from random values to check that both sides accumulate. Each test skips with the
// reason when the build has no CUDA or no GPU is visible.
#include <gtest/gtest.h>

#include <climits>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/gpu.h"
#include "core/kernels.h"
#include "core/storage.h"
#include "core/tensor.h"
#include "tests/core/cuda_test_util.h"

namespace dtrain::test {
namespace {

#if !DTRAIN_HAVE_CUDA

TEST(CudaLayerKernels, SkippedWithoutCuda) {
  GTEST_SKIP() << "built without CUDA (DTRAIN_CUDA=OFF or no nvcc): there are no cuda:: kernels to compare";
}

#else

using CudaLayerKernels = CpuVsCuda;

std::string at(const char* kernel, int64_t n) { return std::string(kernel) + " n=" + std::to_string(n); }

TEST_F(CudaLayerKernels, BiasRowsAndTheirGradientMatchTheCpu) {
  const std::vector<std::pair<int64_t, int64_t> > shapes = {{1, 1}, {3, 257}, {300, 10}, {65, 33}};
  for (auto [rows, cols] : shapes) {
    const Tensor y0 = randn(Shape{rows, cols}), bias = randn(Shape{cols}), db0 = randn(Shape{cols});
    Tensor y = y0.clone(), yg = y0.to(kGpu);
    const Tensor bg = bias.to(kGpu);
    cpu::add_bias_rows(y.data<float>(), bias.data<float>(), rows, cols);
    cuda::add_bias_rows(yg.data<float>(), bg.data<float>(), rows, cols);
    expect_equal<float>(y, yg, at("add_bias_rows", rows * cols));

    Tensor db = db0.clone(), dbg = db0.to(kGpu);
    const Tensor dyg = y0.to(kGpu);
    cpu::sum_rows(y0.data<float>(), db.data<float>(), rows, cols);
    cuda::sum_rows(dyg.data<float>(), dbg.data<float>(), rows, cols);
    expect_close(db, dbg, 1e-5f, at("sum_rows (accumulating)", rows * cols));
  }
}

TEST_F(CudaLayerKernels, BiasChannelsAndTheirGradientMatchTheCpu) {
  struct Case {
    int64_t n, c, hw;
  };
  for (const Case& s : {Case{1, 1, 1}, Case{2, 3, 49}, Case{4, 16, 257}, Case{3, 70, 5}}) {
    const Shape shape{s.n, s.c, s.hw};
    const Tensor y0 = randn(shape), bias = randn(Shape{s.c}), db0 = randn(Shape{s.c});
    Tensor y = y0.clone(), yg = y0.to(kGpu);
    const Tensor bg = bias.to(kGpu);
    cpu::add_bias_channels(y.data<float>(), bias.data<float>(), s.n, s.c, s.hw);
    cuda::add_bias_channels(yg.data<float>(), bg.data<float>(), s.n, s.c, s.hw);
    expect_equal<float>(y, yg, at("add_bias_channels", y0.numel()));

    Tensor db = db0.clone(), dbg = db0.to(kGpu);
    const Tensor dyg = y0.to(kGpu);
    cpu::sum_channels(y0.data<float>(), db.data<float>(), s.n, s.c, s.hw);
    cuda::sum_channels(dyg.data<float>(), dbg.data<float>(), s.n, s.c, s.hw);
    expect_close(db, dbg, 1e-5f, at("sum_channels (accumulating)", y0.numel()));
  }
}

TEST_F(CudaLayerKernels, Swap01MatchesTheCpu) {
  struct Case {
    int64_t a, b, inner;
  };
  for (const Case& s : {Case{1, 1, 1}, Case{2, 3, 5}, Case{7, 4, 257}, Case{16, 3, 1}}) {
    const Tensor x = randn(Shape{s.a, s.b, s.inner}), xg = x.to(kGpu);
    Tensor y = empty_cpu(Shape{s.b, s.a, s.inner}), yg = empty_gpu(Shape{s.b, s.a, s.inner});
    cpu::swap_01(x.data<float>(), y.data<float>(), s.a, s.b, s.inner);
    cuda::swap_01(xg.data<float>(), yg.data<float>(), s.a, s.b, s.inner);
    expect_equal<float>(y, yg, at("swap_01", x.numel()));
  }
}

// im2col is a gather (exact); col2im is its adjoint and accumulates into dx.
TEST_F(CudaLayerKernels, Im2colAndCol2imMatchTheCpu) {
  struct Case {
    int64_t n, c, h, w, kh, kw, stride, pad;
  };
  for (const Case& s : {Case{1, 1, 1, 1, 1, 1, 1, 0}, Case{2, 3, 7, 5, 3, 3, 2, 1}, Case{3, 4, 9, 9, 3, 3, 1, 1},
                        Case{1, 2, 8, 6, 2, 3, 1, 0}, Case{2, 1, 11, 13, 5, 5, 3, 2}}) {
    const int64_t oh = (s.h + 2 * s.pad - s.kh) / s.stride + 1, ow = (s.w + 2 * s.pad - s.kw) / s.stride + 1;
    const std::string what = "n=" + std::to_string(s.n) + " c=" + std::to_string(s.c) + " h=" + std::to_string(s.h) +
                             " w=" + std::to_string(s.w) + " k=" + std::to_string(s.kh) + "x" + std::to_string(s.kw) +
                             " stride=" + std::to_string(s.stride) + " pad=" + std::to_string(s.pad);
    const Shape cols_shape{s.c * s.kh * s.kw, s.n * oh * ow};
    const Tensor x = randn(Shape{s.n, s.c, s.h, s.w}), xg = x.to(kGpu);
    Tensor cols = empty_cpu(cols_shape), colsg = empty_gpu(cols_shape);
    cpu::im2col(x.data<float>(), cols.data<float>(), s.n, s.c, s.h, s.w, s.kh, s.kw, s.stride, s.pad, oh, ow);
    cuda::im2col(xg.data<float>(), colsg.data<float>(), s.n, s.c, s.h, s.w, s.kh, s.kw, s.stride, s.pad, oh, ow);
    expect_equal<float>(cols, colsg, "im2col " + what);

    const Tensor dcols = randn(cols_shape), dcolsg = dcols.to(kGpu);
    const Tensor dx0 = randn(Shape{s.n, s.c, s.h, s.w});
    Tensor dx = dx0.clone(), dxg = dx0.to(kGpu);
    cpu::col2im(dcols.data<float>(), dx.data<float>(), s.n, s.c, s.h, s.w, s.kh, s.kw, s.stride, s.pad, oh, ow);
    cuda::col2im(dcolsg.data<float>(), dxg.data<float>(), s.n, s.c, s.h, s.w, s.kh, s.kw, s.stride, s.pad, oh, ow);
    expect_close(dx, dxg, 1e-5f, "col2im (accumulating) " + what);
  }
}

// Every shape above takes the layout kernels' 32-bit index path. Past int32's range they take
// the 64-bit one (launch.cuh's with_index_type): three tensors of 2^31 + 15 floats (8 GiB each).
// im2col with a 1x1 kernel is swap_01 of the image and col2im of that into zeros is the image
// again, so the kernels check each other in full; single elements past 2^31 are read back for
// add_bias_channels and softmax_xent_backward. Skips when the GPU cannot hold the tensors.
TEST_F(CudaLayerKernels, LayoutKernelsPastTheInt32RangeTakeThe64BitPath) {
  const int64_t a = 3, b = 5, inner = (int64_t{1} << 31) / 15 + 1, n = a * b * inner;
  ASSERT_GT(n, int64_t{INT32_MAX});
  Tensor x, y, z;
  try {
    x = Tensor::uniform(Shape{a, b, inner}, -1.0f, 1.0f, gen_, kGpu);
    y = empty_gpu(Shape{b, a, inner});
    z = empty_gpu(Shape{b, a * inner});
  } catch (const Error& e) {
    GTEST_SKIP() << "the GPU cannot hold three tensors of 8 GiB: " << e.what();
  }
  const auto read = [](const Tensor& t, int64_t i) {
    float v = 0;
    gpu::memcpy(&v, t.data<float>() + i, sizeof v, gpu::CopyKind::device_to_host, kGpu.index);
    return v;
  };
  const auto total_squares = [](const Tensor& t) {
    Tensor s = Tensor::empty(Shape{1}, DType::f32, kGpu);
    cuda::sum_squares(t.data<float>(), t.numel(), s.data<float>());
    return s.to_vector<float>()[0];
  };
  cuda::swap_01(x.data<float>(), y.data<float>(), a, b, inner);
  cuda::im2col(x.data<float>(), z.data<float>(), a, b, 1, inner, 1, 1, 1, 0, 1, inner);
  cuda::axpy(-1.0f, y.data<float>(), z.data<float>(), n);
  EXPECT_EQ(total_squares(z), 0.0f) << "im2col (1x1) and swap_01 differ past 2^31 elements";
  const int64_t last = (a - 1) * b * inner + (b - 1) * inner + inner - 1;  // x[a-1][b-1][inner-1]
  EXPECT_EQ(read(y, n - 1), read(x, last)) << "swap_01's last element";
  EXPECT_EQ(read(y, (b - 1) * a * inner + inner - 2), read(x, (b - 1) * inner + inner - 2)) << "swap_01 y[b-1][0]";

  cuda::fill(z.data<float>(), n, 0.0f);
  cuda::col2im(y.data<float>(), z.data<float>(), a, b, 1, inner, 1, 1, 1, 0, 1, inner);
  cuda::axpy(-1.0f, x.data<float>(), z.data<float>(), n);
  EXPECT_EQ(total_squares(z), 0.0f) << "col2im of swap_01 is not the image past 2^31 elements";

  const float before = read(x, last);
  const Tensor bias = Tensor::from_vector<float>({1, 2, 3, 4, 5}, Shape{b}, kGpu);
  cuda::add_bias_channels(x.data<float>(), bias.data<float>(), a, b, inner);
  EXPECT_EQ(read(x, last), before + 5.0f) << "add_bias_channels's last element";

  const int64_t rows = a * b, classes = inner;  // probs = x as [15, inner]
  std::vector<int64_t> label_values(static_cast<size_t>(rows), classes - 1);
  const Tensor labels = Tensor::from_vector(label_values, Shape{rows}, kGpu);
  cuda::softmax_xent_backward(x.data<float>(), labels.data<int64_t>(), z.data<float>(), rows, classes, 0.5f);
  EXPECT_EQ(read(z, n - 1), (read(x, n - 1) - 1.0f) * 0.5f) << "softmax_xent_backward at the last label";
  EXPECT_EQ(read(z, n - 2), read(x, n - 2) * 0.5f) << "softmax_xent_backward beside it";
  x = y = z = Tensor();
  Storage::release_cached(kGpu);  // 26 GiB the later tests should not find cached
}

TEST_F(CudaLayerKernels, ActivationsMatchTheCpu) {
  for (int64_t n : kOddSizes) {
    const Tensor x = randn(Shape{n}, 3.0f), dy = randn(Shape{n});
    const Tensor xg = x.to(kGpu), dyg = dy.to(kGpu);
    Tensor y = empty_cpu(Shape{n}), yg = empty_gpu(Shape{n});
    cpu::relu_forward(x.data<float>(), y.data<float>(), n);
    cuda::relu_forward(xg.data<float>(), yg.data<float>(), n);
    expect_equal<float>(y, yg, at("relu_forward", n));
    cpu::relu_backward(x.data<float>(), dy.data<float>(), y.data<float>(), n);
    cuda::relu_backward(xg.data<float>(), dyg.data<float>(), yg.data<float>(), n);
    expect_equal<float>(y, yg, at("relu_backward", n));

    // erff and expf on the device are within a few ulps of the host's.
    cpu::gelu_forward(x.data<float>(), y.data<float>(), n);
    cuda::gelu_forward(xg.data<float>(), yg.data<float>(), n);
    expect_close(y, yg, 1e-5f, at("gelu_forward", n));
    cpu::gelu_backward(x.data<float>(), dy.data<float>(), y.data<float>(), n);
    cuda::gelu_backward(xg.data<float>(), dyg.data<float>(), yg.data<float>(), n);
    expect_close(y, yg, 1e-5f, at("gelu_backward", n));

    // tanhf is within a few ulps of the host's; backward's 1 - tanh^2 loses digits as |u| grows.
    cpu::gelu_tanh_forward(x.data<float>(), y.data<float>(), n);
    cuda::gelu_tanh_forward(xg.data<float>(), yg.data<float>(), n);
    expect_close(y, yg, 1e-5f, at("gelu_tanh_forward", n));
    cpu::gelu_tanh_backward(x.data<float>(), dy.data<float>(), y.data<float>(), n);
    cuda::gelu_tanh_backward(xg.data<float>(), dyg.data<float>(), yg.data<float>(), n);
    expect_close(y, yg, 1e-4f, at("gelu_tanh_backward", n));
  }
}

TEST_F(CudaLayerKernels, MaxPoolMatchesTheCpuIncludingArgmax) {
  struct Case {
    int64_t planes, h, w, k, stride, pad;
  };
  for (const Case& s : {Case{1, 1, 1, 1, 1, 0}, Case{6, 8, 8, 2, 2, 0}, Case{5, 7, 9, 3, 2, 1}, Case{3, 5, 5, 3, 1, 1},
                        Case{2, 13, 11, 4, 3, 1}}) {
    const int64_t oh = (s.h + 2 * s.pad - s.k) / s.stride + 1, ow = (s.w + 2 * s.pad - s.k) / s.stride + 1;
    const std::string what = "planes=" + std::to_string(s.planes) + " h=" + std::to_string(s.h) +
                             " w=" + std::to_string(s.w) + " k=" + std::to_string(s.k) +
                             " stride=" + std::to_string(s.stride) + " pad=" + std::to_string(s.pad);
    const Tensor x = randn(Shape{s.planes, s.h, s.w}), xg = x.to(kGpu);
    const Shape out{s.planes, oh, ow};
    Tensor y = empty_cpu(out), yg = empty_gpu(out);
    Tensor arg = empty_cpu(out, DType::i32), argg = empty_gpu(out, DType::i32);
    cpu::maxpool2d_forward(x.data<float>(), y.data<float>(), arg.data<int32_t>(), s.planes, s.h, s.w, s.k, s.stride,
                           s.pad, oh, ow);
    cuda::maxpool2d_forward(xg.data<float>(), yg.data<float>(), argg.data<int32_t>(), s.planes, s.h, s.w, s.k, s.stride,
                            s.pad, oh, ow);
    expect_equal<float>(y, yg, "maxpool2d_forward y " + what);
    expect_equal<int32_t>(arg, argg, "maxpool2d_forward argmax " + what);

    const Tensor dy = randn(out), dyg = dy.to(kGpu);
    Tensor dx = Tensor::zeros(x.shape()), dxg = Tensor::zeros(x.shape(), DType::f32, kGpu);
    cpu::maxpool2d_backward(dy.data<float>(), arg.data<int32_t>(), dx.data<float>(), s.planes, s.h * s.w, oh * ow);
    cuda::maxpool2d_backward(dyg.data<float>(), argg.data<int32_t>(), dxg.data<float>(), s.planes, s.h * s.w, oh * ow);
    expect_close(dx, dxg, 1e-6f, "maxpool2d_backward " + what);
  }
}

// layernorm_backward on both devices from the CPU forward's mean and rstd; dgamma and dbeta start
// at dgamma0 and dbeta0 (both sides accumulate). `rel` bounds the column sums (dx: 1e-4).
void expect_layernorm_backward_matches(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                                       const Tensor& rstd, const Tensor& dgamma0, const Tensor& dbeta0, float rel,
                                       const std::string& what) {
  const int64_t rows = x.dim(0), cols = x.dim(1);
  const Tensor dyg = dy.to(kGpu), xg = x.to(kGpu), gammag = gamma.to(kGpu), meang = mean.to(kGpu),
               rstdg = rstd.to(kGpu);
  Tensor dx = Tensor::empty(x.shape()), dxg = Tensor::empty(x.shape(), DType::f32, kGpu);
  Tensor dgamma = dgamma0.clone(), dgammag = dgamma0.to(kGpu), dbeta = dbeta0.clone(), dbetag = dbeta0.to(kGpu);
  cpu::layernorm_backward(dy.data<float>(), x.data<float>(), gamma.data<float>(), mean.data<float>(),
                          rstd.data<float>(), dx.data<float>(), dgamma.data<float>(), dbeta.data<float>(), rows, cols);
  cuda::layernorm_backward(dyg.data<float>(), xg.data<float>(), gammag.data<float>(), meang.data<float>(),
                           rstdg.data<float>(), dxg.data<float>(), dgammag.data<float>(), dbetag.data<float>(), rows,
                           cols);
  expect_close(dx, dxg, 1e-4f, "layernorm_backward dx " + what);
  expect_close(dgamma, dgammag, rel, "layernorm_backward dgamma (accumulating) " + what);
  expect_close(dbeta, dbetag, rel, "layernorm_backward dbeta (accumulating) " + what);
}

TEST_F(CudaLayerKernels, LayerNormMatchesTheCpu) {
  const std::vector<std::pair<int64_t, int64_t> > shapes = {{1, 1}, {1, 7}, {37, 300}, {5, 1025}, {300, 64}};
  for (auto [rows, cols] : shapes) {
    const std::string what = "rows=" + std::to_string(rows) + " cols=" + std::to_string(cols);
    const Tensor x = randn(Shape{rows, cols}, 2.0f), gamma = randn(Shape{cols}), beta = randn(Shape{cols});
    const Tensor xg = x.to(kGpu), gammag = gamma.to(kGpu), betag = beta.to(kGpu);
    Tensor y = empty_cpu(x.shape()), yg = empty_gpu(x.shape());
    Tensor mean = empty_cpu(Shape{rows}), meang = empty_gpu(Shape{rows});
    Tensor rstd = empty_cpu(Shape{rows}), rstdg = empty_gpu(Shape{rows});
    cpu::layernorm_forward(x.data<float>(), gamma.data<float>(), beta.data<float>(), y.data<float>(),
                           mean.data<float>(), rstd.data<float>(), rows, cols, 1e-5f);
    cuda::layernorm_forward(xg.data<float>(), gammag.data<float>(), betag.data<float>(), yg.data<float>(),
                            meang.data<float>(), rstdg.data<float>(), rows, cols, 1e-5f);
    expect_close(mean, meang, 1e-5f, "layernorm_forward mean " + what);
    expect_close(rstd, rstdg, 1e-4f, "layernorm_forward rstd " + what);
    expect_close(y, yg, 1e-4f, "layernorm_forward y " + what);

    expect_layernorm_backward_matches(randn(x.shape()), x, gamma, mean, rstd, randn(Shape{cols}), randn(Shape{cols}),
                                      1e-4f, what);
  }
}

// Tall matrices take column_sum.cuh's two-pass path (row chunks, then the partials per column):
// a bias over many rows and few columns (a classifier's 10), a LayerNorm over N*T rows, a last
// column tile that is partly empty, and shapes where either pass has more blocks than the other.
TEST_F(CudaLayerKernels, ColumnSumsOfTallMatricesMatchTheCpu) {
  const std::vector<std::pair<int64_t, int64_t> > shapes = {{256, 1},     {5000, 10}, {20000, 3},
                                                            {1000, 1100}, {4096, 70}, {129, 33}};
  for (auto [rows, cols] : shapes) {
    const std::string what = "rows=" + std::to_string(rows) + " cols=" + std::to_string(cols);
    const float rel = 2e-4f;  // float sums of up to 20000 terms in different orders
    const Tensor dy = randn(Shape{rows, cols}), dyg = dy.to(kGpu);
    const Tensor db0 = randn(Shape{cols});
    Tensor db = db0.clone(), dbg = db0.to(kGpu);
    cpu::sum_rows(dy.data<float>(), db.data<float>(), rows, cols);
    cuda::sum_rows(dyg.data<float>(), dbg.data<float>(), rows, cols);
    expect_close(db, dbg, rel, "sum_rows (accumulating) " + what);
    Tensor again = db0.to(kGpu);  // the same shape sums in the same order: the same bits
    cuda::sum_rows(dyg.data<float>(), again.data<float>(), rows, cols);
    expect_equal<float>(dbg, again, "sum_rows twice " + what);

    const Tensor x = randn(Shape{rows, cols}, 2.0f), gamma = randn(Shape{cols}), beta = randn(Shape{cols});
    Tensor y = empty_cpu(x.shape()), mean = empty_cpu(Shape{rows}), rstd = empty_cpu(Shape{rows});
    cpu::layernorm_forward(x.data<float>(), gamma.data<float>(), beta.data<float>(), y.data<float>(),
                           mean.data<float>(), rstd.data<float>(), rows, cols, 1e-5f);
    expect_layernorm_backward_matches(dy, x, gamma, mean, rstd, randn(Shape{cols}), randn(Shape{cols}), rel, what);
  }
}

TEST_F(CudaLayerKernels, EmbeddingMatchesTheCpuWithRepeatedIds) {
  const int64_t vocab = 50;
  for (auto [n, dim] : std::vector<std::pair<int64_t, int64_t> >{{1, 1}, {7, 3}, {300, 64}, {1000, 257}}) {
    std::vector<int64_t> id_values(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) id_values[i] = (i * 17 + 3) % vocab;  // repeats once n > vocab
    const Tensor ids = Tensor::from_vector<int64_t>(id_values, Shape{n}), idsg = ids.to(kGpu);
    const Tensor table = randn(Shape{vocab, dim}), tableg = table.to(kGpu);
    Tensor y = empty_cpu(Shape{n, dim}), yg = empty_gpu(Shape{n, dim});
    cpu::embedding_forward(ids.data<int64_t>(), table.data<float>(), y.data<float>(), n, dim);
    cuda::embedding_forward(idsg.data<int64_t>(), tableg.data<float>(), yg.data<float>(), n, dim);
    expect_equal<float>(y, yg, at("embedding_forward", n * dim));

    const Tensor dy = randn(Shape{n, dim}), dyg = dy.to(kGpu);
    Tensor dtable = table.clone(), dtableg = table.to(kGpu);  // accumulates onto nonzero values
    cpu::embedding_backward(ids.data<int64_t>(), dy.data<float>(), dtable.data<float>(), n, dim);
    cuda::embedding_backward(idsg.data<int64_t>(), dyg.data<float>(), dtableg.data<float>(), n, dim);
    expect_close(dtable, dtableg, 1e-5f, at("embedding_backward (accumulating)", n * dim));
  }
}

TEST_F(CudaLayerKernels, DropoutMasksEqualTheCpuBitForBit) {
  const RngStream stream = rng_stream(RngKey{11, 2, static_cast<uint32_t>(RngPurpose::dropout)});
  for (float p : {0.0f, 0.1f, 0.5f, 0.9f})
    for (int64_t n : kOddSizes) {
      const std::string what = at("dropout", n) + " p=" + std::to_string(p);
      const Tensor x = randn(Shape{n}), xg = x.to(kGpu);
      Tensor y = empty_cpu(Shape{n}), yg = empty_gpu(Shape{n});
      Tensor mask = empty_cpu(Shape{n}, DType::u8), maskg = empty_gpu(Shape{n}, DType::u8);
      cpu::dropout_forward(x.data<float>(), y.data<float>(), mask.data<uint8_t>(), n, p, stream, 4099);
      cuda::dropout_forward(xg.data<float>(), yg.data<float>(), maskg.data<uint8_t>(), n, p, stream, 4099);
      EXPECT_EQ(mask.to_vector<uint8_t>(), maskg.to_vector<uint8_t>()) << what << " mask";
      expect_close(y, yg, 1e-6f, what + " y");

      const Tensor dy = randn(Shape{n}), dyg = dy.to(kGpu);
      cpu::dropout_backward(dy.data<float>(), mask.data<uint8_t>(), y.data<float>(), n, p);
      cuda::dropout_backward(dyg.data<float>(), maskg.data<uint8_t>(), yg.data<float>(), n, p);
      expect_close(y, yg, 1e-6f, what + " dx");
    }
}

TEST_F(CudaLayerKernels, SoftmaxCrossEntropyMatchesTheCpu) {
  for (auto [rows, classes] :
       std::vector<std::pair<int64_t, int64_t> >{{1, 1}, {1, 10}, {33, 10}, {4, 1000}, {257, 3}}) {
    const std::string what = "rows=" + std::to_string(rows) + " classes=" + std::to_string(classes);
    std::vector<int64_t> label_values(static_cast<size_t>(rows));
    for (int64_t i = 0; i < rows; ++i) label_values[i] = (i * 7 + 1) % classes;
    const Tensor labels = Tensor::from_vector<int64_t>(label_values, Shape{rows}), labelsg = labels.to(kGpu);
    const Tensor logits = randn(Shape{rows, classes}, 4.0f), logitsg = logits.to(kGpu);
    Tensor probs = empty_cpu(logits.shape()), probsg = empty_gpu(logits.shape());
    Tensor losses = empty_cpu(Shape{rows}), lossesg = empty_gpu(Shape{rows});
    cpu::softmax_xent_forward(logits.data<float>(), labels.data<int64_t>(), probs.data<float>(), losses.data<float>(),
                              rows, classes);
    cuda::softmax_xent_forward(logitsg.data<float>(), labelsg.data<int64_t>(), probsg.data<float>(),
                               lossesg.data<float>(), rows, classes);
    expect_close(probs, probsg, 1e-5f, "softmax_xent_forward probs " + what);
    expect_close(losses, lossesg, 1e-4f, "softmax_xent_forward losses " + what);

    Tensor dlogits = empty_cpu(logits.shape()), dlogitsg = empty_gpu(logits.shape());
    const float scale = 1.0f / static_cast<float>(rows);
    cpu::softmax_xent_backward(probs.data<float>(), labels.data<int64_t>(), dlogits.data<float>(), rows, classes,
                               scale);
    cuda::softmax_xent_backward(probsg.data<float>(), labelsg.data<int64_t>(), dlogitsg.data<float>(), rows, classes,
                                scale);
    expect_close(dlogits, dlogitsg, 1e-5f, "softmax_xent_backward " + what);
  }
}

TEST_F(CudaLayerKernels, MseMatchesTheCpu) {
  for (int64_t n : kOddSizes) {
    const Tensor pred = randn(Shape{n}), target = randn(Shape{n});
    const Tensor predg = pred.to(kGpu), targetg = target.to(kGpu);
    Tensor out = empty_cpu(Shape{n}), outg = empty_gpu(Shape{n});
    cpu::mse_forward(pred.data<float>(), target.data<float>(), out.data<float>(), n);
    cuda::mse_forward(predg.data<float>(), targetg.data<float>(), outg.data<float>(), n);
    expect_close(out, outg, 1e-6f, at("mse_forward", n));
    const float scale = 1.0f / static_cast<float>(n);
    cpu::mse_backward(pred.data<float>(), target.data<float>(), out.data<float>(), n, scale);
    cuda::mse_backward(predg.data<float>(), targetg.data<float>(), outg.data<float>(), n, scale);
    expect_close(out, outg, 1e-6f, at("mse_backward", n));
  }
}

#endif  // DTRAIN_HAVE_CUDA

}  // namespace
}  // namespace dtrain::test
