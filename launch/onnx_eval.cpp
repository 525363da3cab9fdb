#include "launch/onnx_eval.h"

#include <algorithm>
#include <chrono>

#include "core/clock.h"
#include "core/ops.h"
#include "data/dataset.h"
#include "data/h5.h"

namespace dtrain {

OnnxEvalResult evaluate_onnx(const OnnxModel& model, const std::string& data_path, int64_t batch_size) {
  DTRAIN_CHECK(batch_size > 0, "evaluation batch size must be positive, got ", batch_size);
  const data::DatasetInfo info = data::inspect_dataset(data_path);
  DTRAIN_CHECK(model.inputs().size() == 1, "the model takes ", model.inputs().size(),
               " inputs; evaluation on a dataset feeds exactly one");
  const TensorInfo& in = model.inputs()[0];
  DTRAIN_CHECK(in.dtype == info.x_dtype, data_path, ": /x holds ", dtype_name(info.x_dtype),
               " samples, the model's input '", in.name, "' takes ", dtype_name(in.dtype));
  // Samples fit when they hold the model's per-sample elements: the cnn takes [1, H, W] for a
  // dataset of plain [H, W] images, as the trainer feeds it.
  Shape model_sample;
  bool fits = !in.shape.empty();
  for (size_t i = 1; fits && i < in.shape.size(); ++i) {
    fits = in.shape[i] > 0;
    model_sample.push_back(in.shape[i]);
  }
  fits = fits && model_sample.numel() == info.sample_shape.numel();
  DTRAIN_CHECK(fits, data_path, ": samples of shape ", info.sample_shape.str(), " do not fit the model's input '",
               in.name, "' ", shape_str(in.shape));
  size_t class_output = 0;
  for (size_t i = 0; i < model.outputs().size(); ++i)
    if (model.outputs()[i].name == "class") class_output = i;

  const auto begin = Clock::now();
  const h5::File file = h5::File::open(data_path);
  const h5::Dataset x = file.dataset("/x"), y = file.dataset("/y");
  const std::vector<int64_t> labels = y.read_all<int64_t>();
  OnnxEvalResult r;
  for (int64_t first = 0; first < info.size; first += batch_size) {
    const int64_t n = std::min(batch_size, info.size - first);
    Shape shape{n};
    for (int64_t d : info.sample_shape) shape.push_back(d);
    Tensor batch = Tensor::empty(shape, info.x_dtype);
    x.read_rows_raw(h5::native_type(info.x_dtype), batch.raw_data(), static_cast<size_t>(batch.numel()), first, n);
    Shape as_model{n};
    for (int64_t d : model_sample) as_model.push_back(d);
    Tensor out = model.run({batch.view(as_model)})[class_output];
    if (out.dtype() != DType::i64) out = ops::argmax_rows(out.view(Shape{n, -1}));
    const std::vector<int64_t> pred = out.to_vector<int64_t>();
    DTRAIN_CHECK(static_cast<int64_t>(pred.size()) == n, "the model's class output has ", pred.size(),
                 " values for a batch of ", n);
    for (int64_t i = 0; i < n; ++i) r.correct += pred[i] == labels[first + i];
    r.total += n;
  }
  r.seconds = seconds_since(begin);
  return r;
}

}  // namespace dtrain
