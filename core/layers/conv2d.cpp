// Conv2d by batched im2col + one GEMM. With P = OH*OW, CK = C*K*K:
//   forward:  cols[CK, N*P] = im2col(x); y_cn[OC, N*P] = W[OC, CK] cols; y = swap_01(y_cn) + b
//   backward: dy_cn = swap_01(dy); dW += dy_cn cols^T; db += sum over N, P of dy;
//             dcols = W^T dy_cn; dx = col2im(dcols) (skipped when ctx.input_grad is false)
//
// Fused with the ReLU and 2x2 max-pool after it (CPU; Sequential asks through fuse()), the pass
// after the GEMM reads y_cn once and writes the pooled output and one byte per output saying
// which window element won (or that ReLU zeroed it); backward expands dy through that byte
// straight into dy_cn. Since ReLU is monotone, pool(relu(v)) = relu(pool(v)) with the same
// winner whenever the gradient is not zero, so the result is bitwise the unfused one.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "core/cpu/parallel.h"
#include "core/cpu/reduce.h"
#include "core/cpu/simd.h"
#include "core/layers/layer_util.h"
#include "core/layers/layers.h"

namespace dtrain {

// ---- its fused CPU kernels (CPU only: on other devices the layers run one by one)
namespace cpu {
namespace {

constexpr uint8_t kDead = 255;  // mask value: ReLU zeroed the window's maximum, so no gradient

#if DTRAIN_X86_SIMD
// Rows r0, r1 (+ b) -> ow outputs of the 2x2 pool, 8 at a time in the low half of 16 lanes (the
// tail masked): the same comparisons in the same order as relu_pool_plane's loop, so the same bits.
__attribute__((target("avx512f,avx512bw,avx512vl"))) void relu_pool_rows_avx512(const float* r0, const float* r1,
                                                                                float b, float* y, uint8_t* mask,
                                                                                int64_t ow) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512 bias = _mm512_set1_ps(b);
  for (int64_t ox = 0; ox < ow; ox += 8) {
    const int64_t count = std::min<int64_t>(8, ow - ox);
    const auto in = static_cast<__mmask16>((1u << (2 * count)) - 1), out = static_cast<__mmask16>((1u << count) - 1);
    const __m512 top = _mm512_add_ps(_mm512_maskz_loadu_ps(in, r0 + 2 * ox), bias);
    const __m512 bottom = _mm512_add_ps(_mm512_maskz_loadu_ps(in, r1 + 2 * ox), bias);
    // (two-source permutes: GCC 12's one-source one merges into an undefined vector and warns)
    const __m512 v[4] = {_mm512_permutex2var_ps(top, even, top), _mm512_permutex2var_ps(top, odd, top),
                         _mm512_permutex2var_ps(bottom, even, bottom), _mm512_permutex2var_ps(bottom, odd, bottom)};
    __m512 best = v[0];
    __m512i at = _mm512_setzero_si512();
    for (int k = 1; k < 4; ++k) {
      const __mmask16 greater = _mm512_cmp_ps_mask(v[k], best, _CMP_GT_OQ);
      best = _mm512_mask_blend_ps(greater, best, v[k]);
      at = _mm512_mask_blend_epi32(greater, at, _mm512_set1_epi32(k));
    }
    const __mmask16 live = _mm512_cmp_ps_mask(best, _mm512_setzero_ps(), _CMP_GT_OQ);
    _mm512_mask_storeu_ps(y + ox, out, _mm512_maskz_mov_ps(live, best));
    at = _mm512_mask_blend_epi32(live, _mm512_set1_epi32(kDead), at);
    _mm_mask_storeu_epi8(mask + ox, out, _mm512_maskz_cvtepi32_epi8(out, at));
  }
}

// The adjoint: ow gradients -> rows r0, r1, each at its window's winner and 0 elsewhere.
__attribute__((target("avx512f,avx512bw,avx512vl"))) void relu_pool_rows_backward_avx512(const float* dy,
                                                                                         const uint8_t* mask, float* r0,
                                                                                         float* r1, int64_t ow) {
  const __m512i interleave = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  for (int64_t ox = 0; ox < ow; ox += 8) {
    const int64_t count = std::min<int64_t>(8, ow - ox);
    const auto in = static_cast<__mmask16>((1u << count) - 1), out = static_cast<__mmask16>((1u << (2 * count)) - 1);
    const __m512 g = _mm512_maskz_loadu_ps(in, dy + ox);
    const __m512i m = _mm512_maskz_cvtepu8_epi32(in, _mm_maskz_loadu_epi8(in, mask + ox));
    __m512 picked[2];  // rows r0 and r1: winners 0, 1 and 2, 3 interleaved
    for (int half = 0; half < 2; ++half) {
      const __m512 left = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(m, _mm512_set1_epi32(2 * half)), g);
      const __m512 right = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(m, _mm512_set1_epi32(2 * half + 1)), g);
      picked[half] = _mm512_permutex2var_ps(left, interleave, right);
    }
    _mm512_mask_storeu_ps(r0 + 2 * ox, out, picked[0]);
    _mm512_mask_storeu_ps(r1 + 2 * ox, out, picked[1]);
  }
}

