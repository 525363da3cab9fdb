// Collective fingerprints: building, describing and comparing them (the exchange is the backend's).
#include "comm/fingerprint.h"

#include "core/error.h"

namespace dtrain {

Fingerprint make_fingerprint(int64_t seq, CollectiveKind kind, int64_t step, const Tensor* t, int64_t op,
                             int64_t root) {
  Fingerprint f;
  f.seq = seq;
  f.kind = static_cast<int64_t>(kind);
  f.op = op;
  f.root = root;
  f.step = step;
  if (t) {
    f.dtype = static_cast<int64_t>(t->dtype());
    f.count = t->numel();
  }
  return f;
}

namespace {

const char* op_name(int64_t op) { return op >= 0 && op <= 2 ? reduce_op_name(static_cast<ReduceOp>(op)) : "?"; }

}  // namespace

std::string describe_fingerprint(const Fingerprint& f) {
  std::string text;
  switch (static_cast<CollectiveKind>(f.kind)) {
    case CollectiveKind::broadcast: text = "broadcast"; break;
    case CollectiveKind::allreduce: text = detail::concat("allreduce(", op_name(f.op), ")"); break;
    case CollectiveKind::allgather: text = "allgather"; break;
    case CollectiveKind::reduce_scatter: text = detail::concat("reduce_scatter(", op_name(f.op), ")"); break;
    case CollectiveKind::allgather_pieces: text = "allgather_pieces"; break;
    case CollectiveKind::barrier: text = "barrier"; break;
    default: text = detail::concat("unknown collective ", f.kind);
  }
  if (static_cast<CollectiveKind>(f.kind) != CollectiveKind::barrier) {
    const bool known = f.dtype >= 0 && f.dtype <= static_cast<int64_t>(DType::u8);
    text += detail::concat(" of ", f.count, " ", known ? dtype_name(static_cast<DType>(f.dtype)) : "?");
  }
  if (f.root >= 0) text += detail::concat(" from rank ", f.root);
  if (f.step >= 0) text += detail::concat(" at step ", f.step);
  return text;
}

namespace {

bool same(const Fingerprint& a, const Fingerprint& b) {
  return a.seq == b.seq && a.kind == b.kind && a.op == b.op && a.dtype == b.dtype && a.count == b.count &&
         a.root == b.root && a.step == b.step;
}

}  // namespace

std::string fingerprint_mismatch(std::span<const Fingerprint> all) {
  for (size_t r = 1; r < all.size(); ++r) {
    if (same(all[0], all[r])) continue;
    return detail::concat("collective mismatch at collective #", all[0].seq, ": rank 0 issued ",
                          describe_fingerprint(all[0]), ", rank ", r, " issued ", describe_fingerprint(all[r]),
                          " (every rank must issue the same collectives in the same order: did a rank skip a step, "
                          "or build a different model or bucket plan?)");
  }
  return {};
}

}  // namespace dtrain
