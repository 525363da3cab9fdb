#pragma once
// TokenWindows: batches of windows of ctx + 1 consecutive tokens from a token corpus (data/dataset.h:
// /tokens, u16 or i32, and vocab_size), for a language model: x is a window's first ctx tokens, y the
// same window shifted by one (the next token at every position).
//  - random (training): rank r holds only its contiguous shard of the file, tokens
//    [r * N / world, (r + 1) * N / world), and draws every window inside it; the window at position
//    p of epoch e starts at a uniform offset drawn from the Philox stream (epoch_seed(seed, e), r,
//    RngPurpose::sampler) at counter p, so it is a pure function of (seed, e, r, p) and restore()
//    resumes bit for bit. Every rank draws the same count per epoch (that of the smallest shard).
//  - fixed (evaluation): the non-overlapping windows starting at k * ctx, optionally thinned to
//    max_windows evenly spaced ones; rank r takes windows r, r + world, ... (no padding, so ranks
//    may differ by one). The same on every epoch and for every seed.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/batch_source.h"
#include "data/dataset.h"
#include "data/sampler.h"

namespace dtrain::data {

// Opens a token corpus and checks it: /tokens 1-D u16 or i32 with at least 2 tokens, vocab_size > 0
// and (check_tokens) every token in [0, vocab_size). Each failure throws one dtrain::Error naming the
// file and the problem. Fills path, tokens, num_classes (= vocab_size), x_dtype (i64, as batches
// hold them), chunk_rows, x_filter, source and created_by; size and sample_shape (windows, [ctx])
// are a TokenWindows' business.
DatasetInfo inspect_tokens(const std::string& path, bool check_tokens = true);

struct TokenWindowOptions {
  int64_t ctx = 128;        // tokens of x (and of y) per window
  int64_t batch_size = 16;  // windows per batch (an epoch's last batch may be short)
  uint64_t seed = 0;        // random windows only
  bool random = true;       // true: random windows in this rank's shard; false: fixed windows
  int64_t max_windows = 0;  // fixed: use at most this many windows, evenly spaced (0: all)
};

class TokenWindows : public BatchSource {
 public:
  // Opens and checks the file, reads the tokens this rank needs (checking each is in
  // [0, vocab_size)) and starts epoch 0.
  TokenWindows(const std::string& path, int rank, int world, TokenWindowOptions options);

  // info().size: windows per epoch over all ranks; sample_shape [ctx]; num_classes = vocab_size.
  const DatasetInfo& info() const override { return info_; }
  const TokenWindowOptions& options() const { return options_; }
  int64_t samples_per_epoch() const override { return windows_per_epoch_; }  // this rank's windows

  void set_epoch(int64_t epoch) override;
  // Up to batch_size windows: x, y i64 [B, ctx] on the host; indices their first tokens' offsets.
  std::optional<Batch> next() override;
  SamplerState state() const override { return state_; }
  void restore(const SamplerState& state) override;  // throws if position is outside [0, samples_per_epoch()]
  double wait_seconds() const override { return wait_s_; }

 private:
  void open_random(int rank, int world);
  void open_fixed(int rank, int world);
  void read_tokens(int64_t begin, int64_t end);
  int64_t window_start(int64_t position) const;  // file offset of this epoch's window at `position`

  DatasetInfo info_;
  TokenWindowOptions options_;
  int rank_ = 0;
  int64_t windows_per_epoch_ = 0;
  int64_t begin_ = 0, end_ = 0;        // the file's tokens [begin_, end_) held in tokens_
  std::vector<int32_t> tokens_;        // random: this rank's shard; fixed: the span of its windows
  std::vector<int64_t> fixed_starts_;  // fixed: this rank's window offsets, in order
  SamplerState state_;
  double wait_s_ = 0;
};

}  // namespace dtrain::data