// AVX2: the same rows, 8 outputs at a time; lanes past the row's end are masked off.
__attribute__((target("avx2,fma"))) __m256i lanes_below(int64_t count, int64_t first) {
  const __m256i index = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(first));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), index);
}

// The even (odd = 1) elements of 16 floats at p: [p0, p2, ..., p14].
__attribute__((target("avx2,fma"))) __m256 every_other(__m256 lo, __m256 hi, bool odd) {
  const __m256 picked =
      odd ? _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1)) : _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(picked), _MM_SHUFFLE(3, 1, 2, 0)));
}

__attribute__((target("avx2,fma"))) void relu_pool_rows_avx2(const float* r0, const float* r1, float b, float* y,
                                                             uint8_t* mask, int64_t ow) {
  const __m256 bias = _mm256_set1_ps(b), zero = _mm256_setzero_ps();
  for (int64_t ox = 0; ox < ow; ox += 8) {
    const int64_t count = std::min<int64_t>(8, ow - ox);
    const __m256i in_lo = lanes_below(2 * count, 0), in_hi = lanes_below(2 * count, 8), out = lanes_below(count, 0);
    __m256 v[4];
    for (int row = 0; row < 2; ++row) {
      const float* src = (row == 0 ? r0 : r1) + 2 * ox;
      const __m256 lo = _mm256_add_ps(_mm256_maskload_ps(src, in_lo), bias);
      const __m256 hi = _mm256_add_ps(_mm256_maskload_ps(src + 8, in_hi), bias);
      v[2 * row] = every_other(lo, hi, false);
      v[2 * row + 1] = every_other(lo, hi, true);
    }
    __m256 best = v[0], at = _mm256_setzero_ps();  // at: the winner's index as int32 bits
    for (int k = 1; k < 4; ++k) {
      const __m256 greater = _mm256_cmp_ps(v[k], best, _CMP_GT_OQ);
      best = _mm256_blendv_ps(best, v[k], greater);
      at = _mm256_blendv_ps(at, _mm256_castsi256_ps(_mm256_set1_epi32(k)), greater);
    }
    const __m256 live = _mm256_cmp_ps(best, zero, _CMP_GT_OQ);
    _mm256_maskstore_ps(y + ox, out, _mm256_and_ps(best, live));
    alignas(32) int32_t winners[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(winners),
                       _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(_mm256_set1_epi32(kDead)), at, live)));
    for (int64_t j = 0; j < count; ++j) mask[ox + j] = static_cast<uint8_t>(winners[j]);
  }
}

