#pragma once
// Threads inside a rank for the CPU passes that are not GEMMs (elementwise, bias, activations,
// pooling, im2col/col2im, losses, optimizers). The thread count is the BLAS thread policy's
// (cpu::set_blas_threads sets both), so one knob (train.threads, --engine-threads) governs a rank.
//
// parallel_for(n, grain, f) calls f(begin, end) on contiguous, disjoint ranges covering [0, n),
// at most one per thread and none shorter than `grain` items (so small passes run inline, on the
// calling thread, with no hand-off). The caller's thread runs the first range and returns when
// all are done. Rules for kernels, so results never depend on the thread count (bitwise):
//  - each output element is written by exactly one range, computed in the same order as a serial
//    loop would (elementwise maps; reductions split over their OUTPUTS, e.g. bias channels);
//  - no atomics and no per-thread partial sums combined afterwards.
// An exception thrown in a range reaches parallel_for's caller once every range has ended.
// A call from inside a range, or while another thread holds the pool (a server's concurrent
// engine calls), runs inline: no nesting, no deadlock.
#include <cstdint>
#include <type_traits>

namespace dtrain::cpu {

int parallel_threads();                  // the pool's size including the caller (>= 1)
void set_parallel_threads(int threads);  // cpu::set_blas_threads calls it; not while a job runs

namespace detail {
using RangeFn = void (*)(void* context, int64_t begin, int64_t end);
void parallel_run(int64_t n, int64_t grain, RangeFn fn, void* context);
}  // namespace detail

template <class F>
void parallel_for(int64_t n, int64_t grain, F&& f) {
  if (n <= 0) return;
  if (n < 2 * grain || parallel_threads() <= 1) {
    f(int64_t{0}, n);
    return;
  }
  using Fn = std::remove_reference_t<F>;
  detail::parallel_run(
      n, grain, [](void* c, int64_t b, int64_t e) { (*static_cast<Fn*>(c))(b, e); },
      const_cast<void*>(static_cast<const void*>(&f)));
}

// Elementwise passes: ranges of at least this many elements (~128 KiB of f32) are worth a thread.
constexpr int64_t kElementGrain = 32 * 1024;

// Passes over rows (or columns) of `cols` elements each: the rows that make up kElementGrain elements.
constexpr int64_t row_grain(int64_t cols) { return cols >= kElementGrain ? 1 : kElementGrain / (cols > 0 ? cols : 1); }

}  // namespace dtrain::cpu
