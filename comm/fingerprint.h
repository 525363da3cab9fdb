#pragma once
// Collective fingerprints: before each collective, every rank shares what it is about to issue
// (sequence number, kind, reduction, dtype, element count, root and the caller's step tag) in one
// small allgather, so ranks that disagree (one skipped a step, built a different bucket plan or
// calls a collective the others do not) fail at once on every rank with a message naming both
// sides, instead of hanging until the watchdog or reducing mismatched buffers.
//
// The exchange itself always matches up: every collective is preceded by the same fixed-size
// allgather, so the k-th exchange of each rank pairs with the k-th of every other rank.
#include <cstdint>
#include <span>
#include <string>

#include "comm/communicator.h"

namespace dtrain {

enum class CollectiveKind : int64_t {
  broadcast = 1,
  allreduce = 2,
  allgather = 3,
  barrier = 4,
  reduce_scatter = 5,
  allgather_pieces = 6
};

// Seven int64 words on the wire (kFingerprintWords); -1 where a field does not apply.
struct Fingerprint {
  int64_t seq = 0;   // this communicator's collective count before this one
  int64_t kind = 0;  // CollectiveKind
  int64_t op = -1;   // ReduceOp for allreduce
  int64_t dtype = -1;
  int64_t count = 0;  // elements per rank
  int64_t root = -1;  // broadcast
  int64_t step = -1;  // Communicator::step_tag() when issued
};
inline constexpr int kFingerprintWords = 7;
static_assert(sizeof(Fingerprint) == kFingerprintWords * sizeof(int64_t));

Fingerprint make_fingerprint(int64_t seq, CollectiveKind kind, int64_t step, const Tensor* t = nullptr, int64_t op = -1,
                             int64_t root = -1);
// "allreduce(sum) of 1024 f32 at step 10"
std::string describe_fingerprint(const Fingerprint& f);
// Every rank's fingerprint in rank order: empty when all agree, else one line naming rank 0's
// collective and the first rank whose differs.
std::string fingerprint_mismatch(std::span<const Fingerprint> all);

}  // namespace dtrain
