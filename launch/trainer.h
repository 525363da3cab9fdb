#pragma once
// Trainer: the data-parallel training loop of `dtrain train`.
//
//   per optimizer step: for each micro-batch of this rank (train.accumulation of them, fewer at
//   an epoch's end): forward, softmax cross-entropy, backward with ParamSync launching bucket
//   all-reduces as gradients become ready; then clipping, the LR schedule, the optimizer step
//   and ParamSync's checksum check. Around it: distributed evaluation, progress and
//   metrics.jsonl (rank 0), checkpoints (rank 0 writes, every rank resumes), a Chrome trace,
//   and a stop request (SIGINT/SIGTERM/SIGUSR1) that every rank agrees on at the end of a step.
#include <memory>
#include <string>

#include "launch/config.h"

namespace dtrain {

class Communicator;
class Model;

struct EvalResult {
  double loss = -1, accuracy = -1;
  int64_t samples = 0;
};

struct TrainResult {
  int64_t steps = 0;  // optimizer steps done in total (including those before a resume)
  int64_t epoch = 0;
  EvalResult test;            // the last evaluation (samples 0: none)
  bool interrupted = false;   // stopped early by SIGINT/SIGTERM
  std::string checkpoint;     // the last checkpoint written ("" when none)
  double seconds = 0;         // wall time of the training loop
  int64_t skipped_steps = 0;  // train.on_nonfinite=skip: steps whose update was dropped
  std::string failure;        // why the run ended early with an error ("" otherwise): non-finite steps
};

// SIGINT, SIGTERM and SIGUSR1 set a stop request instead of killing the process (idempotent).
void install_stop_handlers();
bool stop_requested();
void request_stop();  // as if a signal arrived (tests)

class Trainer {
 public:
  // Collective over the launch: creates the communicator, the model, the optimizer, the data
  // loaders and ParamSync, checks the model signature across ranks and resumes if asked.
  explicit Trainer(TrainConfig config);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  TrainResult run();
  EvalResult evaluate();  // collective; needs data.test

  const TrainConfig& config() const;  // resolved: model.input_shape and num_classes filled in
  Model& model();
  Communicator& communicator();

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace dtrain
