#pragma once
// Training checkpoints: one HDF5 file per saved step, `DIR/step-<N>.h5` (N zero-padded to 9
// digits), written by rank 0 through h5::AtomicFile (PATH.tmp, fsync, rename) so a crash never
// leaves a partial file under the final name. Layout:
//   /params/<name>              f32, the parameter's shape
//   /optim/<name>/<slot>        f32, the parameter's shape (one per optimizer slot)
//   /rng/<rank>                 u64 [1]: that rank's dropout stream offset (RngPurpose::dropout)
//   /sampler                    i64 [2]: epoch, position (samples of each rank consumed this epoch)
//   /param_groups/weight_decay  u8 [parameters]: 1 where weight decay applies (registration order)
//   attributes on /: step, epoch, world_size, optimizer_type, optimizer_steps, config (the full
//   resolved INI text), signature (Model::signature() lines joined by '\n'), dtrain_version,
//   test_accuracy (-1 when never evaluated), test_loss, input_dtype ("u8" | "f32"), x_scale,
//   x_shift (the dataset's normalisation: the model sees x * x_scale + x_shift; export folds it in),
//   format_version (2), meta_checksum ("xxh3:<16 hex digits>" of the attributes above).
//   Every dataset carries an attribute checksum, "xxh3:<16 hex digits>" of its bytes as stored.
// Every load checks every checksum it reads; a file without format_version (format 1, no checksums)
// loads with a warning that it cannot be verified.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/model.h"
#include "launch/config.h"

#include "core/arena.h"
#include "data/sampler.h"
#include "optim/optimizer.h"

namespace dtrain {

constexpr int64_t kCheckpointFormat = 2;  // 2: checksums on every dataset and on the attributes

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

// Reads the attributes, /rng and /sampler only, checking their checksums. Throws naming the file and
// the missing, bad or damaged field.
CheckpointMeta read_checkpoint_meta(const std::string& path);

// Reads and checks the whole file before touching the model: the signature must equal `signature`
// (else throws "checkpoint PATH does not match the configured model: first difference: ..."
// naming both lines), every /params and (when optimizer is non-null) /optim dataset must exist
// with the parameter's shape and match its checksum. Then copies the values into the arena and the
// slots and sets the optimizer's steps. Returns the meta.
CheckpointMeta load_checkpoint(const std::string& path, ParameterArena& arena, Optimizer* optimizer,
                               const std::vector<std::string>& signature);

// The model a checkpoint was trained as: its stored configuration, the model that describes,
// built on the CPU, and the stored parameters loaded into it (every checksum checked).
struct CheckpointModel {
  CheckpointMeta meta;
  TrainConfig config;
  std::unique_ptr<Model> model;
};
CheckpointModel load_checkpoint_model(const std::string& path);

// The step-<N>.h5 files in dir, newest (highest N) first; empty when dir does not exist.
std::vector<std::string> list_checkpoints(const std::string& dir);

// Deletes all but the newest `keep_last` checkpoints in dir (keep_last <= 0 keeps all).
void prune_checkpoints(const std::string& dir, int keep_last);

// One part of a checkpoint as verify_checkpoint found it.
struct CheckpointCheck {
  std::string name;     // "meta" (the root attributes) or a dataset's path
  std::string what;     // "root attributes", "f32 [256, 784]", ...
  std::string problem;  // "" when it read back whole and matched its checksum
};

struct CheckpointReport {
  std::string path;
  int64_t format = 0;  // 1: written without checksums (not verifiable); 0: not opened
  int64_t step = -1;
  std::vector<CheckpointCheck> parts;
  std::string error;  // why the file could not be opened at all ("" when it could)
  bool ok() const;
  std::string first_problem() const;  // "dataset /params/0.weight: damaged: ..." or ""
};

// Reads the attributes and every dataset of `path` in full and checks each against its checksum
// (`dtrain checkpoint verify`, --resume auto). Does not throw for a damaged or unreadable file.
CheckpointReport verify_checkpoint(const std::string& path);

struct ResumeChoice {
  std::string path;                                           // the newest checkpoint that verified; "" when none did
  std::vector<std::pair<std::string, std::string>> rejected;  // newer ones that did not: file, why
};

// --resume auto: the newest checkpoint in dir that verifies (verify_checkpoint). Each newer one that
// does not is renamed to <name>.corrupt (so keep-last rotation never deletes it) with a warning
// naming the file and the first damaged part. When none verifies, `rejected` also lists the
// *.corrupt files set aside by earlier resumes.
ResumeChoice find_resumable_checkpoint(const std::string& dir);

}  // namespace dtrain
