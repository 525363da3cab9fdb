#include <gtest/gtest.h>

#include "core/ops.h"
#include "core/tensor.h"

namespace dtrain {
namespace {

TEST(Tensor, ViewsShareStorage) {
  Tensor t = Tensor::zeros(Shape{4, 3});
  Tensor row = t.slice(1, 2);
  row.fill(2.0f);
  auto v = t.to_vector<float>();
  EXPECT_EQ(v[2], 0.0f);
  EXPECT_EQ(v[3], 2.0f);
  EXPECT_EQ(v[5], 2.0f);
  EXPECT_EQ(v[6], 0.0f);
  EXPECT_EQ(t.view(Shape{-1}).shape(), (Shape{12}));
}

TEST(Tensor, StridedViewsReadTheirWindowAndStayInsideTheStorage) {
  Tensor t = Tensor::zeros(Shape{2, 5, 3});  // 2 blocks of room for 5 positions of 3
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = static_cast<float>(i);
  const Tensor w = t.as_strided(Shape{2, 2, 3}, Shape{15, 3, 1}, 0);  // the first 2 positions of each block
  EXPECT_FALSE(w.is_contiguous());
  EXPECT_EQ(w.storage(), t.storage());
  EXPECT_EQ(w.data<float>()[1 * w.strides()[0] + 1 * w.strides()[1] + 2], 15 + 3 + 2);
  const Tensor second = w.slice(1, 2);
  EXPECT_EQ(second.strides(), w.strides()) << "a slice keeps its tensor's strides";
  EXPECT_EQ(second.data<float>()[second.strides()[1]], 18);
  EXPECT_THROW((void)w.to_vector<float>(), Error) << "contiguous-only operations refuse it";
  EXPECT_THROW((void)t.as_strided(Shape{2, 6, 3}, Shape{15, 3, 1}, 0), Error) << "reaches past the storage";
  EXPECT_NO_THROW((void)t.as_strided(Shape{2, 5, 3}, Shape{15, 3, 1}, 0));
  EXPECT_NO_THROW((void)t.as_strided(Shape{0, 9, 3}, Shape{15, 3, 1}, 40)) << "an empty view reaches nothing";
}

TEST(Tensor, RandomStreamsDependOnlyOnKeyAndOffset) {
  Generator a(RngKey{7, 0, 1}), b(RngKey{7, 0, 1}), c(RngKey{7, 1, 1});
  Tensor x = Tensor::randn(Shape{1000}, 0, 1, a);
  Tensor y = Tensor::randn(Shape{1000}, 0, 1, b);
  Tensor z = Tensor::randn(Shape{1000}, 0, 1, c);
  EXPECT_EQ(x.to_vector<float>(), y.to_vector<float>());
  EXPECT_NE(x.to_vector<float>(), z.to_vector<float>());
  const float mean = ops::sum(x) / 1000, var = ops::sum_squares(x) / 1000 - mean * mean;
  EXPECT_NEAR(mean, 0.0f, 0.1f);
  EXPECT_NEAR(var, 1.0f, 0.15f);
  // Drawing 600 then 400 equals drawing 1000 at once.
  Generator d(RngKey{7, 0, 1});
  Tensor first = Tensor::randn(Shape{600}, 0, 1, d), rest = Tensor::randn(Shape{400}, 0, 1, d);
  auto all = x.to_vector<float>();
  EXPECT_EQ(first.to_vector<float>(), std::vector<float>(all.begin(), all.begin() + 600));
  EXPECT_EQ(rest.to_vector<float>(), std::vector<float>(all.begin() + 600, all.end()));
}

TEST(Tensor, GemmMatchesNaiveProduct) {
  Generator g(RngKey{1, 0, 6});
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const int64_t m = 5, n = 7, k = 3;
      Tensor a = Tensor::randn(ta ? Shape{k, m} : Shape{m, k}, 0, 1, g);
      Tensor b = Tensor::randn(tb ? Shape{n, k} : Shape{k, n}, 0, 1, g);
      Tensor c = ops::matmul(a, b, ta, tb);
      auto av = a.to_vector<float>(), bv = b.to_vector<float>(), cv = c.to_vector<float>();
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (int64_t p = 0; p < k; ++p) s += av[ta ? p * m + i : i * k + p] * bv[tb ? j * k + p : p * n + j];
          EXPECT_NEAR(cv[i * n + j], s, 1e-5) << "ta=" << ta << " tb=" << tb;
        }
    }
}

TEST(Tensor, Bf16RoundTripKeepsEightBits) {
  Tensor x = Tensor::from_vector<float>({1.0f, -2.5f, 3.14159f, 1e-3f}, Shape{4});
  Tensor y = ops::to_dtype(ops::to_dtype(x, DType::bf16), DType::f32);
  auto v = y.to_vector<float>();
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], -2.5f);
  EXPECT_NEAR(v[2], 3.14159f, 0.02f);
}

TEST(Tensor, ErrorsNameTheProblem) {
  Tensor a = Tensor::zeros(Shape{2, 3}), b = Tensor::zeros(Shape{4, 5});
  try {
    ops::matmul(a, b);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gemm"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Device::parse("gpu7"), Error);
  EXPECT_THROW(a.view(Shape{7}), Error);
}

}  // namespace
}  // namespace dtrain
