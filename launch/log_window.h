#pragma once
// The training statistics between two log lines. Each step adds this rank's statistics and the
// progress display redraws from them; on the log interval the ranks sum them in one small
// all-reduce, rank 0 reports the global means (a progress report and a metrics.jsonl "train"
// record) and the window starts over.
#include <cstdint>
#include <vector>

#include "core/clock.h"
#include "launch/metrics.h"

namespace dtrain {

class Communicator;

// One optimizer step's training statistics on this rank.
struct StepStats {
  std::vector<float> sample_losses;  // in sample order: the window sums them one by one, in double
  int64_t correct = 0;               // samples whose highest logit is the label
  double comm_s = 0;                 // the gradient all-reduces' time (ParamSync)
  float lr = 0;                      // the learning rate of the optimizer step
  float grad_norm = 0;               // after the all-reduce: the same on every rank
  std::string nonfinite;             // the first non-finite gradient when grad_norm is not finite
};

class LogWindow {
 public:
  // Opens the window at `begin`; data_wait_s: the training loader's wait_seconds() then.
  // metrics: null on ranks that write none.
  LogWindow(Communicator& comm, double timeout_s, Progress& progress, MetricsLog* metrics, Clock::time_point begin,
            double data_wait_s);
  void add(const StepStats& step);
  // Every step: `status` with this rank's means so far, to Progress::update.
  void update(ProgressStatus status);
  // Collective, on the log interval: `status` with the global means to the progress report and a
  // metrics.jsonl record, then a new window. data_wait_s: the loader's wait_seconds() now;
  // elapsed_s: the run's time so far.
  void report(ProgressStatus status, double elapsed_s, double data_wait_s);

 private:
  void restart(double data_wait_s);

  Communicator& comm_;
  double timeout_s_;
  Progress& progress_;
  MetricsLog* metrics_;
  Clock::time_point begin_;
  double data_wait_mark_;
  double loss_ = 0, comm_s_ = 0;
  int64_t correct_ = 0, samples_ = 0, steps_ = 0;
};

}  // namespace dtrain
