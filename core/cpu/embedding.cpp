// CPU kernels for the embedding lookup and its scatter-add gradient.
#include <algorithm>

#include "core/kernels.h"

namespace dtrain::cpu {

void embedding_forward(const int64_t* ids, const float* table, float* y, int64_t n, int64_t dim) {
  for (int64_t i = 0; i < n; ++i) std::copy_n(table + ids[i] * dim, dim, y + i * dim);
}

void embedding_backward(const int64_t* ids, const float* dy, float* dtable, int64_t n, int64_t dim) {
  for (int64_t i = 0; i < n; ++i) {
    float* row = dtable + ids[i] * dim;
    const float* g = dy + i * dim;
    for (int64_t j = 0; j < dim; ++j) row[j] += g[j];
  }
}

}  // namespace dtrain::cpu