__attribute__((target("avx2,fma"))) void relu_pool_rows_backward_avx2(const float* dy, const uint8_t* mask, float* r0,
                                                                      float* r1, int64_t ow) {
  for (int64_t ox = 0; ox < ow; ox += 8) {
    const int64_t count = std::min<int64_t>(8, ow - ox);
    const __m256 g = _mm256_maskload_ps(dy + ox, lanes_below(count, 0));
    uint8_t bytes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::copy_n(mask + ox, count, bytes);
    int64_t packed;
    std::memcpy(&packed, bytes, sizeof packed);
    const __m256i m = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(packed));
    for (int row = 0; row < 2; ++row) {
      const __m256 left = _mm256_and_ps(g, _mm256_castsi256_ps(_mm256_cmpeq_epi32(m, _mm256_set1_epi32(2 * row))));
      const __m256 right = _mm256_and_ps(g, _mm256_castsi256_ps(_mm256_cmpeq_epi32(m, _mm256_set1_epi32(2 * row + 1))));
      const __m256 lo = _mm256_unpacklo_ps(left, right), hi = _mm256_unpackhi_ps(left, right);
      float* dst = (row == 0 ? r0 : r1) + 2 * ox;
      _mm256_maskstore_ps(dst, lanes_below(2 * count, 0), _mm256_permute2f128_ps(lo, hi, 0x20));
      _mm256_maskstore_ps(dst + 8, lanes_below(2 * count, 8), _mm256_permute2f128_ps(lo, hi, 0x31));
    }
  }
}
#endif

// One plane: src [h, w] (+ b) -> y [h/pool, w/pool] = max over each window of max(v, 0); mask =
// the window position (row-major) of the first strict maximum, as MaxPool2d scans, or kDead.
DTRAIN_CPU_CLONES void relu_pool_plane(const float* src, float b, float* y, uint8_t* mask, int64_t h, int64_t w,
                                       int64_t pool) {
  if (pool == 1) {
    for (int64_t i = 0; i < h * w; ++i) {
      const float v = src[i] + b;
      y[i] = v > 0.0f ? v : 0.0f;
      mask[i] = v > 0.0f ? 0 : kDead;
    }
    return;
  }
  const int64_t oh = h / 2, ow = w / 2;
#if DTRAIN_X86_SIMD
  const SimdLevel simd = cpu_simd_level();
  if (simd != SimdLevel::none) {
    const auto rows = simd == SimdLevel::avx512 ? relu_pool_rows_avx512 : relu_pool_rows_avx2;
    for (int64_t oy = 0; oy < oh; ++oy)
      rows(src + 2 * oy * w, src + (2 * oy + 1) * w, b, y + oy * ow, mask + oy * ow, ow);
    return;
  }
#endif
  for (int64_t oy = 0; oy < oh; ++oy) {
    const float* r0 = src + 2 * oy * w;
    const float* r1 = r0 + w;
    for (int64_t ox = 0; ox < ow; ++ox) {
      const float v0 = r0[2 * ox] + b, v1 = r0[2 * ox + 1] + b, v2 = r1[2 * ox] + b, v3 = r1[2 * ox + 1] + b;
      float best = v0;
      uint8_t at = 0;
      at = v1 > best ? 1 : at;
      best = v1 > best ? v1 : best;
      at = v2 > best ? 2 : at;
      best = v2 > best ? v2 : best;
      at = v3 > best ? 3 : at;
      best = v3 > best ? v3 : best;
      y[oy * ow + ox] = best > 0.0f ? best : 0.0f;
      mask[oy * ow + ox] = best > 0.0f ? at : kDead;
    }
  }
}

