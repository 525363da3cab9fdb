// `dtrain eval --model M.onnx --data TEST.h5`: accuracy of an exported model as dtrain's own ONNX
// engine (the one dtrain-serve uses) runs it.
#include <boost/program_options.hpp>

#include <cstdio>
#include <iostream>

#include "inference/onnx_engine.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/onnx_eval.h"

namespace po = boost::program_options;

namespace dtrain {

int cmd_eval(const std::vector<std::string>& args) {
  std::string model_path, data, device = "cpu";
  int64_t batch_size = 256;
  po::options_description opts("dtrain eval options");
  opts.add_options()("help,h", "show this help")("model", po::value(&model_path),
                                                 "exported model (REPO/NAME/V/model.onnx)")(
      "data", po::value(&data), "classification dataset (.h5), fed as stored")(
      "batch-size", po::value(&batch_size)->default_value(256), "samples per engine run")(
      "device", po::value(&device)->default_value("cpu"), "cpu | cuda | cuda:N");
  const CommandUsage eval{"eval",
                          "usage: dtrain eval --model M.onnx --data TEST.h5 [--batch-size 256] [--device cpu]\n"};
  po::variables_map vm;
  if (const auto stop = parse_command_options(eval, args, opts, vm)) return *stop;
  if (model_path.empty() || data.empty() || batch_size <= 0)
    return eval.error("--model and --data are required (and --batch-size must be positive)");
  const OnnxModel model = OnnxModel::load(model_path, Device::parse(device));
  const OnnxEvalResult r = evaluate_onnx(model, data, batch_size);
  std::printf("accuracy %.4f (%lld/%lld) model %s data %s (%.0f samples/s)\n", r.accuracy(),
              static_cast<long long>(r.correct), static_cast<long long>(r.total), model_path.c_str(), data.c_str(),
              r.seconds > 0 ? static_cast<double>(r.total) / r.seconds : 0.0);
  return 0;
}

}  // namespace dtrain
