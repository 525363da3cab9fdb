// bench_core: throughput of the core. Prints one JSON line per measurement, then a table.
//   sgemm        GFLOP/s of square SGEMMs (the anchor; CPU)
//   train_step   forward + loss + backward + SGD update of the registry's mlp and cnn at batch 256
//                and its gpt (4 layers, 128 wide, ctx 128) at 16 windows (samples/s: tokens/s);
//                on the CPU against the time of the identical GEMM calls (same shapes, same order)
//                run alone; with --device cuda:N on that GPU, each step waiting for the GPU
//                (scripts/bench-gpu.sh sets it beside PyTorch's)
// Usage: bench_core [--threads N] [--json FILE] [--reps R] [--only sgemm|mlp|cnn|gpt] [--device cpu|cuda:N]
//                   [--precision f32|bf16] (bf16: cuda GEMMs with bf16 inputs, as train.precision=bf16)
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/harness.h"
#include "core/gpu.h"
#include "core/kernels.h"
#include "core/loss.h"
#include "core/model.h"
#include "core/ops.h"

namespace dtrain {
namespace {

const bench::Program kProgram{
    .name = "bench_core",
    .usage =
        "usage: bench_core [--threads N] [--json FILE] [--reps R] [--only sgemm|mlp|cnn|gpt] [--device cpu|cuda:N] "
        "[--precision f32|bf16]",
    .options = {"--threads", "--json", "--reps", "--only", "--device", "--precision"}};

struct GemmCall {
  bool trans_a, trans_b;
  int64_t m, n, k;
  float beta;
};

// The GEMMs one training step runs, in order: per Linear/Conv2d its forward, dW and dx GEMMs
// (the shapes core/layers/linear.cpp and conv2d.cpp use; the first of them has no dx GEMM), per
// TiedLinear the same, per CausalSelfAttention (core/layers/attention.cpp) two forward and four
// backward GEMMs for each sequence and head; Residual bodies walked in place.
struct StepGemms {
  std::vector<GemmCall> forward, backward;  // backward in the order it runs
  bool first = true;
  void linear(int64_t rows, int64_t in, int64_t out) {
    forward.push_back({false, true, rows, out, in, 0.0f});
    if (!first) backward.insert(backward.begin(), GemmCall{false, false, rows, in, out, 0.0f});
    backward.insert(backward.begin(), GemmCall{true, false, out, in, rows, 1.0f});
    first = false;
  }
  void attention(const CausalSelfAttention& a, const Shape& qkv) {
    const int64_t t = qkv[1], hd = a.head_dim();
    std::vector<GemmCall> back;
    for (int64_t i = 0; i < qkv[0] * a.heads(); ++i) {
      forward.push_back({false, true, t, t, hd, 0.0f});
      forward.push_back({false, false, t, hd, t, 0.0f});
      for (const GemmCall& g : {GemmCall{false, true, t, t, hd, 0.0f}, GemmCall{true, false, t, hd, t, 0.0f},
                                GemmCall{false, false, t, hd, t, 0.0f}, GemmCall{true, false, t, hd, t, 0.0f}})
        back.push_back(g);
    }
    backward.insert(backward.begin(), back.begin(), back.end());
  }
  void walk(const Sequential& net, Shape in) {
    for (const auto& child : net.children()) {
      const Shape out = child->output_shape(in);
      if (const auto* l = dynamic_cast<const Linear*>(child.get())) {
        linear(in.numel() / l->in_features(), l->in_features(), l->out_features());
      } else if (const auto* h = dynamic_cast<const TiedLinear*>(child.get())) {
        linear(in.numel() / h->embedding().embd(), h->embedding().embd(), h->embedding().vocab());
      } else if (const auto* a = dynamic_cast<const CausalSelfAttention*>(child.get())) {
        attention(*a, in);
      } else if (const auto* r = dynamic_cast<const Residual*>(child.get())) {
        walk(r->body(), in);
      } else if (const auto* c = dynamic_cast<const Conv2d*>(child.get())) {
        const int64_t np = out[0] * out[2] * out[3], ck = c->in_channels() * c->kernel() * c->kernel(),
                      oc = c->out_channels();
        forward.push_back({false, false, oc, np, ck, 0.0f});
        if (!first) backward.insert(backward.begin(), GemmCall{true, false, ck, np, oc, 0.0f});
        backward.insert(backward.begin(), GemmCall{false, true, oc, ck, np, 1.0f});
        first = false;
      }
      in = out;
    }
  }
};

std::vector<GemmCall> step_gemms(const Sequential& net, const Shape& in) {
  StepGemms s;
  s.walk(net, in);
  s.forward.insert(s.forward.end(), s.backward.begin(), s.backward.end());
  return s.forward;
}

double gemm_flops(const std::vector<GemmCall>& calls) {
  double f = 0;
  for (const GemmCall& c : calls) f += 2.0 * c.m * c.n * c.k;
  return f;
}

struct Result {
  bench::JsonLine json;
  std::string row;
};

Result bench_sgemm(int64_t n, int threads, int reps) {
  Generator g(RngKey{1, 0, static_cast<uint32_t>(RngPurpose::test)});
  Tensor a = Tensor::randn(Shape{n, n}, 0, 1, g), b = Tensor::randn(Shape{n, n}, 0, 1, g),
         c = Tensor::zeros(Shape{n, n});
  const double ms = bench::median(
      bench::sample_ms([&] { ops::gemm(a, false, b, false, c); }, 1, n >= 2048 ? std::max(3, reps / 2) : reps));
  const double gflops = 2.0 * n * n * n / (ms * 1e6);
  char row[256];
  std::snprintf(row, sizeof row, "sgemm %5ld^3          %10.3f ms  %8.2f GFLOP/s", static_cast<long>(n), ms, gflops);
  return {bench::JsonLine("sgemm").add("n", n).add("threads", threads).add("median_ms", ms, 3).add("gflops", gflops, 2),
          row};
}

// Median time of `reps` runs of the same GEMMs as `calls` alone, on buffers of the same sizes.
double time_gemms_alone(const std::vector<GemmCall>& calls, Generator& g, int reps) {
  std::vector<Tensor> as, bs, cs;
  for (const GemmCall& c : calls) {
    as.push_back(Tensor::randn(Shape{c.m * c.k}, 0, 1, g));
    bs.push_back(Tensor::randn(Shape{c.k * c.n}, 0, 1, g));
    cs.push_back(Tensor::zeros(Shape{c.m * c.n}));
  }
  const auto gemms = [&] {
    for (size_t i = 0; i < calls.size(); ++i) {
      const GemmCall& c = calls[i];
      cpu::gemm(c.trans_a, c.trans_b, c.m, c.n, c.k, 1.0f, as[i].data<float>(), c.trans_a ? c.m : c.k,
                bs[i].data<float>(), c.trans_b ? c.k : c.n, c.beta, cs[i].data<float>(), c.n);
    }
  };
  return bench::median(bench::sample_ms(gemms, 2, reps));
}

// The step on a GPU: samples/s only (the GEMMs-alone comparison is the CPU's).
Result device_result(const std::string& type, int64_t batch, Device device, double step_ms, bool bf16) {
  const double samples_per_s = batch / (step_ms * 1e-3);
  bench::JsonLine json("train_step");
  json.add("model", type).add("batch", batch).add("device", device.str()).add("step_ms", step_ms, 3);
  json.add("precision", bf16 ? "bf16" : "f32").add("samples_per_s", samples_per_s, 1);
  char row[160];
  std::snprintf(row, sizeof row, "step %-4s b%-4ld %-7s %-4s %10.3f ms  %9.1f samples/s", type.c_str(),
                static_cast<long>(batch), device.str().c_str(), bf16 ? "bf16" : "f32", step_ms, samples_per_s);
  return {json, row};
}

// Random integers in [0, n) of `shape`.
Tensor random_ids(const Shape& shape, int64_t n, Generator& g) {
  std::vector<int64_t> ids(static_cast<size_t>(shape.numel()));
  for (auto& id : ids) id = static_cast<int64_t>(g.below(static_cast<uint64_t>(n)));
  return Tensor::from_vector(ids, shape);
}

// One training step of the registry's `type` at `batch` samples (gpt: windows of its ctx, 128);
// samples/s counts tokens for the gpt.
Result bench_train_step(const std::string& type, int64_t batch, int threads, int reps, Device device, bool bf16) {
  ModelConfig config;
  config.type = type;
  const bool tokens = model_input_layout(type) == InputLayout::tokens;
  if (tokens) {
    config.num_classes = 256;
    config.input_shape = Shape{config.ctx};
  }
  auto model = create_model(config);
  model->build(device, 1);
  Shape in{batch};
  for (int64_t d : config.input_shape) in.push_back(d);
  Generator g(RngKey{2, 0, static_cast<uint32_t>(RngPurpose::test)});
  Tensor x = (tokens ? random_ids(in, config.num_classes, g) : Tensor::randn(in, 0, 1, g)).to(device);
  const int64_t predictions = tokens ? in.numel() : batch;
  Tensor y = random_ids(Shape{predictions}, config.num_classes, g).to(device);
  Generator dropout(RngKey{2, 0, static_cast<uint32_t>(RngPurpose::dropout)});

  const auto step = [&] {
    PassContext ctx;
    ctx.dropout_rng = &dropout;
    ctx.arena = &model->arena();
    ctx.input_grad = false;  // as the trainer: no gradient for the data
    model->arena().zero_grad();
    Tensor logits = model->forward(x, ctx);
    LossOutput loss = softmax_cross_entropy(logits.view(Shape{predictions, config.num_classes}), y,
                                            1.0f / static_cast<float>(predictions));
    model->backward(loss.grad.view(logits.shape()), ctx);
    ops::axpy(-0.01f, model->arena().grads(), model->arena().values());
    if (device.is_cuda()) gpu::synchronize(device.index);
  };
  const double step_ms = bench::median(bench::sample_ms(step, 2, reps));
  if (device.is_cuda()) return device_result(type, predictions, device, step_ms, bf16);
  const std::vector<GemmCall> calls = step_gemms(model->net(), in);
  const double gemm_ms = time_gemms_alone(calls, g, reps);
  const double samples_per_s = predictions / (step_ms * 1e-3), ratio = step_ms / gemm_ms;
  const double gflops = gemm_flops(calls) / (gemm_ms * 1e6);
  bench::JsonLine json("train_step");
  json.add("model", type).add("batch", batch).add("threads", threads).add("step_ms", step_ms, 3);
  json.add("samples_per_s", samples_per_s, 1).add("gemm_ms", gemm_ms, 3).add("gemm_calls", calls.size());
  json.add("gemm_gflops", gflops, 2).add("step_over_gemm", ratio, 3);
  char row[256];
  std::snprintf(row, sizeof row, "step %-4s b%-4ld %10.3f ms  %9.1f samples/s  gemm alone %8.3f ms  step/gemm %.2f",
                type.c_str(), static_cast<long>(batch), step_ms, samples_per_s, gemm_ms, ratio);
  return {json, row};
}

void run(const bench::Args& args) {
  const int threads = static_cast<int>(args.positive_integer("--threads", 1));
  const int reps = static_cast<int>(args.positive_integer("--reps", 10));
  const std::string only = args.text("--only", "");
  const Device device = Device::parse(args.text("--device", "cpu"));
  const std::string precision = args.text("--precision", "f32");
  if (precision != "f32" && precision != "bf16") throw bench::UsageError("--precision must be f32 or bf16");
  if (precision == "bf16" && !device.is_cuda()) throw bench::UsageError("--precision bf16 needs --device cuda:N");
  const bool bf16 = precision == "bf16";
  if (device.is_cuda()) gpu::set_gemm_math(bf16 ? gpu::GemmMath::bf16 : gpu::GemmMath::f32);
  if (!only.empty() && only != "sgemm" && only != "mlp" && only != "cnn" && only != "gpt")
    throw bench::UsageError("--only must be sgemm, mlp, cnn or gpt, got '" + only + "'");
  bench::JsonOutput json(args.text("--json", ""), bench::JsonOutput::Mode::truncate);
  cpu::set_blas_threads(threads);

  std::vector<Result> results;
  if ((only.empty() || only == "sgemm") && device.is_cpu())
    for (int64_t n : {256, 512, 1024, 2048}) results.push_back(bench_sgemm(n, threads, reps));
  for (const char* type : {"mlp", "cnn"})
    if (only.empty() || only == type) results.push_back(bench_train_step(type, 256, threads, reps, device, bf16));
  if (only.empty() || only == "gpt") results.push_back(bench_train_step("gpt", 16, threads, reps, device, bf16));

  for (const Result& r : results) json.emit(r.json);
  std::printf("\nbench_core (%s, %d BLAS threads, OpenBLAS %s kernels, median of %d after warm-up)\n",
              device.str().c_str(), threads, cpu::blas_core_name(), reps);
  for (const Result& r : results) std::printf("  %s\n", r.row.c_str());
}

}  // namespace
}  // namespace dtrain

int main(int argc, char** argv) {
  dtrain::cpu::restart_with_better_blas_kernels(argv);
  return dtrain::bench::run_main(dtrain::kProgram, argc, argv, dtrain::run);
}
