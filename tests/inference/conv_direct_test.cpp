#include <gtest/gtest.h>

#include <vector>

#include "core/gradcheck.h"
#include "core/kernels.h"
#include "core/tensor.h"
#include "inference/conv_direct.h"

namespace dtrain {
namespace {

using testing::test_gen;

// The ONNX engine's direct convolution against its definition: kernel 3 (its own path) with two
// vectors of output channels and balanced blocks along a row, kernel 5 and 1 (the general path),
// one vector of output channels, rows longer than a block.
TEST(ConvDirect, MatchesItsDefinition) {
  if (!inference::conv2d_direct_available(16, 1))
    GTEST_SKIP() << "no AVX-512 on this CPU: the direct convolution is not used";
  struct Case {
    int64_t c, h, w, oc, k, p;
  };
  for (const Case& t : {Case{32, 14, 14, 64, 3, 1}, Case{8, 5, 20, 48, 3, 0}, Case{4, 9, 13, 16, 5, 2},
                        Case{16, 6, 7, 32, 1, 0}, Case{3, 28, 28, 32, 3, 1}}) {
    const int64_t oh = t.h + 2 * t.p - t.k + 1, ow = t.w + 2 * t.p - t.k + 1;
    Generator g = test_gen(10);
    const std::vector<float> x = Tensor::randn(Shape{t.c, t.h, t.w}, 0, 1, g).to_vector<float>();
    const std::vector<float> w = Tensor::randn(Shape{t.oc, t.c, t.k, t.k}, 0, 1, g).to_vector<float>();
    std::vector<float> wpack(w.size()), y(static_cast<size_t>(t.oc * oh * ow), -7.0f);
    std::vector<float> padded(static_cast<size_t>(t.c * (t.h + 2 * t.p) * (t.w + 2 * t.p)), -7.0f);
    inference::conv2d_direct_pack(w.data(), wpack.data(), t.oc, t.c, t.k);
    inference::conv2d_direct(x.data(), wpack.data(), y.data(), padded.data(), t.c, t.h, t.w, t.oc, t.k, t.p);
    for (int64_t m = 0; m < t.oc; ++m)
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          double want = 0;
          for (int64_t ci = 0; ci < t.c; ++ci)
            for (int64_t ki = 0; ki < t.k; ++ki)
              for (int64_t kj = 0; kj < t.k; ++kj) {
                const int64_t iy = oy - t.p + ki, ix = ox - t.p + kj;
                if (iy >= 0 && iy < t.h && ix >= 0 && ix < t.w)
                  want += double{w[((m * t.c + ci) * t.k + ki) * t.k + kj]} * x[(ci * t.h + iy) * t.w + ix];
              }
          ASSERT_NEAR(y[(m * oh + oy) * ow + ox], want, 1e-4)
              << "c " << t.c << " h " << t.h << " w " << t.w << " oc " << t.oc << " k " << t.k << " p " << t.p << " at "
              << m << "," << oy << "," << ox;
        }
  }
}

}  // namespace
}  // namespace dtrain