// The adjoint for one plane: dst [h, w] = dy [h/pool, w/pool] at each window's winner, 0 elsewhere.
DTRAIN_CPU_CLONES void relu_pool_plane_backward(const float* dy, const uint8_t* mask, float* dst, int64_t h, int64_t w,
                                                int64_t pool) {
  if (pool == 1) {
    for (int64_t i = 0; i < h * w; ++i) {
      const float g = dy[i];
      dst[i] = mask[i] == 0 ? g : 0.0f;
    }
    return;
  }
  const int64_t oh = h / 2, ow = w / 2;
#if DTRAIN_X86_SIMD
  const SimdLevel simd = cpu_simd_level();
  if (simd != SimdLevel::none) {
    const auto rows = simd == SimdLevel::avx512 ? relu_pool_rows_backward_avx512 : relu_pool_rows_backward_avx2;
    for (int64_t oy = 0; oy < oh; ++oy)
      rows(dy + oy * ow, mask + oy * ow, dst + 2 * oy * w, dst + (2 * oy + 1) * w, ow);
    return;
  }
#endif
  for (int64_t oy = 0; oy < oh; ++oy) {
    float* r0 = dst + 2 * oy * w;
    float* r1 = r0 + w;
    for (int64_t ox = 0; ox < ow; ++ox) {
      const float g = dy[oy * ow + ox];
      const uint8_t m = mask[oy * ow + ox];
      r0[2 * ox] = m == 0 ? g : 0.0f;
      r0[2 * ox + 1] = m == 1 ? g : 0.0f;
      r1[2 * ox] = m == 2 ? g : 0.0f;
      r1[2 * ox + 1] = m == 3 ? g : 0.0f;
    }
  }
}

// y_cn [c, n, h, w] (+ bias[c]) -> y, mask [n, c, h/pool, w/pool], one plane per range item.
void relu_pool_forward(const float* y_cn, const float* bias, float* y, uint8_t* mask, int64_t c, int64_t n, int64_t h,
                       int64_t w, int64_t pool) {
  const int64_t hw = h * w, ohw = (h / pool) * (w / pool);
  parallel_for(c * n, std::max<int64_t>(1, kElementGrain / hw), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {  // p = ci * n + ni, the order of y_cn's planes
      const int64_t ci = p / n, ni = p % n, o = (ni * c + ci) * ohw;
      relu_pool_plane(y_cn + p * hw, bias != nullptr ? bias[ci] : 0.0f, y + o, mask + o, h, w, pool);
    }
  });
}

// dy, mask [n, c, h/pool, w/pool] -> dy_cn [c, n, h, w]; db[c] += the sum of each plane in
// row-major order, then over n in order (sum_channels' order, so the same bits).
void relu_pool_backward(const float* dy, const uint8_t* mask, float* dy_cn, float* db, int64_t c, int64_t n, int64_t h,
                        int64_t w, int64_t pool) {
  const int64_t hw = h * w, ohw = (h / pool) * (w / pool);
  std::vector<float> plane_sums(db != nullptr ? static_cast<size_t>(c * n) : 0);
  parallel_for(c * n, std::max<int64_t>(1, kElementGrain / hw), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t ci = p / n, ni = p % n, o = (ni * c + ci) * ohw;
      float* dst = dy_cn + p * hw;
      relu_pool_plane_backward(dy + o, mask + o, dst, h, w, pool);
      if (db != nullptr) plane_sums[static_cast<size_t>(p)] = sum_lanes(dst, hw);
    }
  });
  if (db != nullptr)
    for (int64_t ni = 0; ni < n; ++ni)
      for (int64_t ci = 0; ci < c; ++ci) db[ci] += plane_sums[static_cast<size_t>(ci * n + ni)];
}

}  // namespace
}  // namespace cpu

// ---- the layer

namespace {
std::string describe(const Conv2d& c) {
  return "Conv2d(" + std::to_string(c.in_channels()) + "->" + std::to_string(c.out_channels()) + ", k" +
         std::to_string(c.kernel()) + " s" + std::to_string(c.stride()) + " p" + std::to_string(c.padding()) + ")";
}
}  // namespace

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride, int64_t padding, bool bias)
    : in_c_(in_channels), out_c_(out_channels), k_(kernel), stride_(stride), pad_(padding), has_bias_(bias) {
  DTRAIN_CHECK(in_c_ > 0 && out_c_ > 0 && k_ > 0 && stride_ > 0 && pad_ >= 0, describe(*this),
               ": channels, kernel and stride must be positive and padding non-negative");
}

