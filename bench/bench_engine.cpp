// bench_engine: single-request latency of dtrain's ONNX engine (the one dtrain-serve runs) on an
// exported model, per batch size: median and p90 of `iters` runs after warm-up, on a zero input.
// scripts/bench-serve.sh runs it beside bench/ort_latency.js (onnxruntime-node, same model, batch
// sizes and thread count) so the two are compared in one run.
// Usage: bench_engine MODEL.onnx [--batches 1,64] [--iters 200] [--threads 1] [--device cpu|cuda:N] [--json FILE]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "inference/onnx_engine.h"
#include "core/kernels.h"

namespace dtrain {
namespace {

int run(int argc, char** argv) {
  DTRAIN_CHECK(argc >= 2, "usage: bench_engine MODEL.onnx [--batches 1,64] [--iters 200] [--threads 1] [--device cpu|cuda:N] [--json FILE]");
  const std::string path = argv[1];
  std::vector<int64_t> batches{1, 64};
  int iters = 200, threads = 1;
  std::string json_path, device = "cpu";
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    DTRAIN_CHECK(i + 1 < argc, "bench_engine: ", a, " needs a value");
    const std::string v = argv[++i];
    if (a == "--batches") {
      batches.clear();
      for (size_t p = 0; p <= v.size();) {
        const size_t c = std::min(v.find(',', p), v.size());
        batches.push_back(std::stoll(v.substr(p, c - p)));
        DTRAIN_CHECK(batches.back() > 0, "bench_engine: --batches must be positive, got ", v);
        p = c + 1;
      }
    } else if (a == "--iters") {
      iters = std::stoi(v);
    } else if (a == "--threads") {
      threads = std::stoi(v);
    } else if (a == "--device") {
      device = v;
    } else if (a == "--json") {
      json_path = v;
    } else {
      fail("bench_engine: unknown option ", a);
    }
  }
  DTRAIN_CHECK(iters > 0 && threads > 0, "bench_engine: --iters and --threads must be positive");
  cpu::set_blas_threads(threads);
  const OnnxModel model = OnnxModel::load(path, Device::parse(device));
  DTRAIN_CHECK(model.inputs().size() == 1, "bench_engine: ", path, " has ", model.inputs().size(),
               " inputs; this benchmark feeds one");
  std::ofstream json;
  if (!json_path.empty()) json.open(json_path, std::ios::app);
  for (int64_t b : batches) {
    Shape shape;
    for (int64_t d : model.inputs()[0].shape) shape.push_back(d < 0 ? b : d);
    const Tensor x = Tensor::zeros(shape, model.inputs()[0].dtype);
    // One request as dtrain-serve runs it: a host input in, the outputs back on the host (which
    // also waits for a GPU to finish).
    const bool on_host = model.device().is_cpu();
    auto request = [&] {
      for (const Tensor& t : model.run({x}))
        if (!on_host) (void)t.to(Device::cpu());
    };
    for (int i = 0; i < 10; ++i) request();
    std::vector<double> ms;
    for (int i = 0; i < iters; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      request();
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    const std::string line = detail::concat("{\"bench\":\"engine\",\"impl\":\"dtrain\",\"model\":\"", path,
                                            "\",\"blas\":\"", cpu::blas_core_name(), "\",\"batch\":", b,
                                            ",\"device\":\"", device, "\",\"threads\":", threads, ",\"iters\":", iters,
                                            ",\"median_ms\":", ms[ms.size() / 2], ",\"p90_ms\":", ms[ms.size() * 9 / 10], "}");
    std::printf("%s\n", line.c_str());
    if (json) json << line << "\n";
  }
  return 0;
}

}  // namespace
}  // namespace dtrain

int main(int argc, char** argv) {
  dtrain::cpu::restart_with_better_blas_kernels(argv);
  try {
    return dtrain::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_engine: %s\n", e.what());
    return 1;
  }
}
