// Causal multi-head self-attention over qkv [N, T, 3C] (q | k | v per position; head h in
// columns [h hd, (h+1) hd) of each part, hd = C / H). Per (n, h), with s = 1 / sqrt(hd):
//   forward:  S = s q k^T; A = softmax over j <= i of S[i, j] (0 for j > i); out = A v
//   backward: dA = dout v^T; dv = A^T dout; dS = A * (dA - rowsum(dA * A)); dq = s dS k; dk = s dS^T q
// The probabilities A [N, H, T, T] are kept for backward.
#include <algorithm>
#include <cmath>
#include <string>

#include "core/layers/layer_util.h"
#include "core/layers/layers.h"

namespace dtrain {

// ---- its CPU kernels (declared in core/kernel_list.inc; core/cuda/attention.cu has the CUDA ones)
namespace cpu {

namespace {

// Row i of the t x t scores a: softmax over j <= i with the row's maximum subtracted; 0 beyond.
void causal_softmax_rows(float* a, int64_t t) {
  for (int64_t i = 0; i < t; ++i) {
    float* row = a + i * t;
    const float max = *std::max_element(row, row + i + 1);
    float sum = 0.0f;
    for (int64_t j = 0; j <= i; ++j) {
      row[j] = std::exp(row[j] - max);
      sum += row[j];
    }
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j <= i; ++j) row[j] *= inv;
    std::fill(row + i + 1, row + t, 0.0f);
  }
}

// In place: dA (d) becomes dS = A * (dA - rowsum(dA * A)) over j <= i; 0 beyond.
void causal_softmax_backward_rows(const float* a, float* d, int64_t t) {
  for (int64_t i = 0; i < t; ++i) {
    const float* ar = a + i * t;
    float* dr = d + i * t;
    float dot = 0.0f;
    for (int64_t j = 0; j <= i; ++j) dot += ar[j] * dr[j];
    for (int64_t j = 0; j <= i; ++j) dr[j] = ar[j] * (dr[j] - dot);
    std::fill(dr + i + 1, dr + t, 0.0f);
  }
}

}  // namespace

// One (batch, head) pair after another: a pair writes its own columns of out (dqkv) and its own
// t x t block of att (scratch). Each pair's GEMMs run on OpenBLAS's threads; the pairs are not
// split over cpu::parallel_for, whose threads would call a threaded SGEMM at once and contend for
// OpenBLAS's one thread server (measured: no faster than the pairs in turn).
void attention_forward(const float* qkv, float* out, float* att, int64_t b, int64_t t, int64_t c, int64_t heads) {
  const int64_t hd = c / heads, ld = 3 * c;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (int64_t pair = 0; pair < b * heads; ++pair) {
    const int64_t n = pair / heads, h = pair % heads;
    const float* q = qkv + n * t * ld + h * hd;
    float* a = att + pair * t * t;
    gemm(false, true, t, t, hd, scale, q, ld, q + c, ld, 0.0f, a, t);
    causal_softmax_rows(a, t);
    gemm(false, false, t, hd, t, 1.0f, a, t, q + 2 * c, ld, 0.0f, out + n * t * c + h * hd, c);
  }
}

void attention_backward(const float* dout, const float* qkv, const float* att, float* dqkv, float* scratch, int64_t b,
                        int64_t t, int64_t c, int64_t heads) {
  const int64_t hd = c / heads, ld = 3 * c;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (int64_t pair = 0; pair < b * heads; ++pair) {
    const int64_t n = pair / heads, h = pair % heads;
    const int64_t head = n * t * ld + h * hd;
    const float *q = qkv + head, *k = q + c, *v = q + 2 * c;
    const float* a = att + pair * t * t;
    const float* dy = dout + n * t * c + h * hd;
    float* ds = scratch + pair * t * t;
    gemm(false, true, t, t, hd, 1.0f, dy, c, v, ld, 0.0f, ds, t);                   // dA = dout v^T
    gemm(true, false, t, hd, t, 1.0f, a, t, dy, c, 0.0f, dqkv + head + 2 * c, ld);  // dv = A^T dout
    causal_softmax_backward_rows(a, ds, t);                                         // dS
    gemm(false, false, t, hd, t, scale, ds, t, k, ld, 0.0f, dqkv + head, ld);       // dq = s dS k
    gemm(true, false, t, hd, t, scale, ds, t, q, ld, 0.0f, dqkv + head + c, ld);    // dk = s dS^T q
  }
}

}  // namespace cpu

// ---- the layer

namespace {
std::string describe(const CausalSelfAttention& m) {
  return "CausalSelfAttention(" + std::to_string(m.embd()) + ", heads " + std::to_string(m.heads()) + ")";
}
}  // namespace

CausalSelfAttention::CausalSelfAttention(int64_t embd, int64_t heads) : c_(embd), heads_(heads) {
  DTRAIN_CHECK(c_ > 0 && heads_ > 0 && c_ % heads_ == 0, describe(*this),
               ": the width must be a positive multiple of the number of heads");
}

Shape CausalSelfAttention::output_shape(const Shape& input) const {
  DTRAIN_CHECK(input.size() == 3 && input[2] == 3 * c_, describe(*this), ": input shape ", input.str(),
               ", expected [N, T, ", 3 * c_, "] (q | k | v)");
  return Shape{input[0], input[1], c_};
}

Tensor CausalSelfAttention::forward(const Tensor& qkv, PassContext& ctx) {
  (void)ctx;
  const std::string name = describe(*this);
  layers::check_input(qkv, name);
  const Shape out_shape = output_shape(qkv.shape());
  const int64_t n = out_shape[0], t = out_shape[1];
  const Device d = qkv.device();
  Tensor y = Tensor::empty(out_shape, DType::f32, d);
  Tensor& att = layers::workspace(att_, Shape{n, heads_, t, t}, d);
  DTRAIN_DISPATCH(d, attention_forward, qkv.data<float>(), y.data<float>(), att.data<float>(), n, t, c_, heads_);
  qkv_ = qkv;
  return y;
}

Tensor CausalSelfAttention::backward(const Tensor& dy, PassContext& ctx) {
  (void)ctx;
  const std::string name = describe(*this);
  layers::check_forwarded(qkv_.defined(), name);
  layers::check_grad(dy, output_shape(qkv_.shape()), name);
  const Device d = qkv_.device();
  const int64_t n = qkv_.shape()[0], t = qkv_.shape()[1];
  Tensor dqkv = Tensor::empty(qkv_.shape(), DType::f32, d);
  Tensor& scratch = layers::workspace(scratch_, Shape{n, heads_, t, t}, d);
  DTRAIN_DISPATCH(d, attention_backward, dy.data<float>(), qkv_.data<float>(), att_.data<float>(), dqkv.data<float>(),
                  scratch.data<float>(), n, t, c_, heads_);
  return dqkv;
}

}  // namespace dtrain
