#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "core/cpu/parallel.h"
#include "core/kernels.h"
#include "core/ops.h"
#include "optim/optimizer.h"

namespace dtrain {
namespace {

// An arena with two parameters "a" [2] and "b" [1], values {1, -2} and {0.5}.
struct Fixture {
  ParameterArena arena;
  Fixture() {
    arena.add("a", Shape{2}, [](Tensor& v, Generator&) { v.copy_from(Tensor::from_vector<float>({1, -2}, Shape{2})); });
    arena.add("b", Shape{1}, [](Tensor& v, Generator&) { v.copy_from(Tensor::from_vector<float>({0.5f}, Shape{1})); });
    Generator g;
    arena.allocate(Device::cpu(), g);
  }
  // Sets the gradient of every element to grads_at(step) (below).
  void set_grads(int step);
};

// The same per-element math written out in double precision, straight from the definitions.
struct Reference {
  std::vector<double> p, s1, s2;
  explicit Reference(const std::vector<float>& v) : p(v.begin(), v.end()), s1(v.size()), s2(v.size()) {}
};

void expect_near(const std::vector<float>& got, const std::vector<double>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], 1e-5 * (1 + std::abs(want[i]))) << what << " " << i;
}

// The step-dependent gradient both the optimizer and the reference see (computed in f32).
std::vector<double> grads_at(int step, size_t n) {
  std::vector<double> g(n);
  for (size_t i = 0; i < n; ++i) g[i] = 0.3f * static_cast<float>(i + 1) - 0.2f * step;
  return g;
}

void Fixture::set_grads(int step) {
  const std::vector<double> g = grads_at(step, static_cast<size_t>(arena.numel()));
  arena.grads().copy_from(Tensor::from_vector(std::vector<float>(g.begin(), g.end()), Shape{arena.numel()}));
}

TEST(Optimizer, SgdMomentumAndNesterovMatchTheDefinition) {
  for (bool nesterov : {false, true}) {
    Fixture f;
    OptimizerConfig c;
    c.type = "sgd";
    c.lr = 0.1f;
    c.momentum = 0.9f;
    c.nesterov = nesterov;
    c.weight_decay = 0.01f;
    auto opt = make_optimizer(c, f.arena);
    Reference r(f.arena.values().to_vector<float>());
    for (int step = 0; step < 4; ++step) {
      f.set_grads(step);
      opt->step(f.arena, c.lr);
      auto g = grads_at(step, r.p.size());
      for (size_t i = 0; i < r.p.size(); ++i) {
        const double d = g[i] + 0.01 * r.p[i];
        r.s1[i] = 0.9 * r.s1[i] + d;
        r.p[i] -= 0.1 * (nesterov ? d + 0.9 * r.s1[i] : r.s1[i]);
      }
    }
    expect_near(f.arena.values().to_vector<float>(), r.p, nesterov ? "nesterov" : "momentum");
    EXPECT_EQ(opt->steps(), 4);
  }
}

TEST(Optimizer, AdamAndAdamWMatchTheDefinition) {
  for (bool decoupled : {false, true}) {
    Fixture f;
    OptimizerConfig c;
    c.type = decoupled ? "adamw" : "adam";
    c.lr = 0.01f;
    c.weight_decay = 0.1f;
    auto opt = make_optimizer(c, f.arena);
    Reference r(f.arena.values().to_vector<float>());
    for (int step = 0; step < 5; ++step) {
      f.set_grads(step);
      opt->step(f.arena, c.lr);
      auto g = grads_at(step, r.p.size());
      const double b1 = 0.9, b2 = 0.999, t = step + 1;
      for (size_t i = 0; i < r.p.size(); ++i) {
        double d = g[i];
        if (decoupled)
          r.p[i] *= 1 - 0.01 * 0.1;
        else
          d += 0.1 * r.p[i];
        r.s1[i] = b1 * r.s1[i] + (1 - b1) * d;
        r.s2[i] = b2 * r.s2[i] + (1 - b2) * d * d;
        const double mhat = r.s1[i] / (1 - std::pow(b1, t)), vhat = r.s2[i] / (1 - std::pow(b2, t));
        r.p[i] -= 0.01 * mhat / (std::sqrt(vhat) + 1e-8);
      }
    }
    expect_near(f.arena.values().to_vector<float>(), r.p, c.type.c_str());
  }
}

