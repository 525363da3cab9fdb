// The optimizers dtrain ships: their CPU update kernels, their classes and the one table that
// registers them (make_optimizer, config validation and --help read it). A new optimizer is its
// kernel declared in optim/kernel_list.inc, its CPU loop, class and table entry here, and its CUDA
// kernel in optim/optimizers.cu.
#include <cmath>

#include "core/cpu/parallel.h"
#include "core/cpu/simd.h"
#include "core/dispatch.h"
#include "optim/kernels.h"
#include "optim/optimizer.h"

namespace dtrain {

// ---- the CPU update kernels (optim/kernel_list.inc; optimizers.cu mirrors them on the GPU), one
// pass over the flat arenas split over parameters by cpu::parallel_for, written so the compiler
// vectorises them

namespace cpu {

namespace {
// sgd_step over [begin, end): a function of its own (not inlined into the lambda) so that GCC
// unswitches the loop on buf and nesterov, arguments rather than captures, and vectorises each version.
[[gnu::noinline]] void sgd_range(float* p, const float* g, float* buf, int64_t begin, int64_t end, float lr,
                                 float momentum, bool nesterov, float weight_decay, float grad_scale) {
  for (int64_t i = begin; i < end; ++i) {
    float d = g[i] * grad_scale + weight_decay * p[i];
    if (buf) {
      buf[i] = momentum * buf[i] + d;
      d = nesterov ? d + momentum * buf[i] : buf[i];
    }
    p[i] -= lr * d;
  }
}
}  // namespace

// g' = g + wd p; buf = momentum buf + g'; step = nesterov ? g' + momentum buf : buf; p -= lr step
void sgd_step(float* p, const float* g, float* buf, int64_t n, float lr, float momentum, bool nesterov,
              float weight_decay, float grad_scale) {
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    sgd_range(p, g, buf, begin, end, lr, momentum, nesterov, weight_decay, grad_scale);
  });
}

namespace {
struct AdamScalars {
  float beta1, beta2, eps, decay, l2, inv_sqrt_bias2, step, grad_scale;
};

// Adam's loop, compiled for AVX-512, AVX2 and the baseline (IEEE sqrt and division, no FMA
// contraction under -std=c++20: the same bits on each).
DTRAIN_CPU_CLONES void adam_range(float* p, const float* g, float* m, float* v, int64_t n, AdamScalars s) {
  for (int64_t i = 0; i < n; ++i) {
    const float d = g[i] * s.grad_scale + s.l2 * p[i];
    m[i] = s.beta1 * m[i] + (1.0f - s.beta1) * d;
    v[i] = s.beta2 * v[i] + (1.0f - s.beta2) * d * d;
    p[i] = p[i] * s.decay - s.step * m[i] / (std::sqrt(v[i]) * s.inv_sqrt_bias2 + s.eps);
  }
}
}  // namespace

// m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr (m / bias1) / (sqrt(v / bias2) + eps)
void adam_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2, float eps,
               float weight_decay, bool decoupled, float bias1, float bias2, float grad_scale) {
  const float decay = decoupled ? 1.0f - lr * weight_decay : 1.0f;
  const float l2 = decoupled ? 0.0f : weight_decay;
  const float inv_sqrt_bias2 = 1.0f / std::sqrt(bias2);
  const float step = lr / bias1;
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    adam_range(p + begin, g + begin, m + begin, v + begin, end - begin,
               AdamScalars{beta1, beta2, eps, decay, l2, inv_sqrt_bias2, step, grad_scale});
  });
}

// sq = a sq + (1-a) g^2; u = g / (sqrt(sq) + eps); buf = momentum buf + u (if momentum); p -= lr (buf or u)
void rmsprop_step(float* p, const float* g, float* sq, float* buf, int64_t n, float lr, float alpha, float eps,
                  float weight_decay, float momentum, float grad_scale) {
  parallel_for(n, kElementGrain, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float d = g[i] * grad_scale + weight_decay * p[i];
      sq[i] = alpha * sq[i] + (1.0f - alpha) * d * d;
      float u = d / (std::sqrt(sq[i]) + eps);
      if (buf) {
        buf[i] = momentum * buf[i] + u;
        u = buf[i];
      }
      p[i] -= lr * u;
    }
  });
}

}  // namespace cpu

// ---- the optimizers, each a fused kernel call over the whole arena

