#pragma once
// DTRAIN_CPU_CLONES before a hot CPU loop's function: GCC compiles it for AVX-512 (x86-64-v4),
// AVX2 + FMA (x86-64-v3) and the baseline, and the loader picks the best the CPU runs (ifunc),
// so one binary vectorises wide on every machine it lands on. The loop must vectorise on its own
// (no loads under a condition; the file built with -fno-trapping-math to if-convert compares).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
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

#include <cstdlib>
#include <string_view>

namespace dtrain::cpu {
// False when the environment sets DTRAIN_CPU_SIMD=0 (read once): the hand-written AVX-512 paths
// then give way to the portable loops, so one machine tests both (they give the same bits).
inline bool cpu_simd_allowed() {
  static const bool allowed = [] {
    const char* env = std::getenv("DTRAIN_CPU_SIMD");
    return env == nullptr || std::string_view(env) != "0";
  }();
  return allowed;
}
}  // namespace dtrain::cpu
