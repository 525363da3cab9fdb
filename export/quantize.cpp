#include "export/quantize.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace dtrain {

QuantizedInt8 quantize_int8_per_channel(std::span<const float> w, int64_t channels) {
  const int64_t n = static_cast<int64_t>(w.size());
  DTRAIN_CHECK(channels > 0 && n % channels == 0, "quantize_int8_per_channel: ", n, " weights do not split into ",
               channels, " channels");
  const int64_t per = n / channels;
  QuantizedInt8 q;
  q.values.resize(static_cast<size_t>(n));
  q.scales.resize(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) {
    const float* row = w.data() + c * per;
    float amax = 0.0f;
    for (int64_t j = 0; j < per; ++j) amax = std::max(amax, std::fabs(row[j]));
    const float scale = amax > 0.0f ? amax / 127.0f : 1.0f;
    q.scales[c] = scale;
    for (int64_t j = 0; j < per; ++j) {
      const float r = std::nearbyint(row[j] / scale);  // the default rounding mode: half to even
      q.values[c * per + j] = static_cast<int8_t>(std::clamp(r, -127.0f, 127.0f));
    }
  }
  return q;
}

}  // namespace dtrain