void Conv2d::register_parameters(ParameterArena& arena, const std::string& prefix) {
  const int64_t fan_in = in_c_ * k_ * k_;
  weight_ = &arena.add(prefix + "weight", Shape{out_c_, in_c_, k_, k_}, layers::fan_in_uniform_init(fan_in));
  if (has_bias_) bias_ = &arena.add(prefix + "bias", Shape{out_c_}, layers::fan_in_uniform_init(fan_in), false);
}

std::vector<Parameter*> Conv2d::parameters() const {
  std::vector<Parameter*> ps;
  if (weight_) ps.push_back(weight_);
  if (bias_) ps.push_back(bias_);
  return ps;
}

Shape Conv2d::output_shape(const Shape& input) const {
  DTRAIN_CHECK(input.size() == 4 && input[1] == in_c_, describe(*this), ": input shape ", input.str(),
               ", expected [N, ", in_c_, ", H, W]");
  const int64_t oh = (input[2] + 2 * pad_ - k_) / stride_ + 1, ow = (input[3] + 2 * pad_ - k_) / stride_ + 1;
  DTRAIN_CHECK(input[2] + 2 * pad_ >= k_ && input[3] + 2 * pad_ >= k_, describe(*this), ": input ", input.str(),
               " is smaller than the kernel");
  return Shape{input[0], out_c_, oh, ow};
}

size_t Conv2d::fuse(std::span<const std::unique_ptr<Module>> next, const Tensor& x, const PassContext& ctx) {
  epilogue_pool_ = 0;
  if (!ctx.fuse || !x.defined() || !x.device().is_cpu() || x.shape().size() != 4 || next.empty() ||
      next[0]->type() != "ReLU")
    return 0;
  epilogue_pool_ = 1;
  const auto* pool = next.size() > 1 ? dynamic_cast<const MaxPool2d*>(next[1].get()) : nullptr;
  if (pool == nullptr || pool->kernel() != 2 || pool->stride() != 2 || pool->padding() != 0) return 1;
  const Shape ys = output_shape(x.shape());
  if (ys[2] % 2 != 0 || ys[3] % 2 != 0) return 1;
  epilogue_pool_ = 2;
  return 2;
}

Tensor Conv2d::gemm_forward(const Tensor& x, const Shape& ys) {
  const Device d = x.device();
  const int64_t n = x.dim(0), h = x.dim(2), w = x.dim(3), oh = ys[2], ow = ys[3];
  const int64_t ck = in_c_ * k_ * k_, np = n * oh * ow;
  layers::workspace(cols_, Shape{ck, np}, d);
  DTRAIN_DISPATCH(d, im2col, x.data<float>(), cols_.data<float>(), n, in_c_, h, w, k_, k_, stride_, pad_, oh, ow);
  Tensor& y_cn = layers::workspace(y_cn_, Shape{out_c_, np}, d);
  DTRAIN_DISPATCH(d, gemm, false, false, out_c_, np, ck, 1.0f, weight_->value.data<float>(), ck, cols_.data<float>(),
                  np, 0.0f, y_cn.data<float>(), np);
  return y_cn;
}

Tensor Conv2d::forward(const Tensor& x, PassContext& ctx) {
  (void)ctx;
  const std::string name = describe(*this);
  layers::check_input(x, name);
  const Shape ys = output_shape(x.shape());
  layers::check_param(x, weight_, name);
  const Device d = x.device();
  const int64_t n = ys[0], oh = ys[2], ow = ys[3];
  const Tensor y_cn = gemm_forward(x, ys);
  x_shape_ = x.shape();
  ran_pool_ = epilogue_pool_;
  epilogue_pool_ = 0;  // an offer holds for one forward
  const float* bias = bias_ != nullptr ? bias_->value.data<float>() : nullptr;
  if (ran_pool_ > 0) {
    const Shape pooled{n, out_c_, oh / ran_pool_, ow / ran_pool_};
    Tensor y = Tensor::empty(pooled, DType::f32, d);
    layers::workspace(mask_, pooled, d, DType::u8);
    cpu::relu_pool_forward(y_cn.data<float>(), bias, y.data<float>(), mask_.data<uint8_t>(), out_c_, n, oh, ow,
                           ran_pool_);
    return y;
  }
  Tensor y = Tensor::empty(ys, DType::f32, d);
  DTRAIN_DISPATCH(d, swap_01, y_cn.data<float>(), y.data<float>(), out_c_, n, oh * ow);
  if (bias_) DTRAIN_DISPATCH(d, add_bias_channels, y.data<float>(), bias, n, out_c_, oh * ow);
  return y;
}

