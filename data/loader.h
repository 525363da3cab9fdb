#pragma once
// Loader: delivers this rank's samples of a dataset file (data/dataset.h) in the order a
// DistributedSampler gives, normalised u8 -> f32, optionally augmented, in batches prepared ahead
// on a background thread. Reading, by what fits under max_memory_bytes:
//  - all of /x fits: read once on first use and kept for every epoch (resident());
//  - otherwise this rank's samples only, in blocks of at most max_memory_bytes (the whole
//    epoch's shard in one block when it fits), each block read as one hyperslab per chunk
//    covering the block's rows in that chunk.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/tensor.h"
#include "data/batch_source.h"
#include "data/dataset.h"
#include "data/sampler.h"

namespace dtrain::data {

struct AugmentOptions {
  int crop_padding = 0;          // > 0: random crop of the original size from the image zero-padded by this
  bool horizontal_flip = false;  // flip left-right with probability 1/2
  bool enabled() const { return crop_padding > 0 || horizontal_flip; }
};

struct LoaderOptions {
  int64_t batch_size = 64;
  uint64_t seed = 0;
  bool shuffle = true;
  bool drop_last = false;        // sampler: drop the tail rather than pad by wrapping to a multiple of world
  bool drop_last_batch = false;  // drop a final partial batch
  int64_t max_memory_bytes = int64_t{1} << 30;  // data.max_memory: largest block of the shard held at once
  int prefetch_depth = 2;                       // batches prepared ahead on a background thread; 0 reads synchronously
  AugmentOptions augment;                       // images: sample shape [H, W] or [C, H, W]; off by default
  // u8 files: batches keep the raw pixels (x u8, 4x fewer bytes to a GPU) for the caller to
  // normalise where the model runs, x * info().x_scale + x_shift (ops::to_dtype), with the same
  // result as the loader's own normalisation
  bool raw_u8 = false;
};

class Loader : public BatchSource {
 public:
  // Opens and checks the file (inspect_dataset) and starts epoch 0.
  Loader(const std::string& path, int rank, int world, LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  const DatasetInfo& info() const override { return info_; }
  const LoaderOptions& options() const { return options_; }
  int64_t samples_per_epoch() const override { return sampler_.num_samples(); }  // this rank's, equal on all ranks
  int64_t steps_per_epoch() const;
  bool resident() const { return resident_; }  // all of /x held in memory across epochs
  bool streaming() const { return !resident_ && block_samples_ < samples_per_epoch(); }  // shard > max_memory

  void set_epoch(int64_t epoch) override;  // a new permutation from position 0
  // The next batch of this epoch, or nullopt at its end (then call set_epoch).
  std::optional<Batch> next() override;

  // (epoch, samples delivered by next()) for checkpoints; restore() continues from there.
  SamplerState state() const override { return {sampler_.epoch(), delivered_}; }
  void restore(const SamplerState& state) override;

  double wait_seconds() const override { return wait_s_; }  // total time next() blocked on data
  int64_t bytes_read() const;                               // bytes of /x read from the file so far

 private:
  class Producer;
  struct Queued {
    std::optional<Batch> batch;
    std::exception_ptr error;
  };
  void start(int64_t position);
  void stop();
  void prefetch_loop();

  DatasetInfo info_;
  LoaderOptions options_;
  DistributedSampler sampler_;
  int64_t block_samples_ = 0;
  bool resident_ = false;
  std::shared_ptr<const std::vector<int64_t>> labels_;  // all of /y (checked at open)
  std::unique_ptr<Producer> producer_;
  int64_t delivered_ = 0;
  double wait_s_ = 0;
  bool epoch_done_ = false;

  std::mutex queue_mutex_;  // guards queue_ and stop_
  std::condition_variable queue_changed_;
  std::deque<Queued> queue_;
  bool stop_ = false;
  std::thread prefetch_thread_;
};

}  // namespace dtrain::data
