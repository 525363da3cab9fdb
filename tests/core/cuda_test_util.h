#pragma once
// Helpers for the CPU-vs-CUDA kernel tests: skipping without a GPU, random inputs, comparisons
// that report the first few differing elements.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/gpu.h"
#include "core/tensor.h"

// Skips the current test, with the reason printed, when no GPU is visible; with DTRAIN_REQUIRE_GPU=1
// in the environment (scripts/gpu-check.sh on the GPU machine) that is a failure instead, so a
// broken setup cannot pass as "skipped".
#define DTRAIN_SKIP_WITHOUT_GPU()                                                                                    \
  do {                                                                                                               \
    if (::dtrain::gpu::device_count() == 0) {                                                                        \
      const char* dtrain_require_ = std::getenv("DTRAIN_REQUIRE_GPU");                                               \
      if (dtrain_require_ && std::string(dtrain_require_) == "1")                                                    \
        FAIL() << "DTRAIN_REQUIRE_GPU=1 but no GPU: " << ::dtrain::gpu::no_device_reason();                          \
      GTEST_SKIP() << "no CUDA device visible (" << ::dtrain::gpu::no_device_reason() << "): this test needs a GPU"; \
    }                                                                                                                \
  } while (0)

namespace dtrain::test {

inline const Device kGpu = Device::cuda(0);

// Sizes around the block size (256) and the grid-stride limit, plus a single element.
inline const std::vector<int64_t> kOddSizes = {1, 7, 255, 257, 1000, 100003};

// |got - want| <= rel * max(1, |want|) elementwise; NaN never passes.
inline void expect_close(const Tensor& want, const Tensor& got, float rel, const std::string& what) {
  const std::vector<float> w = want.to_vector<float>(), g = got.to_vector<float>();
  ASSERT_EQ(w.size(), g.size()) << what;
  int reported = 0;
  for (size_t i = 0; i < w.size() && reported < 5; ++i) {
    const float tol = rel * std::max(1.0f, std::fabs(w[i]));
    if (!(std::fabs(w[i] - g[i]) <= tol)) {
      ADD_FAILURE() << what << ": element " << i << " cpu " << w[i] << " cuda " << g[i] << " (tolerance " << tol << ")";
      ++reported;
    }
  }
}

// Bitwise equal elements (T must match both tensors' dtype).
template <typename T>
void expect_equal(const Tensor& want, const Tensor& got, const std::string& what) {
  const std::vector<T> w = want.to_vector<T>(), g = got.to_vector<T>();
  ASSERT_EQ(w.size(), g.size()) << what;
  int reported = 0;
  for (size_t i = 0; i < w.size() && reported < 5; ++i)
    if (std::memcmp(&w[i], &g[i], sizeof(T)) != 0) {
      ADD_FAILURE() << what << ": element " << i << " differs between cpu and cuda";
      ++reported;
    }
}

// A fixture with a fixed random stream; skips when no GPU is visible.
class CpuVsCuda : public ::testing::Test {
 protected:
  void SetUp() override { DTRAIN_SKIP_WITHOUT_GPU(); }
  Tensor randn(const Shape& shape, float stddev = 1.0f) { return Tensor::randn(shape, 0.0f, stddev, gen_); }
  Tensor empty_cpu(const Shape& shape, DType dtype = DType::f32) { return Tensor::empty(shape, dtype); }
  Tensor empty_gpu(const Shape& shape, DType dtype = DType::f32) { return Tensor::empty(shape, dtype, kGpu); }
  Generator gen_{RngKey{20240601, 0, static_cast<uint32_t>(RngPurpose::test)}};
};

}  // namespace dtrain::test
