#include "data/sampler.h"

#include <numeric>

#include "core/error.h"
#include "core/rng.h"

namespace dtrain::data {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t epoch_seed(uint64_t seed, int64_t epoch) {
  return splitmix64(seed ^ splitmix64(static_cast<uint64_t>(epoch)));
}

DistributedSampler::DistributedSampler(int64_t dataset_size, uint64_t seed, int64_t epoch, int rank, int world,
                                       bool shuffle, bool drop_last)
    : size_(dataset_size), seed_(seed), rank_(rank), world_(world), shuffle_(shuffle), drop_last_(drop_last) {
  DTRAIN_CHECK(world >= 1 && rank >= 0 && rank < world, "DistributedSampler: rank ", rank, " outside world of ", world);
  DTRAIN_CHECK(dataset_size >= 0, "DistributedSampler: dataset size ", dataset_size);
  DTRAIN_CHECK(epoch >= 0, "DistributedSampler: epoch ", epoch, " is negative");
  num_samples_ = drop_last ? size_ / world_ : (size_ + world_ - 1) / world_;
  DTRAIN_CHECK(size_ == 0 || num_samples_ > 0, "DistributedSampler: ", size_, " samples cannot feed ", world_,
               " ranks with drop_last (each rank would get none)");
  set_epoch(epoch);
}

std::vector<int64_t> DistributedSampler::permutation(int64_t n, uint64_t seed, int64_t epoch, bool shuffle) {
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  if (!shuffle || n < 2) return perm;
  Generator gen(RngKey{epoch_seed(seed, epoch), 0, static_cast<uint32_t>(RngPurpose::sampler)});
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(gen.below(static_cast<uint64_t>(i) + 1));
    std::swap(perm[i], perm[j]);
  }
  return perm;
}

void DistributedSampler::set_epoch(int64_t epoch) {
  DTRAIN_CHECK(epoch >= 0, "DistributedSampler: epoch ", epoch, " is negative");
  state_ = {epoch, 0};
  build();
}

void DistributedSampler::build() {
  indices_.clear();
  if (size_ == 0) return;
  const std::vector<int64_t> perm = permutation(size_, seed_, state_.epoch, shuffle_);
  indices_.reserve(static_cast<size_t>(num_samples_));
  for (int64_t i = 0; i < num_samples_; ++i) {
    const int64_t global = rank_ + i * static_cast<int64_t>(world_);
    indices_.push_back(perm[static_cast<size_t>(global % size_)]);  // wraps around when padding
  }
}

std::vector<int64_t> DistributedSampler::next(int64_t count) {
  const int64_t take = std::min(count, remaining());
  std::vector<int64_t> out(indices_.begin() + state_.position, indices_.begin() + state_.position + take);
  state_.position += take;
  return out;
}

void DistributedSampler::restore(const SamplerState& state) {
  DTRAIN_CHECK(state.position >= 0 && state.position <= num_samples_, "DistributedSampler: saved position ",
               state.position, " is outside [0, ", num_samples_, "]");
  if (state.epoch != state_.epoch) set_epoch(state.epoch);
  state_.position = state.position;
}

}  // namespace dtrain::data
