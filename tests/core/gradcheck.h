#pragma once
// Finite-difference gradient checks for layers and losses (CPU, f32).
// The scalar checked is L = sum(y * r) for a fixed random r, so dL/dy = r; each input and
// parameter element is perturbed by +-h and the central difference (L+ - L-) / 2h (summed in
// double) is compared with the analytic gradient from backward.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/layers/layers.h"

namespace dtrain::testing {

struct GradCheckOptions {
  float h = 1e-2f;
  double atol = 2e-3, rtol = 2e-2;
  bool check_input = true;  // false for integer inputs (Embedding ids)
};

inline Generator test_gen(uint64_t seed) { return Generator(RngKey{seed, 0, static_cast<uint32_t>(RngPurpose::test)}); }

// Registers `m`'s parameters in `arena` and allocates it on the CPU.
inline void build(Module& m, ParameterArena& arena, uint64_t seed = 1) {
  m.register_parameters(arena, "");
  Generator gen(RngKey{seed, 0, static_cast<uint32_t>(RngPurpose::init)});
  arena.allocate(Device::cpu(), gen);
}

inline double dot(const Tensor& a, const std::vector<float>& r) {
  const std::vector<float> v = a.to_vector<float>();
  double s = 0;
  for (size_t i = 0; i < v.size(); ++i) s += static_cast<double>(v[i]) * r[i];
  return s;
}

inline void expect_close(const std::vector<float>& analytic, const std::vector<double>& numeric,
                         const GradCheckOptions& o, const std::string& what) {
  ASSERT_EQ(analytic.size(), numeric.size()) << what;
  int reported = 0;
  for (size_t i = 0; i < analytic.size(); ++i) {
    const double a = analytic[i], n = numeric[i];
    const double tol = o.atol + o.rtol * std::max(std::abs(a), std::abs(n));
    if (std::abs(a - n) > tol && reported++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: analytic " << a << ", finite difference " << n;
  }
}

// Central differences of f over the elements of t (perturbed in place, restored after).
inline std::vector<double> numeric_grad(Tensor& t, const std::function<double()>& f, float h) {
  float* p = t.data<float>();
  std::vector<double> g(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) {
    const float saved = p[i];
    p[i] = saved + h;
    const double plus = f();
    p[i] = saved - h;
    const double minus = f();
    p[i] = saved;
    g[static_cast<size_t>(i)] = (plus - minus) / (2.0 * static_cast<double>(h));
  }
  return g;
}

// Checks dx and every parameter gradient of `m` (already built) at input x.
// make_ctx gives a fresh context per pass (Dropout resets its generator there for a fixed mask).
inline void check_module_gradients(Module& m, ParameterArena& arena, Tensor x,
                                   const std::function<PassContext()>& make_ctx, GradCheckOptions o = {}) {
  PassContext ctx = make_ctx();
  Tensor y = m.forward(x, ctx);
  Generator rg = test_gen(99);
  const std::vector<float> r = Tensor::randn(y.shape(), 0, 1, rg).to_vector<float>();
  if (arena.allocated()) arena.zero_grad();
  Tensor dx = m.backward(Tensor::from_vector(r, y.shape()), ctx);

  const auto loss = [&] {
    PassContext c = make_ctx();
    return dot(m.forward(x, c), r);
  };
  if (o.check_input) {
    ASSERT_TRUE(dx.defined()) << m.type();
    ASSERT_EQ(dx.shape(), x.shape()) << m.type();
    expect_close(dx.to_vector<float>(), numeric_grad(x, loss, o.h), o, m.type() + " dx");
  }
  for (Parameter* p : m.parameters()) {
    const std::vector<float> analytic = p->grad.to_vector<float>();
    expect_close(analytic, numeric_grad(p->value, loss, o.h), o, m.type() + " d" + p->name);
  }
}

inline PassContext training_ctx() { return PassContext{}; }

}  // namespace dtrain::testing