TEST(Optimizer, RmspropWithMomentumMatchesTheDefinition) {
  Fixture f;
  OptimizerConfig c;
  c.type = "rmsprop";
  c.lr = 0.01f;
  c.momentum = 0.5f;
  c.alpha = 0.9f;
  c.eps = 1e-6f;
  auto opt = make_optimizer(c, f.arena);
  Reference r(f.arena.values().to_vector<float>());
  for (int step = 0; step < 4; ++step) {
    f.set_grads(step);
    opt->step(f.arena, c.lr);
    auto g = grads_at(step, r.p.size());
    for (size_t i = 0; i < r.p.size(); ++i) {
      r.s1[i] = 0.9 * r.s1[i] + 0.1 * g[i] * g[i];
      r.s2[i] = 0.5 * r.s2[i] + g[i] / (std::sqrt(r.s1[i]) + 1e-6);
      r.p[i] -= 0.01 * r.s2[i];
    }
  }
  expect_near(f.arena.values().to_vector<float>(), r.p, "rmsprop");
  ASSERT_EQ(opt->slots().size(), 2u);
  EXPECT_EQ(opt->slots()[0].first, "square_avg");
}

TEST(Optimizer, ClipGradNormScalesToTheLimit) {
  Fixture f;
  f.arena.grads().copy_from(Tensor::from_vector<float>({3, 4, 0}, Shape{3}));
  EXPECT_NEAR(clip_grad_norm(f.arena, 1.0f), 5.0f, 1e-5);
  auto g = f.arena.grads().to_vector<float>();
  EXPECT_NEAR(std::sqrt(g[0] * g[0] + g[1] * g[1]), 1.0f, 1e-4);
  EXPECT_NEAR(clip_grad_norm(f.arena, 10.0f), 1.0f, 1e-4);  // under the limit: unchanged
}

// A few steps of `c` on an arena of a decayed [300, 400] weight and a non-decayed bias of over
// three element grains; returns the bytes of the values and of every state slot.
std::string bytes_after_steps(const OptimizerConfig& c) {
  const auto normal = [](Tensor& v, Generator& g) {
    for (int64_t i = 0; i < v.numel(); ++i) v.data<float>()[i] = g.normal();
  };
  ParameterArena arena;
  arena.add("w", Shape{300, 400}, normal);
  arena.add("b", Shape{3 * cpu::kElementGrain + 77}, normal, false);
  Generator g;
  arena.allocate(Device::cpu(), g);
  auto opt = make_optimizer(c, arena);
  float* grads = arena.grads().data<float>();
  for (int step = 0; step < 3; ++step) {
    for (int64_t i = 0; i < arena.numel(); ++i) grads[i] = std::sin(0.001f * static_cast<float>(i) + step);
    opt->step(arena, c.lr);
  }
  const auto bytes = [](const Tensor& t) {
    return std::string(static_cast<const char*>(t.raw_data()), static_cast<size_t>(t.nbytes()));
  };
  std::string out = bytes(arena.values());
  for (const auto& [name, slot] : opt->slots()) out += bytes(*slot);
  return out;
}

TEST(Optimizer, StepsAreBitwiseTheSameAtAnyThreadCount) {
  for (const char* type : {"sgd", "adam", "adamw", "rmsprop"})
    for (bool nesterov : {false, true}) {
      if (nesterov && std::string(type) != "sgd") continue;
      OptimizerConfig c;
      c.type = type;
      c.lr = 0.01f;
      c.momentum = 0.5f;
      c.nesterov = nesterov;
      c.weight_decay = 0.1f;
      cpu::set_blas_threads(1);
      const std::string want = bytes_after_steps(c);
      for (int threads : {2, 3}) {
        cpu::set_blas_threads(threads);
        const std::string got = bytes_after_steps(c);
        EXPECT_TRUE(got.size() == want.size() && std::memcmp(got.data(), want.data(), want.size()) == 0)
            << type << (nesterov ? " nesterov" : "") << " differs at " << threads << " threads";
      }
      cpu::set_blas_threads(1);
    }
}

