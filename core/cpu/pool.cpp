// CPU kernels for 2-D max pooling over planes [n*c, h, w]; padding never wins the max.
#include <limits>

#include "core/kernels.h"

namespace dtrain::cpu {

void maxpool2d_forward(const float* x, float* y, int32_t* argmax, int64_t planes, int64_t h, int64_t w, int64_t k,
                       int64_t stride, int64_t pad, int64_t oh, int64_t ow) {
  for (int64_t p = 0; p < planes; ++p) {
    const float* in = x + p * h * w;
    if (pad == 0) {  // every window lies inside the plane: no bounds checks
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          const int64_t first = oy * stride * w + ox * stride;
          int64_t best_i = first;
          for (int64_t ki = 0; ki < k; ++ki)
            for (int64_t kj = 0; kj < k; ++kj) {
              const int64_t i = first + ki * w + kj;
              if (in[i] > in[best_i]) best_i = i;
            }
          const int64_t o = (p * oh + oy) * ow + ox;
          y[o] = in[best_i];
          argmax[o] = static_cast<int32_t>(best_i);
        }
      continue;
    }
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        float best = -std::numeric_limits<float>::infinity();
        int64_t best_i = -1;
        for (int64_t ki = 0; ki < k; ++ki) {
          const int64_t iy = oy * stride - pad + ki;
          if (iy < 0 || iy >= h) continue;
          for (int64_t kj = 0; kj < k; ++kj) {
            const int64_t ix = ox * stride - pad + kj;
            if (ix < 0 || ix >= w) continue;
            const float v = in[iy * w + ix];
            if (v > best || best_i < 0) {
              best = v;
              best_i = iy * w + ix;
            }
          }
        }
        const int64_t o = (p * oh + oy) * ow + ox;
        y[o] = best;
        argmax[o] = static_cast<int32_t>(best_i);
      }
  }
}

void maxpool2d_backward(const float* dy, const int32_t* argmax, float* dx, int64_t planes, int64_t hw,
                        int64_t ohw) {
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t o = 0; o < ohw; ++o) {
      const int32_t i = argmax[p * ohw + o];
      if (i >= 0) dx[p * hw + i] += dy[p * ohw + o];
    }
}

}  // namespace dtrain::cpu
