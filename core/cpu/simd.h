#pragma once
// DTRAIN_CPU_CLONES before a hot CPU loop's function: GCC compiles it for AVX-512 (x86-64-v4),
// AVX2 + FMA (x86-64-v3) and the baseline, and the loader picks the best the CPU runs (ifunc),
// so one binary vectorises wide on every machine it lands on. The loop must vectorise on its own
// (no loads under a condition; the file built with -fno-trapping-math to if-convert compares).
// Not under ThreadSanitizer: the loader runs the ifunc resolvers before TSan's runtime starts,
// and the instrumented resolver crashes the program at load.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define DTRAIN_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DTRAIN_CPU_CLONES
#endif

// DTRAIN_X86_SIMD: intrinsics may be used under __attribute__((target(...))) after a
// __builtin_cpu_supports check (hand-written AVX-512 where the compiler's loops fall short).
#if defined(__x86_64__) && defined(__GNUC__)
#define DTRAIN_X86_SIMD 1
#include <immintrin.h>
#else
#define DTRAIN_X86_SIMD 0
#endif

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace dtrain::cpu {
// The widest hand-written SIMD path this CPU runs: AVX-512 (F, BW, VL), AVX2 (+ FMA) or none.
// The environment may cap it (read once): DTRAIN_CPU_SIMD=avx2 or =0 (avx512: no cap), so one machine tests every
// path (they give the same bits).
enum class SimdLevel { none, avx2, avx512 };
inline SimdLevel cpu_simd_level() {
  static const SimdLevel level = [] {
#if DTRAIN_X86_SIMD
    const char* env = std::getenv("DTRAIN_CPU_SIMD");
    const std::string_view cap = env != nullptr ? env : "";
    if (cap != "" && cap != "avx512" && cap != "avx2" && cap != "0")  // a tuning knob: warn, do not stop a run
      std::fprintf(stderr, "warning: DTRAIN_CPU_SIMD='%s' is not avx512, avx2 or 0; using the widest path\n", env);
    if (cap == "0") return SimdLevel::none;
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl");
    if (avx512 && cap != "avx2") return SimdLevel::avx512;
    return avx2 ? SimdLevel::avx2 : SimdLevel::none;
#else
    return SimdLevel::none;
#endif
  }();
  return level;
}
}  // namespace dtrain::cpu
