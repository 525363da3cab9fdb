#pragma once
// The training statistics between two log lines. Each micro-batch adds its loss and hits to a
// StepTally where the model runs and each step its timings to the window; the progress display
// redraws from them; on the log interval the ranks sum them in one small all-reduce, rank 0
// reports the global means (a progress report and a metrics.jsonl "train" record) and the window
// starts over.
#include <cstdint>
#include <vector>

#include "core/clock.h"
#include "core/tensor.h"
#include "launch/metrics.h"

namespace dtrain {

class Communicator;

// This rank's training loss and hits, summed on the model's device: a micro-batch adds its loss
// sum and its count of hits without the host reading anything, and the host reads the sums once
// per log line (on a GPU a read waits for every queued kernel: a read per step would keep the host
// from running ahead of the GPU).
class StepTally {
 public:
  struct Totals {
    double loss = 0;  // the sum of the per-prediction losses
    int64_t hits = 0, predictions = 0;
  };
  // capacity: micro-batches between two reads (more fold into the host sums, with one read).
  StepTally(Device device, int64_t capacity);
  void begin_step();  // the micro-batches from here on are the step's (last_step_mean_loss)
  void add(const Tensor& per_prediction_loss, const Tensor& logits, const Tensor& labels);
  Totals peek() const;                                           // reads the sums (on a GPU: waits for it)
  Totals take();                                                 // peek() and start over
  double last_step_mean_loss() const;                            // reads the current step's micro-batches
  bool free_to_read() const { return sums_.device().is_cpu(); }  // a read costs nothing
  int64_t predictions() const { return predictions_; }           // counted on the host: no read

 private:
  std::vector<float> read_sums() const;  // the micro-batches' loss sums [0, used_)

  Tensor sums_;  // f32 [capacity]: each micro-batch's loss sum (summed in double on the host)
  Tensor hits_;  // i64 [1]
  int64_t used_ = 0, step_begin_ = 0;
  int64_t predictions_ = 0, step_predictions_ = 0;
  Totals folded_;                // micro-batches beyond capacity, read early
  double step_folded_loss_ = 0;  // the current step's part of folded_
};

// One optimizer step's training statistics on this rank (the losses and hits are in the StepTally).
struct StepStats {
  double comm_s = 0;                       // the gradient all-reduces' time (ParamSync)
  double gather_s = 0, gather_wait_s = 0;  // comm.zero=1: the parameter all-gathers', and the forward's wait
  float lr = 0;                            // the learning rate of the optimizer step
  float grad_norm = 0;                     // after the all-reduce: the same on every rank
  std::string nonfinite;                   // the first non-finite gradient when grad_norm is not finite
};

class LogWindow {
 public:
  // Opens the window at `begin`; data_wait_s: the training loader's wait_seconds() then.
  // metrics: null on ranks that write none.
  LogWindow(Communicator& comm, double timeout_s, StepTally& tally, Progress& progress, MetricsLog* metrics,
            Clock::time_point begin, double data_wait_s);
  void add(const StepStats& step);
  // Every step: `status` with this rank's means so far (where reading them costs nothing; on a GPU
  // the last report's), to Progress::update.
  void update(ProgressStatus status);
  // Collective, on the log interval: `status` with the global means to the progress report and a
  // metrics.jsonl record, then a new window. data_wait_s: the loader's wait_seconds() now;
  // elapsed_s: the run's time so far.
  void report(ProgressStatus status, double elapsed_s, double data_wait_s);

 private:
  void restart(double data_wait_s);

  Communicator& comm_;
  double timeout_s_;
  StepTally& tally_;
  Progress& progress_;
  MetricsLog* metrics_;
  Clock::time_point begin_;
  double data_wait_mark_;
  double comm_s_ = 0, gather_s_ = 0, gather_wait_s_ = 0;
  int64_t steps_ = 0;
  double last_loss_ = 0, last_accuracy_ = 0;  // the last report's global means
};

}  // namespace dtrain
