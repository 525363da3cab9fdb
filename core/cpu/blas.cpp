// CPU GEMM through OpenBLAS's cblas interface (row-major).
#include <cblas.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "core/cpu/parallel.h"
#include "core/kernels.h"

extern "C" char* openblas_get_corename(void);

namespace dtrain::cpu {

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // C = beta * C (OpenBLAS handles k = 0, but be explicit)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  if (m == 1) {  // one row: GEMV, which packs nothing
    const auto incx = static_cast<blasint>(trans_a ? lda : 1);
    if (trans_b)  // B [n, k]: c = B a
      cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<blasint>(n), static_cast<blasint>(k), alpha, b,
                  static_cast<blasint>(ldb), a, incx, beta, c, 1);
    else  // B [k, n]: c = B^T a
      cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<blasint>(k), static_cast<blasint>(n), alpha, b,
                  static_cast<blasint>(ldb), a, incx, beta, c, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

void set_blas_threads(int threads) {
  openblas_set_num_threads(threads);
  set_parallel_threads(threads);  // the non-GEMM passes follow the same policy (core/cpu/parallel.h)
}
int blas_threads() { return openblas_get_num_threads(); }
const char* blas_core_name() { return openblas_get_corename(); }

// 0: SSE only, 1: AVX, 2: AVX2 + FMA, 3: AVX-512 (F, BW, DQ, VL): OpenBLAS's x86-64 kernel tiers.
int blas_core_tier(const char* name) {
  if (name == nullptr) return 0;
  for (const char* n : {"SkylakeX", "Cooperlake", "SapphireRapids"})
    if (std::strcmp(name, n) == 0) return 3;
  for (const char* n : {"Haswell", "Zen", "Excavator"})
    if (std::strcmp(name, n) == 0) return 2;
  for (const char* n : {"Sandybridge", "Bulldozer", "Piledriver", "Steamroller"})
    if (std::strcmp(name, n) == 0) return 1;
  return 0;
}

const char* blas_cpu_core() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  // __builtin_cpu_supports also checks that the OS saves the AVX / AVX-512 registers (XGETBV).
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  if (__builtin_cpu_supports("avx")) return "Sandybridge";
#endif
  return nullptr;
}

void restart_with_better_blas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;  // the user's (or our earlier) choice stands
  const char* better = blas_cpu_core();
  if (blas_core_tier(better) <= blas_core_tier(blas_core_name())) return;
  const char* picked = blas_core_name();
  if (setenv("DTRAIN_BLAS_DETECTED", picked, 1) != 0 || setenv("OPENBLAS_CORETYPE", better, 1) != 0) return;
  // The resolved path, not /proc/self/exe: the process keeps its name (ps, pgrep, top).
  char self[4096];
  const ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len > 0) {
    self[len] = '\0';
    execv(self, argv);
  }
  std::fprintf(stderr,
               "warning: OpenBLAS chose %s kernels for this CPU, which supports %s kernels; restarting with "
               "OPENBLAS_CORETYPE=%s failed (%s): set it yourself\n",
               picked, better, better, std::strerror(errno));
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv("DTRAIN_BLAS_DETECTED");
}

}  // namespace dtrain::cpu
