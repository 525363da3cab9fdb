#pragma once
// BatchSource: what the trainer reads batches from. Two kinds of dataset file, two sources:
//  - classification files (/x, /y): data::Loader (data/loader.h), samples in a DistributedSampler's order;
//  - token corpora (/tokens): data::TokenWindows (data/token_windows.h), windows of ctx + 1 tokens.
// Both resume from a SamplerState (epoch, samples this rank has consumed in the epoch).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "data/dataset.h"
#include "data/sampler.h"

namespace dtrain::data {

struct Batch {
  // Classification: x f32 [B, sample_shape...] on the host, after normalisation and augmentation
  // (with LoaderOptions::raw_u8, the raw u8 pixels, augmented); y i64 [B]; indices the dataset
  // indices of the B samples.
  // Tokens: x i64 [B, ctx] (a window's first ctx tokens), y i64 [B, ctx] (the same shifted by one);
  // indices the windows' first token offsets in the file.
  Tensor x;
  Tensor y;
  std::vector<int64_t> indices;
  int64_t size() const { return static_cast<int64_t>(indices.size()); }
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual const DatasetInfo& info() const = 0;
  virtual int64_t samples_per_epoch() const = 0;  // this rank's, equal on all ranks when training
  virtual void set_epoch(int64_t epoch) = 0;      // a new epoch from position 0
  // The next batch of this epoch, or nullopt at its end (then call set_epoch).
  virtual std::optional<Batch> next() = 0;
  virtual SamplerState state() const = 0;
  virtual void restore(const SamplerState& state) = 0;
  virtual double wait_seconds() const = 0;  // total time next() blocked on data
};

// Whether `path` is a token corpus (has /tokens) rather than a classification file; throws naming
// the file when it cannot be opened as HDF5.
bool is_token_dataset(const std::string& path);

}  // namespace dtrain::data
