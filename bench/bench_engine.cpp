// bench_engine: single-request latency of dtrain's ONNX engine (the one dtrain-serve runs) on an
// exported model, per batch size: median and p90 of `iters` runs after warm-up, on a zero input.
// scripts/bench-serve.sh runs it beside bench/ort_latency.js (onnxruntime-node, same model, batch
// sizes and thread count) so the two are compared in one run.
// Usage: bench_engine MODEL.onnx [--batches 1,64] [--iters 200] [--threads 1] [--device cpu|cuda:N] [--json FILE]
#include <string>
#include <vector>

#include "bench/harness.h"
#include "core/kernels.h"
#include "inference/onnx_engine.h"

namespace dtrain {
namespace {

const bench::Program kProgram{
    .name = "bench_engine",
    .usage =
        "usage: bench_engine MODEL.onnx [--batches 1,64] [--iters 200] [--threads 1] [--device cpu|cuda:N] "
        "[--json FILE]",
    .options = {"--batches", "--iters", "--threads", "--device", "--json"},
    .positional = {"MODEL.onnx"},
    .required = 1};

// Latencies of `iters` requests of `batch` rows after 10 unmeasured ones.
std::vector<double> request_ms(const OnnxModel& model, int64_t batch, int iters) {
  Shape shape;
  for (int64_t d : model.inputs()[0].shape) shape.push_back(d < 0 ? batch : d);
  const Tensor x = Tensor::zeros(shape, model.inputs()[0].dtype);
  // One request as dtrain-serve runs it: a host input in, the outputs back on the host (which
  // also waits for a GPU to finish).
  const bool on_host = model.device().is_cpu();
  const auto request = [&] {
    for (const Tensor& t : model.run({x}))
      if (!on_host) (void)t.to(Device::cpu());
  };
  return bench::sample_ms(request, 10, iters);
}

void run(const bench::Args& args) {
  const std::string path = args.positional()[0], device = args.text("--device", "cpu");
  const std::vector<int64_t> batches = args.positive_integers("--batches", {1, 64});
  const int iters = static_cast<int>(args.positive_integer("--iters", 200));
  const int threads = static_cast<int>(args.positive_integer("--threads", 1));
  cpu::set_blas_threads(threads);
  const OnnxModel model = OnnxModel::load(path, Device::parse(device));
  DTRAIN_CHECK(model.inputs().size() == 1, path, " has ", model.inputs().size(), " inputs; this benchmark feeds one");
  bench::JsonOutput json(args.text("--json", ""), bench::JsonOutput::Mode::append);
  for (int64_t b : batches) {
    const std::vector<double> ms = request_ms(model, b, iters);
    json.emit(bench::JsonLine("engine")
                  .add("impl", "dtrain")
                  .add("model", path)
                  .add("blas", cpu::blas_core_name())
                  .add("batch", b)
                  .add("device", device)
                  .add("threads", threads)
                  .add("iters", iters)
                  .add("median_ms", bench::percentile(ms, 0.5))
                  .add("p90_ms", bench::percentile(ms, 0.9)));
  }
}

}  // namespace
}  // namespace dtrain

int main(int argc, char** argv) {
  dtrain::cpu::restart_with_better_blas_kernels(argv);
  return dtrain::bench::run_main(dtrain::kProgram, argc, argv, dtrain::run);
}