// grad_scale (ParamSync's deferred average times clipping's coefficient) multiplies each gradient
// as the update reads it: the same bits as scaling the gradient arena first.
TEST(Optimizer, GradScaleIsTheSameAsScaledGradients) {
  for (const char* type : {"sgd", "adam", "adamw", "rmsprop"}) {
    OptimizerConfig c;
    c.type = type;
    c.lr = 0.01f;
    c.momentum = 0.5f;
    c.weight_decay = 0.1f;
    Fixture scaled, folded;
    auto a = make_optimizer(c, scaled.arena), b = make_optimizer(c, folded.arena);
    const float scale = 0.25f * clip_coefficient(1.0f, 3.7f);
    for (int step = 0; step < 3; ++step) {
      scaled.set_grads(step);
      folded.set_grads(step);
      ops::scale(scaled.arena.grads(), scale);
      a->step(scaled.arena, c.lr);
      b->step(folded.arena, c.lr, scale);
    }
    const std::vector<float> want = scaled.arena.values().to_vector<float>();
    const std::vector<float> got = folded.arena.values().to_vector<float>();
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float))) << type;
  }
  EXPECT_EQ(clip_coefficient(0.0f, 5.0f), 1.0f);   // clipping off
  EXPECT_EQ(clip_coefficient(10.0f, 5.0f), 1.0f);  // under the limit
  EXPECT_FLOAT_EQ(clip_coefficient(1.0f, 4.0f), 0.25f);
}

// ZeRO-1's shard: the runs given are updated exactly as without it, the rest not at all, and the
// state is packed to their size; a rank with no runs holds and updates nothing.
TEST(Optimizer, ShardedStepUpdatesItsRunsAsTheWholeArenaDoes) {
  OptimizerConfig c;
  c.type = "adamw";
  c.lr = 0.01f;
  c.weight_decay = 0.1f;
  Fixture whole, part, none;
  auto a = make_optimizer(c, whole.arena), b = make_optimizer(c, part.arena), z = make_optimizer(c, none.arena);
  b->shard({{1, 2}});  // element 1 of "a" and the whole of "b"
  z->shard({});
  EXPECT_EQ(b->state_bytes(), 2 * 2 * static_cast<int64_t>(sizeof(float)));  // two slots of 2 floats
  EXPECT_EQ(z->state_bytes(), 0);
  const std::vector<float> before = none.arena.values().to_vector<float>();
  for (int step = 0; step < 3; ++step) {
    for (Fixture* f : {&whole, &part, &none}) f->set_grads(step);
    a->step(whole.arena, c.lr);
    b->step(part.arena, c.lr);
    z->step(none.arena, c.lr);
  }
  const std::vector<float> w = whole.arena.values().to_vector<float>(), p = part.arena.values().to_vector<float>();
  EXPECT_EQ(p[0], before[0]);  // outside the shard: untouched
  EXPECT_EQ(p[1], w[1]);
  EXPECT_EQ(p[2], w[2]);
  EXPECT_EQ(none.arena.values().to_vector<float>(), before);
  EXPECT_THROW(b->shard({{0, 1}}), Error);  // twice without unshard
}

TEST(Optimizer, BadConfigNamesTheKey) {
  Fixture f;
  OptimizerConfig c;
  c.type = "lion";
  try {
    make_optimizer(c, f.arena);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("optim.type"), std::string::npos) << e.what();
  }
  c.type = "sgd";
  c.momentum = 1.5f;
  EXPECT_THROW(make_optimizer(c, f.arena), Error);
  c.momentum = 0.0f;
  c.nesterov = true;
  EXPECT_THROW(make_optimizer(c, f.arena), Error);
}

}  // namespace
}  // namespace dtrain
