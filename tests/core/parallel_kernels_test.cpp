// The CPU kernels split by cpu::parallel_for (core/cpu/parallel.h) give the same bytes at 1, 2 and 3
// threads, on inputs of several grains: elementwise passes, fills, conversions, reductions, losses,
// activations, layer norm, attention, embedding and dropout.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/cpu/parallel.h"
#include "core/kernels.h"

namespace dtrain::cpu {
namespace {

// Enough elements for three ranges of at least kElementGrain, and not a multiple of anything.
constexpr int64_t kN = 5 * kElementGrain + 123;
// Rows of an odd width: with kRows * kCols over several grains, rows and columns both split.
constexpr int64_t kRows = 2000, kCols = 101;

std::vector<float> random_floats(int64_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, stddev);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = d(g);
  return x;
}

std::vector<int64_t> random_ids(int64_t n, int64_t below, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_int_distribution<int64_t> d(0, below - 1);
  std::vector<int64_t> ids(static_cast<size_t>(n));
  for (int64_t& v : ids) v = d(g);
  return ids;
}

template <class T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// Runs `outputs` (which returns the bytes of each output of a kernel run) at 1 thread, then at 2
// and 3, and expects the same bytes; leaves the thread count at 1.
void expect_same_at_any_thread_count(const std::function<std::vector<std::string>()>& outputs) {
  struct BackToOneThread {
    ~BackToOneThread() { set_blas_threads(1); }
  } back_to_one_thread;  // also when an assertion returns early
  set_blas_threads(1);
  const std::vector<std::string> want = outputs();
  for (int threads : {2, 3}) {
    set_blas_threads(threads);
    const std::vector<std::string> got = outputs();
    ASSERT_EQ(got.size(), want.size());
    for (size_t k = 0; k < want.size(); ++k) {
      ASSERT_EQ(got[k].size(), want[k].size()) << "output " << k << " at " << threads << " threads";
      EXPECT_EQ(std::memcmp(got[k].data(), want[k].data(), want[k].size()), 0)
          << "output " << k << " differs at " << threads << " threads";
    }
  }
}

TEST(ParallelKernels, FillsAreTheSameAtAnyThreadCount) {
  const RngStream stream = rng_stream(RngKey{7, 0, static_cast<uint32_t>(RngPurpose::test)});
  expect_same_at_any_thread_count([&] {
    std::vector<float> a(kN), u(kN), n(kN);
    fill(a.data(), kN, 0.25f);
    uniform_fill(u.data(), kN, -2.0f, 3.0f, stream, 11);
    normal_fill(n.data(), kN, 0.5f, 2.0f, stream, 12345);
    return std::vector<std::string>{bytes_of(a), bytes_of(u), bytes_of(n)};
  });
}

TEST(ParallelKernels, ElementwiseMapsAreTheSameAtAnyThreadCount) {
  const std::vector<float> a = random_floats(kN, 1), b = random_floats(kN, 2);
  expect_same_at_any_thread_count([&] {
    std::vector<float> s = a, ax = b, sum(kN), prod(kN), aff(kN), erf(kN);
    scale(s.data(), kN, 0.3f);
    axpy(-1.7f, a.data(), ax.data(), kN);
    add(a.data(), b.data(), sum.data(), kN);
    mul(a.data(), b.data(), prod.data(), kN);
    affine(a.data(), aff.data(), kN, 1.5f, -0.25f);
    erf_forward(a.data(), erf.data(), kN);
    return std::vector<std::string>{bytes_of(s),    bytes_of(ax),  bytes_of(sum),
                                    bytes_of(prod), bytes_of(aff), bytes_of(erf)};
  });
}

TEST(ParallelKernels, ConversionsAreTheSameAtAnyThreadCount) {
  const std::vector<float> x = random_floats(kN, 3);
  std::vector<uint8_t> pixels(kN);
  for (int64_t i = 0; i < kN; ++i) pixels[i] = static_cast<uint8_t>(i * 37 % 256);
  expect_same_at_any_thread_count([&] {
    std::vector<uint16_t> half(kN);
    std::vector<float> back(kN), normalised(kN);
    f32_to_bf16(x.data(), half.data(), kN);
    bf16_to_f32(half.data(), back.data(), kN);
    u8_to_f32(pixels.data(), normalised.data(), kN, 1.0f / 255, -0.5f);
    return std::vector<std::string>{bytes_of(half), bytes_of(back), bytes_of(normalised)};
  });
}

TEST(ParallelKernels, ReductionsAreTheSameAtAnyThreadCount) {
  // Values of 1e-10 to 1e20 and their negations in another order: the sum is all rounding (even in
  // double), so its bits show any change in the order of the additions.
  std::vector<float> x = random_floats(kRows * kCols, 4);
  const size_t half = x.size() / 2;
  for (size_t i = 0; i < half; ++i) {
    x[i] *= std::pow(10.0f, static_cast<float>(i % 31) - 10.0f);
    x[half + (i * 7919) % half] = -x[i];
  }
  expect_same_at_any_thread_count([&] {
    std::vector<float> out(2);
    std::vector<int64_t> best(kRows);
    sum(x.data(), kRows * kCols, &out[0]);
    sum_squares(x.data(), kRows * kCols, &out[1]);
    argmax_rows(x.data(), kRows, kCols, best.data());
    return std::vector<std::string>{bytes_of(out), bytes_of(best)};
  });
}

// The blocked sum (4 double lanes per block) stays within f32 rounding of one left-to-right sum
// in double.
TEST(ParallelKernels, SumsMatchALeftToRightSumInDouble) {
  for (int64_t n : {int64_t{1}, int64_t{8191}, int64_t{8192}, kN}) {
    const std::vector<float> x = random_floats(n, 5, 10.0f);
    double want = 0, want_sq = 0;
    for (float v : x) {
      want += v;
      want_sq += static_cast<double>(v) * v;
    }
    float got = 0, got_sq = 0;
    sum(x.data(), n, &got);
    sum_squares(x.data(), n, &got_sq);
    EXPECT_NEAR(got, want, 1e-6 * std::abs(want) + 1e-3) << n;
    EXPECT_NEAR(got_sq, want_sq, 1e-6 * want_sq) << n;
  }
}

TEST(ParallelKernels, LossesAreTheSameAtAnyThreadCount) {
  const std::vector<float> logits = random_floats(kRows * kCols, 6, 3.0f), target = random_floats(kN, 7);
  const std::vector<int64_t> labels = random_ids(kRows, kCols, 8);
  const std::vector<float> pred = random_floats(kN, 9);
  expect_same_at_any_thread_count([&] {
    std::vector<float> soft(kRows * kCols), probs(kRows * kCols), losses(kRows), dlogits(kRows * kCols);
    std::vector<float> sq(kN), dpred(kN);
    softmax_rows(logits.data(), soft.data(), kRows, kCols);
    softmax_xent_forward(logits.data(), labels.data(), probs.data(), losses.data(), kRows, kCols);
    softmax_xent_backward(probs.data(), labels.data(), dlogits.data(), kRows, kCols, 0.01f);
    mse_forward(pred.data(), target.data(), sq.data(), kN);
    mse_backward(pred.data(), target.data(), dpred.data(), kN, 0.5f);
    return std::vector<std::string>{bytes_of(soft),    bytes_of(probs), bytes_of(losses),
                                    bytes_of(dlogits), bytes_of(sq),    bytes_of(dpred)};
  });
}

TEST(ParallelKernels, GeluIsTheSameAtAnyThreadCount) {
  const std::vector<float> x = random_floats(kN, 10, 3.0f), dy = random_floats(kN, 11);
  expect_same_at_any_thread_count([&] {
    std::vector<float> y(kN), dx(kN), yt(kN), dxt(kN);
    gelu_forward(x.data(), y.data(), kN);
    gelu_backward(x.data(), dy.data(), dx.data(), kN);
    gelu_tanh_forward(x.data(), yt.data(), kN);
    gelu_tanh_backward(x.data(), dy.data(), dxt.data(), kN);
    return std::vector<std::string>{bytes_of(y), bytes_of(dx), bytes_of(yt), bytes_of(dxt)};
  });
}

TEST(ParallelKernels, LayerNormIsTheSameAtAnyThreadCount) {
  const std::vector<float> x = random_floats(kRows * kCols, 12, 2.0f), dy = random_floats(kRows * kCols, 13);
  const std::vector<float> gamma = random_floats(kCols, 14), beta = random_floats(kCols, 15);
  const std::vector<float> grads_before = random_floats(kCols, 16);
  expect_same_at_any_thread_count([&] {
    std::vector<float> y(kRows * kCols), mean(kRows), rstd(kRows), dx(kRows * kCols);
    std::vector<float> dgamma = grads_before, dbeta = grads_before;  // the parameter gradients accumulate
    layernorm_forward(x.data(), gamma.data(), beta.data(), y.data(), mean.data(), rstd.data(), kRows, kCols, 1e-5f);
    layernorm_backward(dy.data(), x.data(), gamma.data(), mean.data(), rstd.data(), dx.data(), dgamma.data(),
                       dbeta.data(), kRows, kCols);
    return std::vector<std::string>{bytes_of(y),  bytes_of(mean),   bytes_of(rstd),
                                    bytes_of(dx), bytes_of(dgamma), bytes_of(dbeta)};
  });
}

TEST(ParallelKernels, AttentionIsTheSameAtAnyThreadCount) {
  constexpr int64_t b = 4, t = 110, heads = 3, c = heads * 8;  // 12 (batch, head) pairs of t * t scores
  const std::vector<float> qkv = random_floats(b * t * 3 * c, 17), dout = random_floats(b * t * c, 18);
  expect_same_at_any_thread_count([&] {
    std::vector<float> out(b * t * c), att(b * heads * t * t), dqkv(b * t * 3 * c), scratch(b * heads * t * t);
    attention_forward(qkv.data(), out.data(), att.data(), b, t, c, heads);
    attention_backward(dout.data(), qkv.data(), att.data(), dqkv.data(), scratch.data(), b, t, c, heads);
    return std::vector<std::string>{bytes_of(out), bytes_of(att), bytes_of(dqkv)};
  });
}

TEST(ParallelKernels, EmbeddingIsTheSameAtAnyThreadCount) {
  constexpr int64_t vocab = 50;  // far fewer rows than ids: each table row accumulates many times
  const std::vector<float> table = random_floats(vocab * kCols, 19), dy = random_floats(kRows * kCols, 20);
  const std::vector<float> grads_before = random_floats(vocab * kCols, 21);
  const std::vector<int64_t> ids = random_ids(kRows, vocab, 22);
  expect_same_at_any_thread_count([&] {
    std::vector<float> y(kRows * kCols), dtable = grads_before;
    embedding_forward(ids.data(), table.data(), y.data(), kRows, kCols);
    embedding_backward(ids.data(), dy.data(), dtable.data(), kRows, kCols);
    return std::vector<std::string>{bytes_of(y), bytes_of(dtable)};
  });
}

TEST(ParallelKernels, DropoutIsTheSameAtAnyThreadCount) {
  const RngStream stream = rng_stream(RngKey{3, 1, static_cast<uint32_t>(RngPurpose::dropout)});
  const std::vector<float> x = random_floats(kN, 23), dy = random_floats(kN, 24);
  expect_same_at_any_thread_count([&] {
    std::vector<float> y(kN), dx(kN);
    std::vector<uint8_t> mask(kN);
    dropout_forward(x.data(), y.data(), mask.data(), kN, 0.3f, stream, 99);
    dropout_backward(dy.data(), mask.data(), dx.data(), kN, 0.3f);
    return std::vector<std::string>{bytes_of(y), bytes_of(mask), bytes_of(dx)};
  });
}

}  // namespace
}  // namespace dtrain::cpu
