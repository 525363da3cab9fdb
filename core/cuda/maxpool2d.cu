// CUDA max pooling over [planes = n * c, h, w] (core/kernel_list.inc). Padding never wins: the
// window scans only in-bounds pixels in row-major order and keeps the first strictly greater one.
// argmax is the flat index iy * w + ix within the input plane.
#include <algorithm>

#include "core/cuda/launch.cuh"
#include "core/kernels.h"

namespace dtrain::cuda {
namespace {

template <typename Index>
__global__ void maxpool2d_forward_kernel(const float* x, float* y, int32_t* argmax, Index planes, Index h, Index w,
                                         Index k, Index stride, Index pad, Index oh, Index ow) {
  DTRAIN_GRID_STRIDE_AS(Index, o, planes * oh * ow) {
    const Index ox = o % ow, oy = (o / ow) % oh, plane = o / (ow * oh);
    const float* in = x + plane * h * w;
    float best = -INFINITY;
    Index best_at = -1;
    for (Index ki = 0; ki < k; ++ki) {
      const Index iy = oy * stride - pad + ki;
      if (iy < 0 || iy >= h) continue;
      for (Index kj = 0; kj < k; ++kj) {
        const Index ix = ox * stride - pad + kj;
        if (ix < 0 || ix >= w) continue;
        const float v = in[iy * w + ix];
        if (best_at < 0 || v > best) best = v, best_at = iy * w + ix;
      }
    }
    y[o] = best;
    if (argmax != nullptr) argmax[o] = static_cast<int32_t>(best_at < 0 ? 0 : best_at);
  }
}

// Windows may overlap (stride < k), so several outputs can add into one input: atomicAdd.
template <typename Index>
__global__ void maxpool2d_backward_kernel(const float* dy, const int32_t* argmax, float* dx, Index planes, Index hw,
                                          Index ohw) {
  DTRAIN_GRID_STRIDE_AS(Index, o, planes * ohw) atomicAdd(dx + (o / ohw) * hw + argmax[o], dy[o]);
}

}  // namespace

void maxpool2d_forward(const float* x, float* y, int32_t* argmax, int64_t planes, int64_t h, int64_t w, int64_t k,
                       int64_t stride, int64_t pad, int64_t oh, int64_t ow) {
  const int64_t total = planes * oh * ow;
  if (total <= 0) return;
  // Every index is below the input's or the output's size (padding only lowers them).
  with_index_type(std::max(total, planes * h * w), [&](auto index) {
    using Index = decltype(index);
    maxpool2d_forward_kernel<Index><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        x, y, argmax, static_cast<Index>(planes), static_cast<Index>(h), static_cast<Index>(w), static_cast<Index>(k),
        static_cast<Index>(stride), static_cast<Index>(pad), static_cast<Index>(oh), static_cast<Index>(ow));
  });
  DTRAIN_CUDA_CHECK_LAUNCH();
}

void maxpool2d_backward(const float* dy, const int32_t* argmax, float* dx, int64_t planes, int64_t hw, int64_t ohw) {
  const int64_t total = planes * ohw;
  if (total <= 0) return;
  with_index_type(std::max(total, planes * hw), [&](auto index) {
    using Index = decltype(index);
    maxpool2d_backward_kernel<Index><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        dy, argmax, dx, static_cast<Index>(planes), static_cast<Index>(hw), static_cast<Index>(ohw));
  });
  DTRAIN_CUDA_CHECK_LAUNCH();
}

}  // namespace dtrain::cuda
