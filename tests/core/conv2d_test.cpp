#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/cpu/parallel.h"
#include "core/kernels.h"
#include "core/layers/layers.h"
#include "gradcheck.h"

namespace dtrain {
namespace {

using testing::build;
using testing::check_module_gradients;
using testing::test_gen;
using testing::training_ctx;

struct ConvCase {
  int64_t stride, pad;
};

class Conv2dGrad : public ::testing::TestWithParam<ConvCase> {};

TEST_P(Conv2dGrad, GradientsMatchFiniteDifferences) {
  const ConvCase c = GetParam();
  Conv2d conv(2, 3, 3, c.stride, c.pad);
  ParameterArena arena;
  build(conv, arena);
  Generator g = test_gen(10 + c.stride * 2 + c.pad);
  check_module_gradients(conv, arena, Tensor::randn(Shape{2, 2, 5, 6}, 0, 1, g), training_ctx);
}

INSTANTIATE_TEST_SUITE_P(StrideAndPadding, Conv2dGrad,
                         ::testing::Values(ConvCase{1, 0}, ConvCase{1, 1}, ConvCase{2, 0}, ConvCase{2, 1}),
                         [](const auto& info) {
                           return "Stride" + std::to_string(info.param.stride) + "Pad" + std::to_string(info.param.pad);
                         });

// Conv2d -> ReLU [-> MaxPool2d] as Sequential runs it (fused on the CPU) against the same layers
// one by one (ctx.fuse = false): output, input gradient and parameter gradients bitwise equal.
struct FusedCase {
  Shape input;
  int64_t pool_kernel;  // 0: no pool after the ReLU
  const char* name;
};

class Conv2dFused : public ::testing::TestWithParam<FusedCase> {};

std::vector<std::vector<float>> run_block(const FusedCase& c, bool fuse) {
  Sequential net;
  net.emplace<Conv2d>(c.input[1], 16, 3, 1, 1).emplace<ReLU>();
  if (c.pool_kernel > 0) net.emplace<MaxPool2d>(c.pool_kernel);
  ParameterArena arena;
  build(net, arena, 7);
  Generator g = test_gen(3);
  const Tensor x = Tensor::randn(c.input, -0.2f, 1, g);  // shifted: many windows lose to ReLU
  PassContext ctx;
  ctx.fuse = fuse;
  const Tensor y = net.forward(x, ctx);
  const Tensor dx = net.backward(Tensor::randn(y.shape(), 0, 1, g), ctx);
  return {y.to_vector<float>(), dx.to_vector<float>(), arena.grads().to_vector<float>()};
}

TEST_P(Conv2dFused, MatchesTheLayersRunOneByOneBitwise) {
  const auto fused = run_block(GetParam(), true), apart = run_block(GetParam(), false);
  const char* what[] = {"output", "input gradient", "parameter gradients"};
  for (size_t i = 0; i < fused.size(); ++i) {
    ASSERT_EQ(fused[i].size(), apart[i].size()) << what[i];
    EXPECT_EQ(std::memcmp(fused[i].data(), apart[i].data(), fused[i].size() * sizeof(float)), 0) << what[i];
  }
}

// Pool2Short: 6 outputs a row (one masked chunk); Pool2Long: 17 (8 + 8 + 1); Pool2OddHeight: not
// fused with the pool (ReLU only); Pool3: ReLU fused, then the pool layer on its own.
INSTANTIATE_TEST_SUITE_P(Epilogues, Conv2dFused,
                         ::testing::Values(FusedCase{Shape{5, 3, 10, 12}, 2, "Pool2Short"},
                                           FusedCase{Shape{3, 2, 18, 34}, 2, "Pool2Long"},
                                           FusedCase{Shape{2, 3, 9, 8}, 2, "Pool2OddHeight"},
                                           FusedCase{Shape{4, 3, 9, 9}, 3, "Pool3"},
                                           FusedCase{Shape{4, 1, 7, 5}, 0, "NoPool"}),
                         [](const auto& info) { return std::string(info.param.name); });

// The block's passes split over the rank's threads: the same bits at 1, 2 and 3 threads, fused
// or not (inputs large enough for several ranges in every pass). OpenBLAS stays at one thread:
// its threaded GEMM rounds differently by thread count, which is its own business.
TEST(Conv2dThreads, ThreadCountDoesNotChangeTheBits) {
  const FusedCase big{Shape{8, 3, 32, 32}, 2, "Big"};
  for (bool fuse : {true, false}) {
    cpu::set_parallel_threads(1);
    const auto one = run_block(big, fuse);
    for (int threads : {2, 3}) {
      cpu::set_parallel_threads(threads);
      const auto many = run_block(big, fuse);
      for (size_t i = 0; i < one.size(); ++i)
        EXPECT_EQ(std::memcmp(one[i].data(), many[i].data(), one[i].size() * sizeof(float)), 0)
            << "fuse " << fuse << ", " << threads << " threads, result " << i;
    }
  }
  cpu::set_parallel_threads(1);
}

TEST(Conv2d, ForwardMatchesDirectConvolution) {
  const int64_t n = 2, c = 3, h = 7, w = 5, oc = 4, k = 3, s = 2, p = 1;
  Conv2d conv(c, oc, k, s, p);
  ParameterArena arena;
  build(conv, arena);
  Generator g = test_gen(4);
  Tensor x = Tensor::randn(Shape{n, c, h, w}, 0, 1, g);
  PassContext ctx;
  Tensor y = conv.forward(x, ctx);
  const int64_t oh = (h + 2 * p - k) / s + 1, ow = (w + 2 * p - k) / s + 1;
  ASSERT_EQ(y.shape(), (Shape{n, oc, oh, ow}));
  auto xv = x.to_vector<float>(), wv = conv.weight()->value.to_vector<float>(),
       bv = conv.bias()->value.to_vector<float>(), yv = y.to_vector<float>();
  for (int64_t ni = 0; ni < n; ++ni)
    for (int64_t o = 0; o < oc; ++o)
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          double ref = bv[o];
          for (int64_t ci = 0; ci < c; ++ci)
            for (int64_t ki = 0; ki < k; ++ki)
              for (int64_t kj = 0; kj < k; ++kj) {
                const int64_t iy = oy * s - p + ki, ix = ox * s - p + kj;
                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                ref +=
                    static_cast<double>(wv[((o * c + ci) * k + ki) * k + kj]) * xv[((ni * c + ci) * h + iy) * w + ix];
              }
          EXPECT_NEAR(yv[((ni * oc + o) * oh + oy) * ow + ox], ref, 1e-5);
        }
}

// <col2im(cols), x> == <cols, im2col(x)>: col2im is the adjoint of im2col.
TEST(Conv2d, Col2imIsTheAdjointOfIm2col) {
  const int64_t n = 2, c = 2, h = 5, w = 4, k = 3, s = 2, p = 1, oh = 3, ow = 2;
  Generator g = test_gen(5);
  Tensor x = Tensor::randn(Shape{n, c, h, w}, 0, 1, g);
  Tensor cols_r = Tensor::randn(Shape{c * k * k, n * oh * ow}, 0, 1, g);
  Tensor cols = Tensor::empty(cols_r.shape());
  cpu::im2col(x.data<float>(), cols.data<float>(), n, c, h, w, k, k, s, p, oh, ow);
  Tensor back = Tensor::zeros(x.shape());
  cpu::col2im(cols_r.data<float>(), back.data<float>(), n, c, h, w, k, k, s, p, oh, ow);
  EXPECT_NEAR(testing::dot(back, x.to_vector<float>()), testing::dot(cols, cols_r.to_vector<float>()), 1e-4);
}

// Planes h x w, kernel k, stride s, padding p: the stride-1 "same size" fast path (kernel 1, 3, 5,
// and a kernel wider than the plane) and the general path.
struct Geometry {
  int64_t h, w, k, s, p;
  int64_t out(int64_t in) const { return (in + 2 * p - k) / s + 1; }
};
constexpr Geometry kGeometries[] = {{5, 6, 3, 1, 1}, {4, 4, 5, 1, 2}, {3, 2, 5, 1, 2},
                                    {4, 3, 1, 1, 0}, {5, 4, 3, 2, 1}, {6, 6, 3, 1, 0}};

// im2col against its definition, for the stride-1 "same size" fast path (kernel 1, 3, 5, and a
// kernel wider than the plane) and the general path.
TEST(Conv2d, Im2colMatchesItsDefinition) {
  for (const Geometry& t : kGeometries) {
    const int64_t n = 2, c = 3, oh = t.out(t.h), ow = t.out(t.w);
    Generator g = test_gen(9);
    const std::vector<float> x = Tensor::randn(Shape{n, c, t.h, t.w}, 0, 1, g).to_vector<float>();
    std::vector<float> cols(static_cast<size_t>(c * t.k * t.k * n * oh * ow), -7.0f);
    cpu::im2col(x.data(), cols.data(), n, c, t.h, t.w, t.k, t.k, t.s, t.p, oh, ow);
    for (int64_t ci = 0; ci < c; ++ci)
      for (int64_t ki = 0; ki < t.k; ++ki)
        for (int64_t kj = 0; kj < t.k; ++kj)
          for (int64_t ni = 0; ni < n; ++ni)
            for (int64_t oy = 0; oy < oh; ++oy)
              for (int64_t ox = 0; ox < ow; ++ox) {
                const int64_t iy = oy * t.s - t.p + ki, ix = ox * t.s - t.p + kj;
                const float want =
                    iy < 0 || iy >= t.h || ix < 0 || ix >= t.w ? 0.0f : x[((ni * c + ci) * t.h + iy) * t.w + ix];
                const int64_t r = (ci * t.k + ki) * t.k + kj, col = (ni * oh + oy) * ow + ox;
                ASSERT_EQ(cols[r * n * oh * ow + col], want) << "h " << t.h << " w " << t.w << " k " << t.k << " s "
                                                             << t.s << " p " << t.p << " row " << r << " col " << col;
              }
  }
}

// col2im against its definition (each input element adds its taps in (ki, kj) order, the order
// both paths keep), bitwise: the same-size flat path with its column masks and the general path.
TEST(Conv2d, Col2imMatchesItsDefinitionBitwise) {
  for (const Geometry& t : kGeometries) {
    const int64_t n = 2, c = 3, oh = t.out(t.h), ow = t.out(t.w);
    Generator g = test_gen(11);
    const std::vector<float> cols = Tensor::randn(Shape{c * t.k * t.k, n * oh * ow}, 0, 1, g).to_vector<float>();
    std::vector<float> got(static_cast<size_t>(n * c * t.h * t.w), 0.0f), want = got;
    cpu::col2im(cols.data(), got.data(), n, c, t.h, t.w, t.k, t.k, t.s, t.p, oh, ow);
    for (int64_t ni = 0; ni < n; ++ni)
      for (int64_t ci = 0; ci < c; ++ci)
        for (int64_t ki = 0; ki < t.k; ++ki)
          for (int64_t kj = 0; kj < t.k; ++kj)
            for (int64_t oy = 0; oy < oh; ++oy)
              for (int64_t ox = 0; ox < ow; ++ox) {
                const int64_t iy = oy * t.s - t.p + ki, ix = ox * t.s - t.p + kj;
                if (iy < 0 || iy >= t.h || ix < 0 || ix >= t.w) continue;
                const int64_t r = (ci * t.k + ki) * t.k + kj, col = (ni * oh + oy) * ow + ox;
                want[static_cast<size_t>(((ni * c + ci) * t.h + iy) * t.w + ix)] += cols[r * n * oh * ow + col];
              }
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
        << "h " << t.h << " w " << t.w << " k " << t.k << " s " << t.s << " p " << t.p;
  }
}

TEST(Conv2d, WrongChannelsNameTheLayerAndShape) {
  Conv2d conv(1, 32, 3, 1, 1);
  ParameterArena arena;
  build(conv, arena);
  PassContext ctx;
  try {
    conv.forward(Tensor::zeros(Shape{2, 3, 28, 28}), ctx);
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "Conv2d(1->32, k3 s1 p1): input shape [2, 3, 28, 28], expected [N, 1, H, W]");
  }
  EXPECT_THROW(conv.output_shape(Shape{2, 1, 28}), Error);
}

}  // namespace
}  // namespace dtrain
