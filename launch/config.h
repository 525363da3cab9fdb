#pragma once
// The training configuration: one struct per INI section. Every key is read from the INI file
// and may be overridden on the command line as --section.key=value; the defaults live here, in
// the member initialisers, and `dtrain train --help` prints them. Unknown keys and values that do
// not parse are errors naming the key.
#include <cstdint>
#include <string>
#include <vector>

#include "core/model.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"

namespace dtrain {

struct DataConfig {
  std::string train = "data/fmnist-train.h5";
  std::string test = "data/fmnist-test.h5";  // "" : no evaluation
  int64_t max_memory_mb = 1024;              // largest block of a rank's shard held in memory
  int prefetch = 2;                          // batches prepared ahead on a background thread
  bool shuffle = true;
  int augment_crop_padding = 0;
  bool augment_flip = false;
  int64_t eval_windows = 0;  // token data: validation windows evaluated (0: every non-overlapping one)
};

struct TrainSection {
  int64_t epochs = 10;
  int64_t max_steps = 0;     // > 0: stop after this many optimizer steps (overrides epochs)
  int64_t stop_at_step = 0;  // > 0: stop there with a checkpoint, as if interrupted (the schedule still spans the run)
  int64_t batch_size = 64;   // per rank, per micro-step
  int accumulation = 1;      // micro-steps per optimizer step
  uint64_t seed = 42;
  int64_t eval_every = 0;             // steps between evaluations; 0: at the end of every epoch
  int64_t log_every = 50;             // steps between log lines / metrics records
  std::string device = "cpu";         // cpu | cuda | cuda:N (cuda: the local rank's GPU)
  bool allow_tf32 = false;            // cuda: TF32 tensor cores for f32 GEMMs
  std::string precision = "f32";      // f32 | bf16 (cuda: bf16 GEMM inputs, f32 everything else)
  int threads = 0;                    // BLAS threads per rank; 0: cores on the node / ranks on the node
  std::string on_nonfinite = "stop";  // stop | skip: a step whose gradient norm is NaN or infinite
  int max_skipped = 5;                // skip: consecutive skipped steps that end the run
};

struct CommSection {
  std::string backend = "auto";  // auto | mpi | nccl | single
  double bucket_mb = 25;
  double first_bucket_mb = 1;
  double timeout_s = 300;
  int64_t check_every = 1000;     // steps between cross-rank parameter checksums; 0: never
  std::string compress = "none";  // none | bf16
  bool fingerprint = true;        // check each collective's fingerprint across ranks before it runs
  int zero = 0;                   // 1: ZeRO-1 (optimizer state sharded across ranks)
};

struct CheckpointSection {
  std::string dir;              // "" : <log.dir>/ckpt
  int64_t every = 0;            // steps between checkpoints; 0: only at the end (and on SIGTERM)
  int keep_last = 3;            // newest K kept; 0: keep all
  std::string resume = "none";  // none | auto | PATH
};

struct LogSection {
  std::string dir = "run";        // metrics.jsonl (and the default checkpoint dir) go here
  std::string progress = "auto";  // auto (bar on a terminal, lines otherwise) | bar | lines | none
  std::string trace;              // Chrome-trace JSON path ("" : none)
  bool all_ranks = false;         // log from every rank, not only rank 0
  std::string level = "info";     // trace | debug | info | warn | error
};

struct TrainConfig {
  TrainConfig() {
    model.input_shape = Shape{};  // auto: from the training data
    model.num_classes = 0;        // auto: from the training data
  }
  ModelConfig model;  // [model] type, hidden, dropout, activation, input_shape, num_classes, options
  DataConfig data;
  OptimizerConfig optim;    // [optim] type, lr, momentum, ...
  ScheduleConfig schedule;  // [optim] schedule, warmup_steps, step_size, gamma, min_lr, total_steps
  float clip_norm = 0;      // [optim] clip_norm: global-norm gradient clipping (0: off)
  TrainSection train;
  CommSection comm;
  CheckpointSection checkpoint;
  LogSection log;
  std::string source;  // the INI file it came from ("" when none)

  std::string checkpoint_dir() const { return checkpoint.dir.empty() ? log.dir + "/ckpt" : checkpoint.dir; }
};

struct TrainArgs {
  TrainConfig config;
  bool help = false;
  std::string help_text;  // usage + every key with its default (filled when help is true)
};

// Parses `dtrain train` arguments: --config FILE.ini, --section.key=value overrides (CLI wins),
// --resume (= --checkpoint.resume) and --trace (= --log.trace). Throws dtrain::Error naming the
// key or file on any problem; validate() has run on the result.
TrainArgs parse_train_args(const std::vector<std::string>& args);
// Parses INI text (e.g. a checkpoint's stored config) with the same keys; `origin` names it in errors.
TrainConfig parse_config_text(const std::string& ini, const std::string& origin);
// Semantic checks (ranges, enumerations), each error naming its key.
void validate(const TrainConfig& config);
// The full resolved configuration as INI text (every key, one section each); parse_config_text
// of it gives back the same configuration.
std::string to_ini(const TrainConfig& config);

}  // namespace dtrain
