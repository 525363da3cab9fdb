// bench_data: Loader throughput on a dataset file vs reading the same file with
// `cat FILE > /dev/null` in the same run (the anchor), and the data-wait share of a simulated
// training step. One JSON line per measurement, then a table.
//   bench_data [FILE.h5] [--batch B] [--epochs E] [--step-ms MS] [--world W] [--prefetch DEPTH]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/loader.h"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Row {
  std::string name;
  double samples_per_s, mb_per_s, wait_pct;
};

double time_cat(const std::string& file) {
  const std::string cmd = "cat '" + file + "' > /dev/null";
  const auto t0 = Clock::now();
  DTRAIN_CHECK(std::system(cmd.c_str()) == 0, "bench_data: `", cmd, "` failed");
  return seconds_since(t0);
}

// One epoch; spins `step_ms` per batch to stand in for compute. Returns seconds, adds to samples.
double run_epoch(dtrain::data::Loader& loader, int64_t epoch, double step_ms, int64_t& samples) {
  float sink = 0;
  const auto t0 = Clock::now();
  loader.set_epoch(epoch);
  while (auto b = loader.next()) {
    sink += b->x.data<float>()[0];
    samples += b->size();
    if (step_ms > 0) {
      const auto s0 = Clock::now();
      while (seconds_since(s0) * 1e3 < step_ms) {
      }
    }
  }
  if (sink == 12345.678f) std::printf(" ");
  return seconds_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  std::string file = "data/fmnist-train.h5";
  int64_t batch = 128;
  int epochs = 3, world = 1, prefetch = 2;
  double step_ms = 2.0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_data: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--batch") batch = std::stoll(value());
    else if (a == "--epochs") epochs = std::stoi(value());
    else if (a == "--step-ms") step_ms = std::stod(value());
    else if (a == "--world") world = std::stoi(value());
    else if (a == "--prefetch") prefetch = std::stoi(value());
    else if (a == "--help" || a == "-h") {
      std::printf("usage: bench_data [FILE.h5] [--batch 128] [--epochs 3] [--step-ms 2] [--world 1] [--prefetch 2]\n");
      return 0;
    } else file = a;
  }
  try {
    const double file_mb = static_cast<double>(std::filesystem::file_size(file)) / 1e6;
    time_cat(file);  // warm the page cache so both sides read from memory
    double cat_s = 1e30;
    for (int r = 0; r < 3; ++r) cat_s = std::min(cat_s, time_cat(file));
    std::vector<Row> rows;
    rows.push_back({"cat FILE > /dev/null", 0, file_mb / cat_s, 0});

    // cold: the first epoch of a new Loader (reads /x from the file); warm: the later epochs.
    auto measure = [&](const std::string& name, int prefetch, int64_t max_memory, double spin_ms) {
      dtrain::data::LoaderOptions o;
      o.batch_size = batch;
      o.prefetch_depth = prefetch;
      o.max_memory_bytes = max_memory;
      double cold_s = 0, warm_s = 0;
      int64_t cold_n = 0, warm_n = 0;
      double cold_wait = 0, wait = 0;
      int64_t sample_bytes = 0;
      for (int r = 0; r < 3; ++r) {  // best of 3 fresh loaders: the machine is shared
        dtrain::data::Loader loader(file, 0, world, o);
        sample_bytes = loader.info().sample_bytes();
        int64_t n0 = 0, n1 = 0;
        const double s0 = run_epoch(loader, 0, spin_ms, n0);
        const double w0 = loader.wait_seconds();
        double s1 = 0;
        for (int e = 1; e < epochs; ++e) s1 += run_epoch(loader, e, spin_ms, n1);
        if (r == 0 || s0 / n0 < cold_s / cold_n) cold_s = s0, cold_n = n0, cold_wait = w0;
        if (epochs > 1 && (r == 0 || s1 / n1 < warm_s / warm_n))
          warm_s = s1, warm_n = n1, wait = loader.wait_seconds() - w0;
      }
      rows.push_back({name + ", cold", cold_n / cold_s, cold_n * sample_bytes / 1e6 / cold_s, 100.0 * cold_wait / cold_s});
      if (epochs > 1)
        rows.push_back({name + ", warm", warm_n / warm_s, warm_n * sample_bytes / 1e6 / warm_s, 100.0 * wait / warm_s});
    };
    const std::string pf = "prefetch=" + std::to_string(prefetch);
    measure(pf + ", in memory", prefetch, int64_t{1} << 30, 0);
    measure("synchronous, in memory", 0, int64_t{1} << 30, 0);
    measure(pf + ", streaming 4 MiB blocks", prefetch, 4 << 20, 0);
    char compute[64];
    std::snprintf(compute, sizeof compute, " + %.1f ms/step compute", step_ms);
    measure(pf + compute, prefetch, int64_t{1} << 30, step_ms);

    for (const Row& r : rows)
      std::printf("{\"bench\":\"data\",\"file\":\"%s\",\"case\":\"%s\",\"batch\":%lld,\"world\":%d,\"samples_per_s\":%.0f,"
                  "\"mb_per_s\":%.1f,\"vs_cat\":%.3f,\"data_wait_pct\":%.2f}\n",
                  file.c_str(), r.name.c_str(), static_cast<long long>(batch), world, r.samples_per_s, r.mb_per_s,
                  r.mb_per_s / rows[0].mb_per_s, r.wait_pct);
    std::printf("\n%-46s %12s %10s %8s %10s\n", "case", "samples/s", "MB/s", "vs cat", "data wait");
    for (const Row& r : rows)
      std::printf("%-50s %12.0f %10.1f %7.2fx %9.2f%%\n", r.name.c_str(), r.samples_per_s, r.mb_per_s,
                  r.mb_per_s / rows[0].mb_per_s, r.wait_pct);
    std::printf("(file %.1f MB, batch %lld, %d epochs (cold = epoch 0 of a new Loader, reading the file; warm = the rest),\n rank 0 of %d, best of 3; MB/s counts /x bytes as stored; data wait = time next() blocked / wall time)\n", file_mb,
                static_cast<long long>(batch), epochs, world);
  } catch (const dtrain::Error& e) {
    std::fprintf(stderr, "bench_data: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