Tensor Conv2d::dy_to_cn(const Tensor& dy, const Shape& ys) {
  const Device d = dy.device();
  const int64_t n = ys[0], oh = ys[2], ow = ys[3];
  Tensor& dy_cn = layers::workspace(dy_cn_, Shape{out_c_, n * oh * ow}, d);
  float* db = bias_ != nullptr ? bias_->grad.data<float>() : nullptr;
  if (ran_pool_ > 0) {
    cpu::relu_pool_backward(dy.data<float>(), mask_.data<uint8_t>(), dy_cn.data<float>(), db, out_c_, n, oh, ow,
                            ran_pool_);
    return dy_cn;
  }
  DTRAIN_DISPATCH(d, swap_01, dy.data<float>(), dy_cn.data<float>(), n, out_c_, oh * ow);
  if (db != nullptr) DTRAIN_DISPATCH(d, sum_channels, dy.data<float>(), db, n, out_c_, oh * ow);
  return dy_cn;
}

Tensor Conv2d::backward(const Tensor& dy, PassContext& ctx) {
  const std::string name = describe(*this);
  layers::check_forwarded(cols_.defined(), name);
  const Shape ys = output_shape(x_shape_);
  layers::check_grad(dy, ran_pool_ > 0 ? Shape{ys[0], ys[1], ys[2] / ran_pool_, ys[3] / ran_pool_} : ys, name);
  const Device d = dy.device();
  const int64_t n = x_shape_[0], h = x_shape_[2], w = x_shape_[3], oh = ys[2], ow = ys[3];
  const int64_t ck = in_c_ * k_ * k_, np = n * oh * ow;
  const Tensor dy_cn = dy_to_cn(dy, ys);
  DTRAIN_DISPATCH(d, gemm, false, true, out_c_, ck, np, 1.0f, dy_cn.data<float>(), np, cols_.data<float>(), np, 1.0f,
                  weight_->grad.data<float>(), ck);
  Tensor dx;
  if (ctx.input_grad) {
    Tensor& dcols = layers::workspace(dcols_, Shape{ck, np}, d);
    DTRAIN_DISPATCH(d, gemm, true, false, ck, np, out_c_, 1.0f, weight_->value.data<float>(), ck, dy_cn.data<float>(),
                    np, 0.0f, dcols.data<float>(), np);
    dx = Tensor::zeros(x_shape_, DType::f32, d);
    DTRAIN_DISPATCH(d, col2im, dcols.data<float>(), dx.data<float>(), n, in_c_, h, w, k_, k_, stride_, pad_, oh, ow);
  }
  if (bias_) ctx.grad_ready(*bias_);
  ctx.grad_ready(*weight_);
  return dx;
}

std::string Conv2d::to_onnx(OnnxGraph& g, const std::string& x, const Shape& input, const std::string& path) const {
  (void)input;
  std::vector<std::string> in{x, g.weight(*weight_)};
  if (bias_) in.push_back(g.param(*bias_));
  return g.node("Conv", path, in,
                {{"kernel_shape", std::vector<int64_t>{k_, k_}},
                 {"strides", std::vector<int64_t>{stride_, stride_}},
                 {"pads", std::vector<int64_t>{pad_, pad_, pad_, pad_}}});
}

}  // namespace dtrain
