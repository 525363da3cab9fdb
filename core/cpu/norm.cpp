// CPU kernels for layer normalisation over the last dim.
#include <cmath>

#include "core/kernels.h"

namespace dtrain::cpu {

// mean = sum x / D, var = sum (x - mean)^2 / D, rstd = 1 / sqrt(var + eps),
// y = (x - mean) rstd gamma + beta
void layernorm_forward(const float* x, const float* gamma, const float* beta, float* y, float* mean, float* rstd,
                       int64_t rows, int64_t cols, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    float s = 0.0f;
    for (int64_t j = 0; j < cols; ++j) s += xr[j];
    const float m = s / static_cast<float>(cols);
    float v = 0.0f;
    for (int64_t j = 0; j < cols; ++j) v += (xr[j] - m) * (xr[j] - m);
    const float rs = 1.0f / std::sqrt(v / static_cast<float>(cols) + eps);
    for (int64_t j = 0; j < cols; ++j) yr[j] = (xr[j] - m) * rs * gamma[j] + beta[j];
    mean[r] = m;
    rstd[r] = rs;
  }
}

// xhat = (x - mean) rstd, g = dy gamma:
// dx = rstd (g - mean(g) - xhat mean(g xhat)); dgamma += sum_rows dy xhat; dbeta += sum_rows dy
void layernorm_backward(const float* dy, const float* x, const float* gamma, const float* mean, const float* rstd,
                        float* dx, float* dgamma, float* dbeta, int64_t rows, int64_t cols) {
  const float inv_cols = 1.0f / static_cast<float>(cols);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    const float* dyr = dy + r * cols;
    float* dxr = dx + r * cols;
    const float m = mean[r], rs = rstd[r];
    float g_mean = 0.0f, gx_mean = 0.0f;
    for (int64_t j = 0; j < cols; ++j) {
      const float xhat = (xr[j] - m) * rs, g = dyr[j] * gamma[j];
      g_mean += g;
      gx_mean += g * xhat;
      dgamma[j] += dyr[j] * xhat;
      dbeta[j] += dyr[j];
    }
    g_mean *= inv_cols;
    gx_mean *= inv_cols;
    for (int64_t j = 0; j < cols; ++j) {
      const float xhat = (xr[j] - m) * rs;
      dxr[j] = rs * (dyr[j] * gamma[j] - g_mean - xhat * gx_mean);
    }
  }
}

}  // namespace dtrain::cpu
