#pragma once
// Accuracy of an ONNX model (run by dtrain's engine, as the server runs it) on a classification
// dataset: /x is fed as stored (the model holds the normalisation), /y are the labels.
#include <cstdint>
#include <string>

#include "inference/onnx_engine.h"

namespace dtrain {

struct OnnxEvalResult {
  int64_t correct = 0, total = 0;
  double seconds = 0;
  double accuracy() const { return total ? static_cast<double>(correct) / static_cast<double>(total) : 0.0; }
};

// Runs the model's "class" output (or the argmax of its first output) over the whole dataset in
// batches of `batch_size`. Throws naming the file when /x does not match the model's input.
OnnxEvalResult evaluate_onnx(const OnnxModel& model, const std::string& data_path, int64_t batch_size = 256);

}  // namespace dtrain