namespace {

// PyTorch's SGD: g += wd p; buf = momentum buf + g; p -= lr (nesterov ? g + momentum buf : buf).
class Sgd : public Optimizer {
 public:
  Sgd(const OptimizerConfig& c, const ParameterArena& arena)
      : Optimizer(c, arena, c.momentum > 0 ? std::vector<std::string>{"momentum"} : std::vector<std::string>{}) {
    DTRAIN_CHECK(c.momentum >= 0 && c.momentum < 1, "optim.momentum must be in [0, 1), got ", c.momentum);
    DTRAIN_CHECK(!c.nesterov || c.momentum > 0, "optim.nesterov needs optim.momentum > 0");
  }
  void step(ParameterArena& a, float lr, float grad_scale) override {
    float* buf = config_.momentum > 0 ? slot(0).data<float>() : nullptr;
    for_each_run(a, config_.weight_decay, [&](int64_t at, int64_t st, int64_t n, float wd) {
      DTRAIN_DISPATCH(a.device(), sgd_step, a.values().data<float>() + at, a.grads().data<float>() + at,
                      buf ? buf + st : nullptr, n, lr, config_.momentum, config_.nesterov, wd, grad_scale);
    });
    ++steps_;
  }
};

// Adam (L2 in the gradient) and AdamW (decoupled decay), with bias correction.
class Adam : public Optimizer {
 public:
  Adam(const OptimizerConfig& c, const ParameterArena& arena, bool decoupled = false)
      : Optimizer(c, arena, {"exp_avg", "exp_avg_sq"}), decoupled_(decoupled) {
    DTRAIN_CHECK(c.beta1 >= 0 && c.beta1 < 1, "optim.beta1 must be in [0, 1), got ", c.beta1);
    DTRAIN_CHECK(c.beta2 >= 0 && c.beta2 < 1, "optim.beta2 must be in [0, 1), got ", c.beta2);
    DTRAIN_CHECK(c.eps > 0, "optim.eps must be positive, got ", c.eps);
  }
  void step(ParameterArena& a, float lr, float grad_scale) override {
    const double t = static_cast<double>(steps_ + 1);
    const float bias1 = static_cast<float>(1.0 - std::pow(static_cast<double>(config_.beta1), t));
    const float bias2 = static_cast<float>(1.0 - std::pow(static_cast<double>(config_.beta2), t));
    for_each_run(a, config_.weight_decay, [&](int64_t at, int64_t st, int64_t n, float wd) {
      DTRAIN_DISPATCH(a.device(), adam_step, a.values().data<float>() + at, a.grads().data<float>() + at,
                      slot(0).data<float>() + st, slot(1).data<float>() + st, n, lr, config_.beta1, config_.beta2,
                      config_.eps, wd, decoupled_, bias1, bias2, grad_scale);
    });
    ++steps_;
  }

 private:
  bool decoupled_;
};

class AdamW : public Adam {
 public:
  AdamW(const OptimizerConfig& c, const ParameterArena& arena) : Adam(c, arena, true) {}
};

// PyTorch's RMSprop (not centered): sq = alpha sq + (1-alpha) g^2; p -= lr g / (sqrt(sq) + eps).
class RmsProp : public Optimizer {
 public:
  RmsProp(const OptimizerConfig& c, const ParameterArena& arena)
      : Optimizer(c, arena,
                  c.momentum > 0 ? std::vector<std::string>{"square_avg", "momentum"}
                                 : std::vector<std::string>{"square_avg"}) {
    DTRAIN_CHECK(c.alpha >= 0 && c.alpha < 1, "optim.alpha must be in [0, 1), got ", c.alpha);
    DTRAIN_CHECK(c.momentum >= 0 && c.momentum < 1, "optim.momentum must be in [0, 1), got ", c.momentum);
    DTRAIN_CHECK(c.eps > 0, "optim.eps must be positive, got ", c.eps);
  }
  void step(ParameterArena& a, float lr, float grad_scale) override {
    float* buf = config_.momentum > 0 ? slot(1).data<float>() : nullptr;
    for_each_run(a, config_.weight_decay, [&](int64_t at, int64_t st, int64_t n, float wd) {
      DTRAIN_DISPATCH(a.device(), rmsprop_step, a.values().data<float>() + at, a.grads().data<float>() + at,
                      slot(0).data<float>() + st, buf ? buf + st : nullptr, n, lr, config_.alpha, config_.eps, wd,
                      config_.momentum, grad_scale);
    });
    ++steps_;
  }
};

// ---- the registry: optim.type names, what --help says of them, and their factories

template <typename T>
std::unique_ptr<Optimizer> make(const OptimizerConfig& c, const ParameterArena& arena) {
  return std::make_unique<T>(c, arena);
}

struct Registered {
  const char* name;
  const char* summary;
  std::unique_ptr<Optimizer> (*make)(const OptimizerConfig&, const ParameterArena&);
};

const Registered kOptimizers[] = {
    {"sgd", "SGD with momentum (optim.momentum) and Nesterov (optim.nesterov)", make<Sgd>},
    {"adam", "Adam, weight decay as L2 in the gradient", make<Adam>},
    {"adamw", "AdamW, decoupled weight decay", make<AdamW>},
    {"rmsprop", "RMSprop (not centered), optional momentum", make<RmsProp>},
};

}  // namespace

std::vector<std::pair<std::string, std::string>> registered_optimizers() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const Registered& r : kOptimizers) out.emplace_back(r.name, r.summary);
  return out;
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& c, const ParameterArena& arena) {
  std::string known;
  for (const Registered& r : kOptimizers) {
    if (c.type == r.name) return r.make(c, arena);
    known.append(known.empty() ? "" : ", ").append(r.name);
  }
  fail("optim.type: unknown optimizer '", c.type, "' (registered: ", known, ")");
}

}  // namespace dtrain
