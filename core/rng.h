#pragma once
// Counter-based random numbers (Philox4x32-10). Every stream is keyed by
// (seed, rank, purpose); element i of a fill uses counter (offset + i), so the
// values do not depend on thread count or device.
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define DTRAIN_HD __host__ __device__ __forceinline__
#else
#define DTRAIN_HD inline
#endif

namespace dtrain {

// Purposes for RngKey; new streams get new numbers, never reuse one.
enum class RngPurpose : uint32_t {
  init = 1,
  dropout = 2,
  sampler = 3,
  augment = 4,
  data_synth = 5,
  test = 6,
  generate = 7,  // sampling the tokens a language model generates
};

struct RngKey {
  uint64_t seed = 0;
  uint32_t rank = 0;
  uint32_t purpose = 0;
};

struct Philox4 {
  uint32_t v[4];
};

// One Philox4x32-10 block for a 128-bit counter and the 64-bit key derived from an RngKey.
DTRAIN_HD Philox4 philox4x32(uint64_t counter_lo, uint64_t counter_hi, uint32_t k0, uint32_t k1) {
  uint32_t c0 = static_cast<uint32_t>(counter_lo), c1 = static_cast<uint32_t>(counter_lo >> 32);
  uint32_t c2 = static_cast<uint32_t>(counter_hi), c3 = static_cast<uint32_t>(counter_hi >> 32);
  for (int round = 0; round < 10; ++round) {
    // (c0, c1, c2, c3) <- (hi(M1*c2) ^ c1 ^ k0, lo(M1*c2), hi(M0*c0) ^ c3 ^ k1, lo(M0*c0))
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    c0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    c1 = static_cast<uint32_t>(p1);
    c2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c3 = static_cast<uint32_t>(p0);
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}

// The stream identity folded into Philox's key (k0, k1) and the high counter word.
struct RngStream {
  uint32_t k0, k1;
  uint64_t hi;
};
DTRAIN_HD RngStream rng_stream(const RngKey& key) {
  return {static_cast<uint32_t>(key.seed), static_cast<uint32_t>(key.seed >> 32),
          (static_cast<uint64_t>(key.purpose) << 32) | key.rank};
}

// Uniform float in [0, 1) from 32 random bits (24 significant bits).
DTRAIN_HD float uint_to_unit_float(uint32_t x) { return static_cast<float>(x >> 8) * (1.0f / 16777216.0f); }

// The i-th uniform [0,1) value of a stream at counter offset `offset`.
DTRAIN_HD float rng_uniform_at(const RngStream& s, uint64_t index) {
  const Philox4 r = philox4x32(index / 4, s.hi, s.k0, s.k1);
  return uint_to_unit_float(r.v[index % 4]);
}

// The i-th standard normal value: Box-Muller over the two uniforms of counter pair i.
DTRAIN_HD float rng_normal_at(const RngStream& s, uint64_t index) {
  const Philox4 r = philox4x32(index / 2, s.hi ^ 0x8000000000000000ull, s.k0, s.k1);
  const uint32_t a = r.v[(index % 2) * 2], b = r.v[(index % 2) * 2 + 1];
  const float u1 = (static_cast<float>(a >> 8) + 1.0f) * (1.0f / 16777217.0f);  // (0, 1]
  const float u2 = uint_to_unit_float(b);
  return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530717958647692f * u2);
}

// A stateful stream: each draw advances the counter, so (key, offset) is the whole state
// (it is what a checkpoint stores).
class Generator {
 public:
  Generator() = default;
  explicit Generator(RngKey key, uint64_t offset = 0) : key_(key), offset_(offset) {}
  const RngKey& key() const { return key_; }
  uint64_t offset() const { return offset_; }
  void set_offset(uint64_t offset) { offset_ = offset; }
  // Reserves `n` consecutive counters and returns the first one.
  uint64_t advance(uint64_t n) {
    const uint64_t first = offset_;
    offset_ += n;
    return first;
  }
  float uniform() { return rng_uniform_at(rng_stream(key_), advance(1)); }
  float normal() { return rng_normal_at(rng_stream(key_), advance(1)); }
  uint64_t next_u64() {
    const RngStream s = rng_stream(key_);
    const Philox4 r = philox4x32(advance(1), s.hi ^ 0x4000000000000000ull, s.k0, s.k1);
    return (static_cast<uint64_t>(r.v[0]) << 32) | r.v[1];
  }
  // Uniform integer in [0, n) without modulo bias (rejection sampling).
  uint64_t below(uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = next_u64();
    while (x >= limit);
    return x % n;
  }

 private:
  RngKey key_{};
  uint64_t offset_ = 0;
};

}  // namespace dtrain
