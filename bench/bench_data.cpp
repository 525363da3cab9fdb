// bench_data: Loader throughput on a dataset file vs reading the same file with
// `cat FILE > /dev/null` in the same run (the anchor), and the data-wait share of a simulated
// training step. One JSON line per measurement, then a table.
//   bench_data [FILE.h5] [--batch B] [--epochs E] [--step-ms MS] [--world W] [--prefetch DEPTH]
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "bench/harness.h"
#include "data/loader.h"

namespace dtrain {
namespace {

const bench::Program kProgram{
    .name = "bench_data",
    .usage = "usage: bench_data [FILE.h5] [--batch 128] [--epochs 3] [--step-ms 2] [--world 1] [--prefetch 2]",
    .options = {"--batch", "--epochs", "--step-ms", "--world", "--prefetch"},
    .positional = {"FILE.h5"}};

struct Setup {
  std::string file;
  double file_mb;
  int64_t batch;
  int epochs, world;
};

struct Row {
  std::string name;
  double samples_per_s, mb_per_s, wait_pct;
};

// One epoch; spins `step_ms` per batch to stand in for compute. Returns seconds, adds to samples.
double run_epoch(data::Loader& loader, int64_t epoch, double step_ms, int64_t& samples) {
  float sink = 0;
  const auto t0 = Clock::now();
  loader.set_epoch(epoch);
  while (auto b = loader.next()) {
    sink += b->x.data<float>()[0];
    samples += b->size();
    if (step_ms > 0) {
      const auto s0 = Clock::now();
      while (seconds_since(s0) * 1e3 < step_ms) {}
    }
  }
  if (sink == 12345.678f) std::printf(" ");
  return seconds_since(t0);
}

// Seconds, samples and seconds next() blocked, over some epochs of one Loader.
struct Pass {
  double s = 0, wait_s = 0;
  int64_t n = 0;
};

// A fresh Loader's first epoch (cold: it reads /x from the file) and the rest (warm).
struct LoaderRun {
  Pass cold, warm;
  int64_t sample_bytes = 0;
};

LoaderRun run_loader(const Setup& setup, const data::LoaderOptions& options, double spin_ms) {
  data::Loader loader(setup.file, 0, setup.world, options);
  LoaderRun run{{}, {}, loader.info().sample_bytes()};
  run.cold.s = run_epoch(loader, 0, spin_ms, run.cold.n);
  run.cold.wait_s = loader.wait_seconds();
  for (int epoch = 1; epoch < setup.epochs; ++epoch) run.warm.s += run_epoch(loader, epoch, spin_ms, run.warm.n);
  run.warm.wait_s = loader.wait_seconds() - run.cold.wait_s;
  return run;
}

// Rows "NAME, cold" and (with more than one epoch) "NAME, warm": each the best of 3 fresh loaders,
// as the machine is shared.
std::vector<Row> measure(const Setup& setup, const std::string& name, int prefetch, int64_t max_memory,
                         double spin_ms) {
  data::LoaderOptions o;
  o.batch_size = setup.batch;
  o.prefetch_depth = prefetch;
  o.max_memory_bytes = max_memory;
  LoaderRun best;
  for (int r = 0; r < 3; ++r) {
    const LoaderRun run = run_loader(setup, o, spin_ms);
    best.sample_bytes = run.sample_bytes;
    if (r == 0 || run.cold.s / run.cold.n < best.cold.s / best.cold.n) best.cold = run.cold;
    if (r == 0 || run.warm.s / run.warm.n < best.warm.s / best.warm.n) best.warm = run.warm;
  }
  const auto row = [&](const std::string& suffix, const Pass& p) {
    return Row{name + suffix, p.n / p.s, p.n * best.sample_bytes / 1e6 / p.s, 100.0 * p.wait_s / p.s};
  };
  std::vector<Row> rows{row(", cold", best.cold)};
  if (setup.epochs > 1) rows.push_back(row(", warm", best.warm));
  return rows;
}

// The anchor: MB/s of `cat FILE > /dev/null`, best of 3 after one that warms the page cache so
// that both sides read from memory.
Row measure_cat(const Setup& setup) {
  const std::string cat = "cat '" + setup.file + "' > /dev/null";
  bench::command_ms(cat);
  double cat_s = 1e30;
  for (int r = 0; r < 3; ++r) cat_s = std::min(cat_s, bench::command_ms(cat) * 1e-3);
  return {"cat FILE > /dev/null", 0, setup.file_mb / cat_s, 0};
}

void report(const Setup& setup, const std::vector<Row>& rows) {
  bench::JsonOutput json("", bench::JsonOutput::Mode::append);
  const double cat_mb_per_s = rows[0].mb_per_s;
  for (const Row& r : rows)
    json.emit(bench::JsonLine("data")
                  .add("file", setup.file)
                  .add("case", r.name)
                  .add("batch", setup.batch)
                  .add("world", setup.world)
                  .add("samples_per_s", r.samples_per_s, 0)
                  .add("mb_per_s", r.mb_per_s, 1)
                  .add("vs_cat", r.mb_per_s / cat_mb_per_s, 3)
                  .add("data_wait_pct", r.wait_pct, 2));
  std::printf("\n");
  const bench::Table table({{"case", 50, true}, {"samples/s", 12}, {"MB/s", 10}, {"vs cat", 8}, {"data wait", 10}});
  table.print_header();
  for (const Row& r : rows)
    table.print_row({r.name, bench::fixed(r.samples_per_s, 0), bench::fixed(r.mb_per_s, 1),
                     bench::fixed(r.mb_per_s / cat_mb_per_s, 2, "x"), bench::fixed(r.wait_pct, 2, "%")});
  std::printf(
      "(file %.1f MB, batch %lld, %d epochs (cold = epoch 0 of a new Loader, reading the file; warm = the "
      "rest),\n rank 0 of %d, best of 3; MB/s counts /x bytes as stored; data wait = time next() blocked / "
      "wall time)\n",
      setup.file_mb, static_cast<long long>(setup.batch), setup.epochs, setup.world);
}

void run(const bench::Args& args) {
  Setup setup;
  setup.file = args.positional().empty() ? "data/fmnist-train.h5" : args.positional()[0];
  setup.batch = args.positive_integer("--batch", 128);
  setup.epochs = static_cast<int>(args.positive_integer("--epochs", 3));
  setup.world = static_cast<int>(args.positive_integer("--world", 1));
  const int prefetch = static_cast<int>(args.integer("--prefetch", 2));
  const double step_ms = args.number("--step-ms", 2.0);
  setup.file_mb = static_cast<double>(std::filesystem::file_size(setup.file)) / 1e6;
  std::vector<Row> rows{measure_cat(setup)};
  const auto add = [&](const std::vector<Row>& more) { rows.insert(rows.end(), more.begin(), more.end()); };
  const std::string pf = "prefetch=" + std::to_string(prefetch);
  add(measure(setup, pf + ", in memory", prefetch, int64_t{1} << 30, 0));
  add(measure(setup, "synchronous, in memory", 0, int64_t{1} << 30, 0));
  add(measure(setup, pf + ", streaming 4 MiB blocks", prefetch, 4 << 20, 0));
  add(measure(setup, pf + " + " + bench::fixed(step_ms, 1) + " ms/step compute", prefetch, int64_t{1} << 30, step_ms));
  report(setup, rows);
}

}  // namespace
}  // namespace dtrain

int main(int argc, char** argv) { return dtrain::bench::run_main(dtrain::kProgram, argc, argv, dtrain::run); }
