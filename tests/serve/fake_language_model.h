#pragma once
// A tiny attention language model in plain loops, for the generate tests: the contract of a gpt
// export (model.onnx and model_with_past.onnx), weights from a seed, every row computed on its own
// (so batching cannot change a result), and the cache path doing bit for bit the arithmetic of the
// recompute path (keys are summed in position order, padding skipped). A wrong mask, position or
// cache layout in the server changes its tokens.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <random>
#include <thread>
#include <vector>

#include "core/error.h"
#include "serve/language_model.h"

namespace dtrain::serve_test {

using serve::CachedStep;
using serve::CachedStepResult;
using serve::LanguageModelSpec;

struct FakeOptions {
  LanguageModelSpec spec{256, 64, 2, 2, 8};
  uint64_t seed = 1;
  bool with_cache = true;
  std::chrono::microseconds delay{0};  // added to every run (slow models for cancel tests)
  bool fail = false;                   // every run throws
};

class FakeLanguageModel : public serve::LanguageModel {
 public:
  explicit FakeLanguageModel(FakeOptions o) : o_(o) {
    std::mt19937_64 rng(o.seed);
    const auto fill = [&rng](std::vector<float>& w, size_t n, float scale) {
      w.resize(n);
      for (float& x : w) x = scale * (static_cast<float>(rng() >> 40) / static_cast<float>(1 << 24) * 2.0f - 1.0f);
    };
    const auto& s = o.spec;
    fill(wte_, s.vocab * s.n_embd, 1.0f);
    fill(wpe_, s.ctx * s.n_embd, 1.0f);
    fill(qkv_, s.n_layer * 3 * s.n_embd * s.n_embd, 0.5f);
    fill(head_, s.vocab * s.n_embd, 1.5f);
  }

  const LanguageModelSpec& spec() const override { return o_.spec; }
  bool has_cache() const override { return o_.with_cache; }

  Tensor run_full(const Tensor& input_ids) const override {
    begin_run(input_ids.dim(0));
    const int64_t rows = input_ids.dim(0), t = input_ids.dim(1), v = o_.spec.vocab;
    Tensor logits = Tensor::zeros(Shape{rows, t, v});
    for (int64_t b = 0; b < rows; ++b) {
      Row row(o_.spec, 0);
      for (int64_t s = 0; s < t; ++s)
        forward(row, input_ids.data<int64_t>()[b * t + s], s, true, logits.data<float>() + (b * t + s) * v);
    }
    return logits;
  }

  CachedStepResult run_cached(const CachedStep& step) const override {
    DTRAIN_CHECK(o_.with_cache, "fake: no model_with_past");
    begin_run(step.input_ids.dim(0));
    const auto& sp = o_.spec;
    const int64_t rows = step.input_ids.dim(0), fed = step.input_ids.dim(1);
    const int64_t past = step.attention_mask.dim(1) - fed, hd = sp.head_dim();
    CachedStepResult r;
    r.logits = Tensor::zeros(Shape{rows, fed, sp.vocab});
    for (int64_t l = 0; l < sp.n_layer; ++l) {
      r.present_keys.push_back(Tensor::zeros(Shape{rows, sp.n_head, past + fed, hd}));
      r.present_values.push_back(Tensor::zeros(Shape{rows, sp.n_head, past + fed, hd}));
    }
    for (int64_t b = 0; b < rows; ++b) {
      Row row(sp, past);
      load_past(step, b, row);
      for (int64_t s = 0; s < fed; ++s)
        forward(row, step.input_ids.data<int64_t>()[b * fed + s], step.position_ids.data<int64_t>()[b * fed + s],
                step.attention_mask.data<int64_t>()[b * (past + fed) + past + s] == 1,
                r.logits.data<float>() + (b * fed + s) * sp.vocab);
      store_present(row, b, r);
    }
    return r;
  }

  int64_t runs() const { return runs_; }
  int64_t max_rows() const { return max_rows_; }

 private:
  // One row's keys and values per layer, [heads][position][hd], and which positions may be seen.
  struct Row {
    std::vector<std::vector<float>> k, v;
    std::vector<bool> visible;
    Row(const LanguageModelSpec& s, int64_t past)
        : k(static_cast<size_t>(s.n_layer)), v(static_cast<size_t>(s.n_layer)), visible(static_cast<size_t>(past)) {}
  };

  void begin_run(int64_t rows) const {
    DTRAIN_CHECK(!o_.fail, "fake engine failure");
    if (o_.delay.count() > 0) std::this_thread::sleep_for(o_.delay);
    ++runs_;
    int64_t seen = max_rows_;
    while (rows > seen && !max_rows_.compare_exchange_weak(seen, rows)) {}
  }

