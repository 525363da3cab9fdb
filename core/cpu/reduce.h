#pragma once
// Sums the CPU kernels share. A fixed shape of partial sums (8 lanes, combined as a fixed tree),
// so the result depends only on the data and its length: never on the thread count or the ISA.
#include <cstdint>

namespace dtrain::cpu {

inline float sum_lanes(const float* x, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += x[i + j];
  for (int j = 0; i + j < n; ++j) acc[j] += x[i + j];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

}  // namespace dtrain::cpu
