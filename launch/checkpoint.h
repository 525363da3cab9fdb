#pragma once
// Training checkpoints: one HDF5 file per saved step, `DIR/step-<N>.h5` (N zero-padded to 9
// digits), written by rank 0 through h5::AtomicFile (PATH.tmp, fsync, rename) so a crash never
// leaves a partial file under the final name. Layout:
//   /params/<name>              f32, the parameter's shape
//   /optim/<name>/<slot>        f32, the parameter's shape (one per optimizer slot)
//   /rng/<rank>                 u64 [1]: that rank's dropout stream offset (RngPurpose::dropout)
//   /sampler                    i64 [2]: epoch, position (samples of each rank consumed this epoch)
//   attributes on /: step, epoch, world_size, optimizer_type, optimizer_steps, config (the full
//   resolved INI text), signature (Model::signature() lines joined by '\n'), dtrain_version,
//   test_accuracy (-1 when never evaluated), test_loss, input_dtype ("u8" | "f32"), x_scale,
//   x_shift (the dataset's normalisation: the model sees x * x_scale + x_shift; export folds it in).
#include <cstdint>
#include <string>
#include <vector>

#include "core/arena.h"
#include "data/sampler.h"
#include "optim/optimizer.h"

namespace dtrain {

// Everything in a checkpoint besides the tensors.
struct CheckpointMeta {
  int64_t step = 0;  // optimizer updates applied (the schedule's position)
  int64_t epoch = 0;
  int world_size = 1;
  data::SamplerState sampler;          // equal on every rank
  std::vector<uint64_t> rng_offsets;   // per rank (size world_size): dropout stream offset
  std::string optimizer_type;          // OptimizerConfig::type
  int64_t optimizer_steps = 0;         // Optimizer::steps()
  std::string config;                  // the resolved config, INI text
  std::vector<std::string> signature;  // Model::signature()
  std::string dtrain_version;
  double test_accuracy = -1;  // last evaluation; -1 when none
  double test_loss = -1;
  std::string input_dtype = "f32";      // what clients send: the dataset's /x dtype
  double x_scale = 1.0, x_shift = 0.0;  // normalisation applied to u8 inputs before the model
};

// DIR/step-000000123.h5
std::string checkpoint_path(const std::string& dir, int64_t step);

// Writes a checkpoint of the arena's values and the optimizer's slots (copied to the host when on
// a GPU) atomically to `path`, creating its directory. `optimizer` may be null (no /optim).
// Returns the bytes written. Throws naming the path on any failure, leaving no file behind.
int64_t write_checkpoint(const std::string& path, const ParameterArena& arena, const Optimizer* optimizer,
                         const CheckpointMeta& meta);

// Reads the attributes, /rng and /sampler only. Throws naming the file and the missing or bad field.
CheckpointMeta read_checkpoint_meta(const std::string& path);

// Reads and checks the whole file before touching the model: the signature must equal `signature`
// (else throws "checkpoint PATH does not match the configured model: first difference: ..."
// naming both lines), every /params and (when optimizer is non-null) /optim dataset must exist
// with the parameter's shape. Then copies the values into the arena and the slots and sets the
// optimizer's steps. Returns the meta.
CheckpointMeta load_checkpoint(const std::string& path, ParameterArena& arena, Optimizer* optimizer,
                               const std::vector<std::string>& signature);

// The step-<N>.h5 files in dir, newest (highest N) first; empty when dir does not exist.
std::vector<std::string> list_checkpoints(const std::string& dir);

// Deletes all but the newest `keep_last` checkpoints in dir (keep_last <= 0 keeps all).
void prune_checkpoints(const std::string& dir, int keep_last);

// --resume auto: the newest checkpoint in dir whose meta and tensors read back completely
// (every dataset read once), skipping unreadable or truncated ones with a warning that names the
// file and the reason. "" when dir holds none that reads.
std::string find_resumable_checkpoint(const std::string& dir);

}  // namespace dtrain