  // Keys/values of past positions from the step's inputs ([B, heads, P, hd], any strides).
  void load_past(const CachedStep& step, int64_t b, Row& row) const {
    const auto& sp = o_.spec;
    const int64_t past = static_cast<int64_t>(row.visible.size()), hd = sp.head_dim();
    const int64_t total = step.attention_mask.dim(1);
    for (int64_t p = 0; p < past; ++p) row.visible[p] = step.attention_mask.data<int64_t>()[b * total + p] == 1;
    for (int64_t l = 0; l < sp.n_layer; ++l)
      for (int64_t h = 0; h < sp.n_head; ++h)
        for (int64_t p = 0; p < past; ++p)
          for (int64_t d = 0; d < hd; ++d) {
            const auto at = [&](const Tensor& t) {  // the pasts may be strided views (DecodeCache's)
              const Shape& st = t.strides();
              return t.data<float>()[b * st[0] + h * st[1] + p * st[2] + d * st[3]];
            };
            row.k[l].push_back(at(step.past_keys[l]));
            row.v[l].push_back(at(step.past_values[l]));
          }
    // Row keeps [position][heads * hd]: reorder from [heads][position][hd].
    for (int64_t l = 0; l < sp.n_layer; ++l) {
      row.k[l] = by_position(row.k[l], past);
      row.v[l] = by_position(row.v[l], past);
    }
  }

  std::vector<float> by_position(const std::vector<float>& heads_first, int64_t positions) const {
    const int64_t h_n = o_.spec.n_head, hd = o_.spec.head_dim();
    std::vector<float> out(heads_first.size());
    for (int64_t h = 0; h < h_n; ++h)
      for (int64_t p = 0; p < positions; ++p)
        for (int64_t d = 0; d < hd; ++d) out[(p * h_n + h) * hd + d] = heads_first[(h * positions + p) * hd + d];
    return out;
  }

  void store_present(const Row& row, int64_t b, CachedStepResult& r) const {
    const auto& sp = o_.spec;
    const int64_t total = static_cast<int64_t>(row.visible.size()), hd = sp.head_dim();
    for (int64_t l = 0; l < sp.n_layer; ++l)
      for (int64_t h = 0; h < sp.n_head; ++h)
        for (int64_t p = 0; p < total; ++p)
          for (int64_t d = 0; d < hd; ++d) {
            const int64_t to = ((b * sp.n_head + h) * total + p) * hd + d;
            r.present_keys[l].data<float>()[to] = row.k[l][(p * sp.n_head + h) * hd + d];
            r.present_values[l].data<float>()[to] = row.v[l][(p * sp.n_head + h) * hd + d];
          }
  }

  // Appends one token at `position` to the row and writes its logits.
  void forward(Row& row, int64_t token, int64_t position, bool visible, float* logits) const {
    const auto& sp = o_.spec;
    const int64_t e = sp.n_embd, hd = sp.head_dim();
    DTRAIN_CHECK(token >= 0 && token < sp.vocab && position >= 0 && position < sp.ctx, "fake: token ", token,
                 " at position ", position, " is out of range");
    std::vector<float> x(static_cast<size_t>(e));
    for (int64_t i = 0; i < e; ++i) x[i] = wte_[token * e + i] + wpe_[position * e + i];
    row.visible.push_back(visible);
    const auto n = static_cast<int64_t>(row.visible.size());
    for (int64_t l = 0; l < sp.n_layer; ++l) {
      std::vector<float> qkv(static_cast<size_t>(3 * e), 0.0f);
      for (int64_t o = 0; o < 3 * e; ++o)
        for (int64_t i = 0; i < e; ++i) qkv[o] += qkv_[(l * 3 * e + o) * e + i] * x[i];
      row.k[l].insert(row.k[l].end(), qkv.begin() + e, qkv.begin() + 2 * e);
      row.v[l].insert(row.v[l].end(), qkv.begin() + 2 * e, qkv.end());
      for (int64_t h = 0; h < sp.n_head; ++h) attend(row, l, h, n, qkv.data() + h * hd, x.data() + h * hd);
    }
    for (int64_t t = 0; t < sp.vocab; ++t) {
      float sum = 0;
      for (int64_t i = 0; i < e; ++i) sum += head_[t * e + i] * x[i];
      logits[t] = sum;
    }
  }

  // x_h += softmax(q k_j / sqrt(hd)) v_j over the visible positions j < n, in order.
  void attend(const Row& row, int64_t l, int64_t h, int64_t n, const float* q, float* x_h) const {
    const int64_t hd = o_.spec.head_dim(), stride = o_.spec.n_embd;
    std::vector<float> score(static_cast<size_t>(n), -INFINITY);
    float top = -INFINITY;
    for (int64_t j = 0; j < n; ++j) {
      if (!row.visible[j]) continue;
      float s = 0;
      for (int64_t d = 0; d < hd; ++d) s += q[d] * row.k[l][j * stride + h * hd + d];
      score[j] = s / std::sqrt(static_cast<float>(hd));
      top = std::max(top, score[j]);
    }
    if (top == -INFINITY) return;  // a padding position that sees nothing
    float total = 0;
    std::vector<float> out(static_cast<size_t>(hd), 0.0f);
    for (int64_t j = 0; j < n; ++j) {
      if (!row.visible[j]) continue;
      const float p = std::exp(score[j] - top);
      total += p;
      for (int64_t d = 0; d < hd; ++d) out[d] += p * row.v[l][j * stride + h * hd + d];
    }
    for (int64_t d = 0; d < hd; ++d) x_h[d] += out[d] / total;
  }

  FakeOptions o_;
  std::vector<float> wte_, wpe_, qkv_, head_;
  mutable std::atomic<int64_t> runs_{0}, max_rows_{0};
};

}  // namespace dtrain::serve_test
