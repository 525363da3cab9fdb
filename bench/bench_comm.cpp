// bench_comm: all-reduce bandwidth of raw MPI_Allreduce vs dtrain's ParamSync in the same run
// (algbw and busbw = algbw * 2(n-1)/n, as nccl-tests), 200 small tensors bucketed vs one
// all-reduce each, the cost of a collective fingerprint, and the exposed-communication fraction
// of cnn- and gpt-shaped backward passes. ParamSync runs as `dtrain train` runs it (averaging left
// to the optimizer), with collective fingerprints and, beside it, without.
//   mpiexec -n 4 bench_comm [--max-mib 256] [--json out.jsonl] [--label TEXT]
// Prints one JSON line per measurement (rank 0) and a table.
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/harness.h"
#include "comm/mpi_runtime.h"
#include "comm/param_sync.h"
#include "core/kernels.h"
#include "core/ops.h"

namespace dtrain {
namespace {

const bench::Program kProgram{.name = "bench_comm",
                              .usage = "usage: mpiexec -n N bench_comm [--max-mib 256] [--json FILE] [--label TEXT]",
                              .options = {"--max-mib", "--json", "--label"}};

// The communicator (collective fingerprints on, the default), one without fingerprints and, on
// rank 0, where the JSON lines go (stdout and the appended --json FILE).
struct Bench {
  Bench(Communicator& c, Communicator& no_fingerprints, const std::string& json_path, std::string label)
      : comm(c),
        plain(no_fingerprints),
        json(c.rank() == 0 ? json_path : "", bench::JsonOutput::Mode::append),
        label(std::move(label)) {}
  void emit(bench::JsonLine& line) {
    if (!label.empty()) line.add("label", label);
    if (comm.rank() == 0) json.emit(line);
  }
  Communicator& comm;
  Communicator& plain;
  bench::JsonOutput json;
  std::string label;  // --label: e.g. the emulated network, in every JSON line
};

// Median-free simple timing: the slowest rank's mean over `iters` (max-reduced across ranks).
double max_over_ranks(Communicator& comm, double t) {
  Tensor x = Tensor::full(Shape{1}, static_cast<float>(t));
  comm.allreduce(x, ReduceOp::max).wait();
  return x.to_vector<float>()[0];
}

double time_raw_mpi(Tensor buf, int iters) {
  double mean = 0;
  MpiRuntime::instance().run("bench raw MPI_Allreduce", [&] {
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, buf.raw_data(), static_cast<int>(buf.numel()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = Clock::now();
    for (int i = 0; i < iters; ++i)
      DTRAIN_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf.raw_data(), static_cast<int>(buf.numel()), MPI_FLOAT, MPI_SUM,
                                     MPI_COMM_WORLD));
    mean = seconds_since(t0) / iters;
  });
  return mean;
}

// One synchronised backward with every gradient ready at once: the all-reduce path of a step.
double time_param_sync(ParamSync& sync, ParameterArena& arena, int iters) {
  auto one = [&] {
    sync.begin_backward();
    for (auto it = arena.parameters().rbegin(); it != arena.parameters().rend(); ++it) arena.grad_ready(**it);
    sync.finish_backward();
  };
  one();
  sync.communicator().barrier().wait();
  const auto t0 = Clock::now();
  for (int i = 0; i < iters; ++i) one();
  return seconds_since(t0) / iters;
}

std::unique_ptr<ParameterArena> make_arena(const std::vector<int64_t>& sizes) {
  auto arena = std::make_unique<ParameterArena>();
  for (size_t i = 0; i < sizes.size(); ++i)
    arena->add(detail::concat("p", i, ".weight"), Shape{sizes[i]}, [](Tensor& v, Generator&) { v.fill(1.0f); });
  Generator gen(RngKey{1, 0, 0});
  arena->allocate(Device::cpu(), gen);
  arena->grads().fill(1.0f);
  return arena;
}

// As `dtrain train` runs it: the average left to the optimizer's pass (ParamSync::grad_scale()).
const ParamSyncOptions kTrainerMode{.defer_average = true};

void bandwidth(Bench& b, int64_t max_bytes) {
  const int n = b.comm.size();
  const double bus = 2.0 * (n - 1) / n;
  const bench::Table table({{"bytes", 10},
                            {"mpi busbw", 12},
                            {"dtrain busbw", 12},
                            {"ratio", 8},
                            {"added us", 10},
                            {"no-fp ratio", 12},
                            {"no-fp us", 10}},
                           stderr);
  if (b.comm.rank() == 0) {
    std::fprintf(stderr, "\n");
    table.print_header();
  }
  for (int64_t bytes = 4096; bytes <= max_bytes; bytes *= 4) {
    const int64_t numel = bytes / 4;
    const int iters = static_cast<int>(std::clamp<int64_t>((int64_t{512} << 20) / bytes, 3, 200));
    Tensor raw = Tensor::full(Shape{numel}, 1.0f);
    const double t_mpi = max_over_ranks(b.comm, time_raw_mpi(raw, iters));
    raw = Tensor();
    auto arena = make_arena({numel});
    double t_ps, t_plain;
    {
      ParamSync sync(b.comm, *arena, kTrainerMode);
      t_ps = max_over_ranks(b.comm, time_param_sync(sync, *arena, iters));
    }
    {
      ParamSync sync(b.plain, *arena, kTrainerMode);
      t_plain = max_over_ranks(b.comm, time_param_sync(sync, *arena, iters));
    }
    const double alg_mpi = bytes / t_mpi / 1e9, alg_ps = bytes / t_ps / 1e9;
    bench::JsonLine line("allreduce");
    line.add("ranks", n).add("bytes", bytes).add("iters", iters);
    line.add("mpi_time_s", t_mpi).add("mpi_algbw_gbs", alg_mpi).add("mpi_busbw_gbs", alg_mpi * bus);
    line.add("dtrain_time_s", t_ps).add("dtrain_algbw_gbs", alg_ps).add("dtrain_busbw_gbs", alg_ps * bus);
    line.add("dtrain_no_fingerprint_time_s", t_plain).add("no_fingerprint_ratio", t_mpi / t_plain);
    b.emit(line.add("ratio", alg_ps / alg_mpi));
    if (b.comm.rank() == 0)
      table.print_row({std::to_string(bytes), bench::fixed(alg_mpi * bus, 3), bench::fixed(alg_ps * bus, 3),
                       bench::fixed(alg_ps / alg_mpi, 3), bench::fixed((t_ps - t_mpi) * 1e6, 1),
                       bench::fixed(t_mpi / t_plain, 3), bench::fixed((t_plain - t_mpi) * 1e6, 1)});
  }
}

void small_tensors(Bench& b) {
  constexpr int kTensors = 200;
  constexpr int64_t kNumel = 10000;
  constexpr int kIters = 20;
  auto arena = make_arena(std::vector<int64_t>(kTensors, kNumel));
  double t_bucketed, t_bucketed_small;
  {
    ParamSync sync(b.comm, *arena, kTrainerMode);
    t_bucketed = max_over_ranks(b.comm, time_param_sync(sync, *arena, kIters));
  }
  {
    ParamSync sync(
        b.comm, *arena,
        {.bucket_bytes = int64_t{256} << 10, .first_bucket_bytes = int64_t{256} << 10, .defer_average = true});
    t_bucketed_small = max_over_ranks(b.comm, time_param_sync(sync, *arena, kIters));
  }
  auto per_tensor = [&] {
    std::vector<Work> works;
    for (const Parameter* p : arena->parameters()) {
      Tensor g = p->grad;
      works.push_back(b.comm.allreduce(g, ReduceOp::sum));
      works.back().wait();  // one all-reduce per tensor, as each gradient becomes ready
      ops::scale(g, 1.0f / b.comm.size());
    }
  };
  per_tensor();
  b.comm.barrier().wait();
  const auto t0 = Clock::now();
  for (int i = 0; i < kIters; ++i) per_tensor();
  const double t_each = max_over_ranks(b.comm, seconds_since(t0) / kIters);
  bench::JsonLine line("small_tensors");
  line.add("ranks", b.comm.size()).add("tensors", kTensors).add("floats_each", kNumel);
  line.add("bucketed_s", t_bucketed).add("bucketed_256k_s", t_bucketed_small).add("per_tensor_s", t_each);
  b.emit(line.add("speedup", t_each / t_bucketed).add("speedup_256k", t_each / t_bucketed_small));
  if (b.comm.rank() == 0)
    std::fprintf(stderr,
                 "\n200 x 10k floats: bucketed (1/25 MiB) %.3f ms, bucketed (256 KiB) %.3f ms, one all-reduce per "
                 "tensor %.3f ms, speedup %.1fx / %.1fx\n",
                 t_bucketed * 1e3, t_bucketed_small * 1e3, t_each * 1e3, t_each / t_bucketed,
                 t_each / t_bucketed_small);
}

// One MPI_Allgather of a collective fingerprint (7 int64 per rank): what comm.fingerprint adds
// before every collective.
double time_fingerprint_allgather(Communicator& comm) {
  constexpr int kIters = 2000;
  std::vector<int64_t> mine(7, 1), all(7 * static_cast<size_t>(comm.size()));
  double mean = 0;
  MpiRuntime::instance().run("bench fingerprint allgather", [&] {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = Clock::now();
    for (int i = 0; i < kIters; ++i)
      DTRAIN_MPI_CHECK(MPI_Allgather(mine.data(), 7, MPI_INT64_T, all.data(), 7, MPI_INT64_T, MPI_COMM_WORLD));
    mean = seconds_since(t0) / kIters;
  });
  return max_over_ranks(comm, mean);
}

// A model-shaped backward: each layer's weight gradient is a GEMM (dW = dy^T x) and its input
// gradient another (dx = dy W), last layer first, with grad_ready as the layers call it.
struct StepShape {
  const char* name;
  struct Layer {
    int64_t out, in, rows;  // weight [out, in]; GEMM over `rows` (batch x positions)
  };
  std::vector<Layer> layers;
};

// The fmnist cnn at batch 32 per rank (conv weights as im2col GEMMs, then two linear layers).
StepShape cnn_shape() {
  return {"cnn", {{32, 9, 32 * 28 * 28}, {64, 288, 32 * 14 * 14}, {128, 3136, 32}, {10, 128, 32}}};
}

// configs/kjv-gpt.ini's gpt (4 layers, 128 wide, ctx 128, bytes) at 16 sequences per rank:
// embeddings, then per layer qkv, projection and the 4x MLP (LayerNorms and biases are small).
StepShape gpt_shape() {
  constexpr int64_t kRows = 16 * 128, kWidth = 128;
  StepShape s{"gpt", {{256, kWidth, kRows}, {128, kWidth, kRows}}};
  for (int l = 0; l < 4; ++l)
    for (const auto& [out, in] : std::vector<std::pair<int64_t, int64_t>>{
             {3 * kWidth, kWidth}, {kWidth, kWidth}, {4 * kWidth, kWidth}, {kWidth, 4 * kWidth}})
      s.layers.push_back({out, in, kRows});
  return s;
}

// Exposed communication of a step: how long finish_backward waits after backward, against the
// all-reduces' own time. comm.fingerprint's cost per step is estimated as (buckets + 2: the
// trainer's sample count and stop vote) fingerprint allgathers against the backward's time (a
// real step adds forward and the optimizer, so the true fraction is smaller).
void step_overlap(Bench& b, const StepShape& shape, double fingerprint_s) {
  ParameterArena arena;
  std::vector<Parameter*> w;
  for (size_t i = 0; i < shape.layers.size(); ++i)
    w.push_back(&arena.add(detail::concat(i, ".weight"), Shape{shape.layers[i].out, shape.layers[i].in},
                           [](Tensor& v, Generator&) { v.fill(0.01f); }));
  Generator gen(RngKey{1, 0, 0});
  arena.allocate(Device::cpu(), gen);
  std::vector<Tensor> dy, x;
  for (const StepShape::Layer& l : shape.layers) {
    dy.push_back(Tensor::full(Shape{l.rows, l.out}, 0.001f));
    x.push_back(Tensor::full(Shape{l.rows, l.in}, 0.5f));
  }
  ParamSync sync(b.comm, arena,
                 {.bucket_bytes = int64_t{1} << 20, .first_bucket_bytes = int64_t{256} << 10, .defer_average = true});
  double comm_s = 0, exposed_s = 0, backward_s = 0;
  constexpr int kIters = 10;
  for (int it = -1; it < kIters; ++it) {
    b.comm.barrier().wait();
    arena.zero_grad();
    const auto t0 = Clock::now();
    sync.begin_backward();
    for (int i = static_cast<int>(shape.layers.size()) - 1; i >= 0; --i) {
      ops::gemm(dy[i], true, x[i], false, w[i]->grad, 1.0f, 1.0f);
      Tensor dx = ops::matmul(dy[i], w[i]->value);
      arena.grad_ready(*w[i]);
    }
    const double bwd = seconds_since(t0);
    sync.finish_backward();
    if (it < 0) continue;
    backward_s += bwd;
    comm_s += sync.last_stats().comm_s;
    exposed_s += sync.last_stats().exposed_s;
  }
  backward_s = max_over_ranks(b.comm, backward_s / kIters);
  comm_s = max_over_ranks(b.comm, comm_s / kIters);
  exposed_s = max_over_ranks(b.comm, exposed_s / kIters);
  const double fraction = exposed_s / std::max(comm_s, 1e-12);
  const size_t collectives = sync.buckets().size() + 2;
  const double fp_fraction = static_cast<double>(collectives) * fingerprint_s / backward_s;
  bench::JsonLine line("step_overlap");
  line.add("model", shape.name).add("ranks", b.comm.size()).add("params", arena.numel());
  line.add("buckets", sync.buckets().size()).add("backward_s", backward_s).add("comm_s", comm_s);
  line.add("exposed_s", exposed_s).add("exposed_fraction", fraction);
  b.emit(line.add("fingerprint_allgather_s", fingerprint_s).add("fingerprint_step_fraction", fp_fraction));
  if (b.comm.rank() == 0)
    std::fprintf(stderr,
                 "%s step: backward %.2f ms, comm %.2f ms, exposed %.2f ms (%.0f%% of comm); fingerprints %zu x "
                 "%.1f us = %.2f%% of backward\n",
                 shape.name, backward_s * 1e3, comm_s * 1e3, exposed_s * 1e3, 100 * fraction, collectives,
                 fingerprint_s * 1e6, 100 * fp_fraction);
}

void run(const bench::Args& args) {
  const int64_t max_mib = args.integer("--max-mib", 256);
  const std::string json_path = args.text("--json", "");
  run_or_abort([&] {
    auto comm = make_communicator(CommOptions{.backend = "mpi", .log_world = false});
    auto plain = make_communicator(CommOptions{.backend = "mpi", .log_world = false, .fingerprint = false});
    Bench b(*comm, *plain, json_path, args.text("--label", ""));
    bandwidth(b, max_mib << 20);
    small_tensors(b);
    const double fingerprint_s = time_fingerprint_allgather(*comm);
    step_overlap(b, cnn_shape(), fingerprint_s);
    step_overlap(b, gpt_shape(), fingerprint_s);
    return 0;
  });
}

}  // namespace
}  // namespace dtrain

int main(int argc, char** argv) {
  dtrain::cpu::restart_with_better_blas_kernels(argv);
  return dtrain::bench::run_main(dtrain::kProgram, argc, argv, dtrain::run);
}
