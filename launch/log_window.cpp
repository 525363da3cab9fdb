#include "launch/log_window.h"

#include <algorithm>

#include "comm/communicator.h"
#include "launch/collective_wait.h"

namespace dtrain {

LogWindow::LogWindow(Communicator& comm, double timeout_s, Progress& progress, MetricsLog* metrics,
                     Clock::time_point begin, double data_wait_s)
    : comm_(comm),
      timeout_s_(timeout_s),
      progress_(progress),
      metrics_(metrics),
      begin_(begin),
      data_wait_mark_(data_wait_s) {}

void LogWindow::add(const StepStats& step) {
  for (float loss : step.sample_losses) loss_ += loss;
  correct_ += step.correct;
  samples_ += static_cast<int64_t>(step.sample_losses.size());
  comm_s_ += step.comm_s;
  ++steps_;
}

void LogWindow::update(ProgressStatus status) {
  status.loss = samples_ ? loss_ / static_cast<double>(samples_) : 0;
  status.accuracy = samples_ ? static_cast<double>(correct_) / static_cast<double>(samples_) : 0;
  status.samples_per_s = static_cast<double>(samples_ * comm_.size()) / std::max(1e-9, seconds_since(begin_));
  progress_.update(status);
}

void LogWindow::report(ProgressStatus status, double elapsed_s, double data_wait_s) {
  Tensor sums = Tensor::from_vector(
      std::vector<float>{static_cast<float>(loss_), static_cast<float>(correct_), static_cast<float>(samples_)},
      Shape{3}, comm_.device());
  wait_or_abort(comm_.allreduce(sums, ReduceOp::sum), timeout_s_, "allreduce of the training loss");
  const std::vector<float> g = sums.to_vector<float>();
  const double window_s = seconds_since(begin_);
  const double data_wait = data_wait_s - data_wait_mark_;
  status.loss = g[2] > 0 ? g[0] / g[2] : 0;
  status.accuracy = g[2] > 0 ? g[1] / g[2] : 0;
  status.samples_per_s = g[2] / std::max(1e-9, window_s);
  progress_.report(status, comm_s_, data_wait);
  if (metrics_)
    metrics_->record(JsonObject()
                         .add("type", "train")
                         .add("step", status.step)
                         .add("epoch", status.epoch + 1)
                         .add("loss", status.loss)
                         .add("accuracy", status.accuracy)
                         .add("lr", status.lr)
                         .add("samples_per_s", status.samples_per_s)
                         .add("unit", status.rate_unit)
                         .add("comm_s", comm_s_)
                         .add("data_wait_s", data_wait)
                         .add("steps", steps_)
                         .add("time_s", elapsed_s));
  restart(data_wait_s);
}

void LogWindow::restart(double data_wait_s) {
  begin_ = Clock::now();
  loss_ = comm_s_ = 0;
  correct_ = samples_ = steps_ = 0;
  data_wait_mark_ = data_wait_s;
}

}  // namespace dtrain
