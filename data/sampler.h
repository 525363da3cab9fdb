#pragma once
// DistributedSampler: one global permutation of [0, N) per epoch, identical on every rank (a
// Fisher-Yates shuffle driven by the counter-based Philox stream (seed mixed with epoch, rank 0,
// RngPurpose::sampler)); rank r takes positions r, r + world, ... so all ranks get the same count.
// drop_last=false pads the permutation by wrapping around to a multiple of world; true drops the tail.
#include <cstdint>
#include <vector>

namespace dtrain::data {

// The Philox seed for one epoch's streams: `seed` and `epoch` mixed (splitmix64), so each epoch
// gets an unrelated permutation (RngPurpose::sampler) and augmentation (RngPurpose::augment).
uint64_t epoch_seed(uint64_t seed, int64_t epoch);

// What a checkpoint stores to resume mid-epoch.
struct SamplerState {
  int64_t epoch = 0;
  int64_t position = 0;  // samples of this rank already consumed this epoch
  bool operator==(const SamplerState&) const = default;
};

class DistributedSampler {
 public:
  DistributedSampler(int64_t dataset_size, uint64_t seed, int64_t epoch, int rank, int world, bool shuffle = true,
                     bool drop_last = false);

  int64_t dataset_size() const { return size_; }
  int64_t num_samples() const { return num_samples_; }  // per rank per epoch, equal on all ranks
  int64_t epoch() const { return state_.epoch; }
  int64_t position() const { return state_.position; }
  int rank() const { return rank_; }
  int world() const { return world_; }

  void set_epoch(int64_t epoch);  // a new permutation; position back to 0
  // This rank's dataset indices for the current epoch, in order (all num_samples() of them).
  const std::vector<int64_t>& indices() const { return indices_; }
  // The next up to `count` indices from position(), advancing it.
  std::vector<int64_t> next(int64_t count);
  int64_t remaining() const { return num_samples_ - state_.position; }

  SamplerState state() const { return state_; }
  void restore(const SamplerState& state);  // throws if position is outside [0, num_samples()]

  // The global permutation of [0, N) for an epoch (the same on every rank).
  static std::vector<int64_t> permutation(int64_t n, uint64_t seed, int64_t epoch, bool shuffle);

 private:
  void build();
  int64_t size_;
  uint64_t seed_;
  int rank_, world_;
  bool shuffle_, drop_last_;
  int64_t num_samples_ = 0;
  SamplerState state_;
  std::vector<int64_t> indices_;
};

}  // namespace dtrain::data
