// bench_comm: all-reduce bandwidth of raw MPI_Allreduce vs dtrain's ParamSync in the same run
// (algbw and busbw = algbw * 2(n-1)/n, as nccl-tests), 200 small tensors bucketed vs one
// all-reduce each, and the exposed-communication fraction of a CNN-shaped training step.
//   mpiexec -n 4 bench_comm [--max-mib 256] [--json out.jsonl]
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
                              .usage = "usage: mpiexec -n N bench_comm [--max-mib 256] [--json FILE]",
                              .options = {"--max-mib", "--json"}};

// The communicator (collective fingerprints on, the default), one without fingerprints and, on
// rank 0, where the JSON lines go (stdout and the appended --json FILE).
struct Bench {
  Bench(Communicator& c, Communicator& no_fingerprints, const std::string& json_path)
      : comm(c), plain(no_fingerprints), json(c.rank() == 0 ? json_path : "", bench::JsonOutput::Mode::append) {}
  void emit(const bench::JsonLine& line) {
    if (comm.rank() == 0) json.emit(line);
  }
  Communicator& comm;
  Communicator& plain;
  bench::JsonOutput json;
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

// A CNN-shaped step (conv weights as GEMMs, then two linear layers): backward computes each
// layer's weight gradient with a GEMM, last layer first, and calls grad_ready as the layers do.
void cnn_step(Bench& b) {
  struct Layer {
    int64_t out, in, rows;  // weight [out, in]; GEMM over `rows` (batch x spatial positions)
  };
  const std::vector<Layer> layers = {{32, 9, 32 * 28 * 28}, {64, 288, 32 * 14 * 14}, {128, 3136, 32}, {10, 128, 32}};
  ParameterArena arena;
  std::vector<Parameter*> w;
  for (size_t i = 0; i < layers.size(); ++i)
    w.push_back(&arena.add(detail::concat(i, ".weight"), Shape{layers[i].out, layers[i].in},
                           [](Tensor& v, Generator&) { v.fill(0.01f); }));
  Generator gen(RngKey{1, 0, 0});
  arena.allocate(Device::cpu(), gen);
  std::vector<Tensor> dy, x;
  for (const Layer& l : layers) {
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
    for (int i = static_cast<int>(layers.size()) - 1; i >= 0; --i) {
      ops::gemm(dy[i], true, x[i], false, w[i]->grad, 1.0f, 1.0f);  // dW = dy^T x
      Tensor dx = ops::matmul(dy[i], w[i]->value);                  // dx = dy W (the input gradient)
      arena.grad_ready(*w[i]);
    }
    const double bwd = seconds_since(t0);
    sync.finish_backward();
    if (it < 0) continue;
    backward_s += bwd;
    comm_s += sync.last_stats().comm_s;
    exposed_s += sync.last_stats().exposed_s;
  }
  const double fraction = exposed_s / std::max(comm_s, 1e-12);
  bench::JsonLine line("cnn_step_overlap");
  line.add("ranks", b.comm.size()).add("params", arena.numel()).add("buckets", sync.buckets().size());
  line.add("backward_s", backward_s / kIters).add("comm_s", comm_s / kIters).add("exposed_s", exposed_s / kIters);
  b.emit(line.add("exposed_fraction", fraction));
  if (b.comm.rank() == 0)
    std::fprintf(stderr, "CNN step: backward %.2f ms, comm %.2f ms, exposed %.2f ms (%.0f%% of comm)\n",
                 backward_s / kIters * 1e3, comm_s / kIters * 1e3, exposed_s / kIters * 1e3, 100 * fraction);
}

void run(const bench::Args& args) {
  const int64_t max_mib = args.integer("--max-mib", 256);
  const std::string json_path = args.text("--json", "");
  run_or_abort([&] {
    auto comm = make_communicator(CommOptions{.backend = "mpi", .log_world = false});
    auto plain = make_communicator(CommOptions{.backend = "mpi", .log_world = false, .fingerprint = false});
    Bench b(*comm, *plain, json_path);
    bandwidth(b, max_mib << 20);
    small_tensors(b);
    cnn_step(b);
    return 0;
  });
}

}  // namespace
}  // namespace dtrain

int main(int argc, char** argv) {
  dtrain::cpu::restart_with_better_blas_kernels(argv);
  return dtrain::bench::run_main(dtrain::kProgram, argc, argv, dtrain::run);
}
