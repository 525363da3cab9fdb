#include "launch/log_window.h"

#include <algorithm>

#include "comm/communicator.h"
#include "core/dispatch.h"
#include "core/kernels.h"
#include "launch/collective_wait.h"

namespace dtrain {

StepTally::StepTally(Device device, int64_t capacity)
    : sums_(Tensor::zeros(Shape{std::max<int64_t>(capacity, 1)}, DType::f32, device)),
      hits_(Tensor::zeros(Shape{1}, DType::i64, device)) {}

void StepTally::begin_step() {
  step_begin_ = used_;
  step_predictions_ = 0;
  step_folded_loss_ = 0;
}

void StepTally::add(const Tensor& per_prediction_loss, const Tensor& logits, const Tensor& labels) {
  if (used_ == sums_.numel()) {  // full: fold into the host sums (one read) and go on
    const std::vector<float> sums = read_sums();
    for (int64_t i = 0; i < used_; ++i) {
      folded_.loss += sums[i];
      if (i >= step_begin_) step_folded_loss_ += sums[i];
    }
    folded_.hits += hits_.to_vector<int64_t>()[0];
    hits_.zero();
    used_ = step_begin_ = 0;
  }
  const Device d = sums_.device();
  const int64_t rows = labels.numel(), cols = logits.shape().back();
  DTRAIN_DISPATCH(d, sum, per_prediction_loss.data<float>(), per_prediction_loss.numel(), sums_.data<float>() + used_);
  DTRAIN_DISPATCH(d, count_hits, logits.data<float>(), labels.data<int64_t>(), rows, cols, hits_.data<int64_t>());
  ++used_;
  predictions_ += rows;
  step_predictions_ += rows;
}

std::vector<float> StepTally::read_sums() const {
  return used_ > 0 ? sums_.flat_range(0, used_).to_vector<float>() : std::vector<float>{};
}

StepTally::Totals StepTally::peek() const {
  Totals t = folded_;
  for (float s : read_sums()) t.loss += s;
  t.hits += hits_.to_vector<int64_t>()[0];
  t.predictions = predictions_;
  return t;
}

StepTally::Totals StepTally::take() {
  const Totals t = peek();
  hits_.zero();
  used_ = step_begin_ = 0;
  predictions_ = step_predictions_ = 0;
  step_folded_loss_ = 0;
  folded_ = {};
  return t;
}

double StepTally::last_step_mean_loss() const {
  if (step_predictions_ == 0) return 0.0;
  const std::vector<float> sums = read_sums();
  double loss = step_folded_loss_;
  for (int64_t i = step_begin_; i < used_; ++i) loss += sums[i];
  return loss / static_cast<double>(step_predictions_);
}

LogWindow::LogWindow(Communicator& comm, double timeout_s, StepTally& tally, Progress& progress, MetricsLog* metrics,
                     Clock::time_point begin, double data_wait_s)
    : comm_(comm),
      timeout_s_(timeout_s),
      tally_(tally),
      progress_(progress),
      metrics_(metrics),
      begin_(begin),
      data_wait_mark_(data_wait_s) {}

void LogWindow::add(const StepStats& step) {
  comm_s_ += step.comm_s;
  gather_s_ += step.gather_s;
  gather_wait_s_ += step.gather_wait_s;
  ++steps_;
}

void LogWindow::update(ProgressStatus status) {
  status.loss = last_loss_;
  status.accuracy = last_accuracy_;
  if (tally_.free_to_read()) {
    const StepTally::Totals t = tally_.peek();
    status.loss = t.predictions ? t.loss / static_cast<double>(t.predictions) : 0;
    status.accuracy = t.predictions ? static_cast<double>(t.hits) / static_cast<double>(t.predictions) : 0;
  }
  status.samples_per_s =
      static_cast<double>(tally_.predictions() * comm_.size()) / std::max(1e-9, seconds_since(begin_));
  progress_.update(status);
}

void LogWindow::report(ProgressStatus status, double elapsed_s, double data_wait_s) {
  const StepTally::Totals t = tally_.take();
  Tensor sums = Tensor::from_vector(
      std::vector<float>{static_cast<float>(t.loss), static_cast<float>(t.hits), static_cast<float>(t.predictions)},
      Shape{3}, comm_.device());
  wait_or_abort(comm_.allreduce(sums, ReduceOp::sum), timeout_s_, "allreduce of the training loss");
  const std::vector<float> g = sums.to_vector<float>();
  const double window_s = seconds_since(begin_);
  const double data_wait = data_wait_s - data_wait_mark_;
  status.loss = g[2] > 0 ? g[0] / g[2] : 0;
  status.accuracy = g[2] > 0 ? g[1] / g[2] : 0;
  status.samples_per_s = g[2] / std::max(1e-9, window_s);
  last_loss_ = status.loss;
  last_accuracy_ = status.accuracy;
  progress_.report(status, comm_s_, data_wait);
  if (metrics_) {
    JsonObject line = JsonObject()
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
                          .add("time_s", elapsed_s);
    if (gather_s_ > 0) line.add("gather_s", gather_s_).add("gather_wait_s", gather_wait_s_);
    metrics_->record(line);
  }
  restart(data_wait_s);
}

void LogWindow::restart(double data_wait_s) {
  begin_ = Clock::now();
  comm_s_ = 0;
  gather_s_ = gather_wait_s_ = 0;
  steps_ = 0;
  data_wait_mark_ = data_wait_s;
}

}  // namespace dtrain
