// bench_ckpt: checkpoint throughput against dd moving the same bytes on the same disk, in the
// same run. One JSON line per measurement, a summary line, then a table.
//   write     write_checkpoint of an mlp (--hidden sizes, f32) plus its SGD momentum slot: create,
//             write, close, fsync and rename, all timed
//   dd_write  `dd if=/dev/zero of=DIR/dd.bin bs=4M count=BYTES iflag=count_bytes conv=fsync` (the
//             anchor), run next to each write, alternating which goes first
//   read      load_checkpoint of that file (read, check, copy into the model) after evicting it
//             from the page cache (posix_fadvise DONTNEED on the synced, clean file)
//   dd_read   `dd if=CHECKPOINT of=/dev/null bs=4M` after the same eviction (the read anchor)
// Usage: bench_ckpt [--dir DIR] [--reps R] [--hidden 8192,4096] [--json FILE]
//   DIR (default: next to this executable, i.e. the build's disk) gets a fresh subdirectory that
//   is removed at the end.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "bench/harness.h"
#include "core/config.h"
#include "core/model.h"
#include "launch/checkpoint.h"

namespace dtrain {
namespace {

namespace fs = std::filesystem;

const bench::Program kProgram{.name = "bench_ckpt",
                              .usage = "usage: bench_ckpt [--dir DIR] [--reps R] [--hidden 8192,4096] [--json FILE]",
                              .options = {"--dir", "--reps", "--hidden", "--json"}};

// A fresh directory DIR/bench_ckpt.XXXXXX, removed with its contents on destruction.
class ScratchDir {
 public:
  explicit ScratchDir(const fs::path& parent) {
    fs::create_directories(parent);
    std::string pattern = (parent / "bench_ckpt.XXXXXX").string();
    DTRAIN_CHECK(::mkdtemp(pattern.data()) != nullptr, "cannot create a directory under ", parent.string());
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Drops the (clean, already synced) file's pages from the page cache, so the next read hits the disk.
void evict_from_page_cache(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  DTRAIN_CHECK(fd >= 0, "cannot open ", path);
  ::fdatasync(fd);
  const int rc = ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
  DTRAIN_CHECK(rc == 0, "posix_fadvise(DONTNEED) failed on ", path);
}

// The model and optimizer state whose checkpoint is written and read.
struct Subject {
  std::unique_ptr<Model> model;
  std::unique_ptr<Optimizer> optimizer;
  CheckpointMeta meta;
};

Subject make_subject(const std::vector<int64_t>& hidden) {
  ModelConfig config;
  config.type = "mlp";
  config.input_shape = Shape{1, 28, 28};
  config.hidden = hidden;
  Subject s;
  s.model = create_model(config);
  s.model->build(Device::cpu(), 1);
  OptimizerConfig sgd;
  sgd.type = "sgd";
  sgd.momentum = 0.9f;
  s.optimizer = make_optimizer(sgd, s.model->arena());
  s.optimizer->slots().at(0).second->copy_from(s.model->arena().values());  // non-zero state to write
  s.meta.signature = s.model->signature();
  s.meta.rng_offsets = {0};
  s.meta.dtrain_version = DTRAIN_VERSION;
  return s;
}

struct Measurement {
  std::string op;
  int rep;
  double ms;
};

// `reps` rounds of write, dd_write, read and dd_read in `dir`, alternating whether the checkpoint
// or dd goes first; `bytes` gets the checkpoint's size.
std::vector<Measurement> measure(Subject& s, const fs::path& dir, int reps, int64_t& bytes) {
  const std::string ckpt = checkpoint_path(dir.string(), 1), dd_file = (dir / "dd.bin").string();
  bytes = write_checkpoint(ckpt, s.model->arena(), s.optimizer.get(), s.meta);  // warm-up, and the size
  fs::remove(ckpt);
  const std::string dd_write = "dd if=/dev/zero of='" + dd_file + "' bs=4M count=" + std::to_string(bytes) +
                               " iflag=count_bytes conv=fsync status=none";
  const std::string dd_read = "dd if='" + ckpt + "' of=/dev/null bs=4M status=none";
  bench::command_ms(dd_write);  // warm-up, like the checkpoint's
  fs::remove(dd_file);

  std::vector<Measurement> measured;
  const auto timed_write = [&](int rep) {
    ::sync();
    int64_t written = 0;
    measured.push_back({"write", rep, bench::wall_ms([&] {
                          written = write_checkpoint(ckpt, s.model->arena(), s.optimizer.get(), s.meta);
                        })});
    DTRAIN_CHECK(written == bytes, "checkpoint size changed from ", bytes, " to ", written);
  };
  const auto timed_dd_write = [&](int rep) {
    ::sync();
    measured.push_back({"dd_write", rep, bench::command_ms(dd_write)});
    fs::remove(dd_file);
  };
  const auto timed_read = [&](int rep) {
    evict_from_page_cache(ckpt);
    measured.push_back({"read", rep, bench::wall_ms([&] {
                          load_checkpoint(ckpt, s.model->arena(), s.optimizer.get(), s.meta.signature);
                        })});
  };
  const auto timed_dd_read = [&](int rep) {
    evict_from_page_cache(ckpt);
    measured.push_back({"dd_read", rep, bench::command_ms(dd_read)});
  };
  for (int rep = 0; rep < reps; ++rep) {
    const bool ckpt_first = rep % 2 == 0;
    if (ckpt_first) timed_write(rep);
    timed_dd_write(rep);
    if (!ckpt_first) timed_write(rep);
    if (ckpt_first) timed_read(rep);
    timed_dd_read(rep);
    if (!ckpt_first) timed_read(rep);
    fs::remove(ckpt);
  }
  return measured;
}

double mb_per_s(int64_t bytes, double ms) { return static_cast<double>(bytes) / 1e6 / (ms * 1e-3); }

struct Summary {
  std::map<std::string, double> median_ms;  // per op
  std::map<std::string, double> over_dd;    // write, read: median of each run's ratio to the dd next to it
};

Summary summarize(const std::vector<Measurement>& measured) {
  std::map<std::string, std::vector<double>> ms_of;
  std::map<int, std::map<std::string, double>> by_rep;
  for (const Measurement& m : measured) {
    ms_of[m.op].push_back(m.ms);
    by_rep[m.rep][m.op] = m.ms;
  }
  std::map<std::string, std::vector<double>> ratios;
  for (auto& [rep, ms] : by_rep)
    for (const std::string op : {"write", "read"}) ratios[op].push_back(ms["dd_" + op] / ms[op]);
  Summary summary;
  for (const auto& [op, ms] : ms_of) summary.median_ms[op] = bench::median(ms);
  for (const auto& [op, r] : ratios) summary.over_dd[op] = bench::median(r);
  return summary;
}

void emit_json(const std::vector<Measurement>& measured, const Summary& s, int64_t bytes, double param_mb, int reps,
               bench::JsonOutput& json) {
  for (const Measurement& m : measured)
    json.emit(bench::JsonLine("ckpt")
                  .add("op", m.op)
                  .add("rep", m.rep)
                  .add("bytes", bytes)
                  .add("ms", m.ms, 3)
                  .add("mb_per_s", mb_per_s(bytes, m.ms), 1));
  bench::JsonLine line("ckpt_summary");
  line.add("bytes", bytes).add("param_mb", param_mb, 1).add("slots", 1).add("reps", reps);
  for (const std::string op : {"write", "read"}) {
    line.add(op + "_mb_per_s", mb_per_s(bytes, s.median_ms.at(op)), 1);
    line.add("dd_" + op + "_mb_per_s", mb_per_s(bytes, s.median_ms.at("dd_" + op)), 1);
    line.add(op + "_over_dd", s.over_dd.at(op), 3);
  }
  json.emit(line);
}

void print_table(const Summary& s, int64_t bytes) {
  const bench::Table table({{"op", 10, true}, {"ms", 10}, {"MB/s", 10}, {"ckpt/dd", 12}}, stdout, "  ");
  table.print_header();
  for (const std::string op : {"write", "dd_write", "read", "dd_read"}) {
    const double ms = s.median_ms.at(op);
    const auto ratio = s.over_dd.find(op);
    table.print_row({op, bench::fixed(ms, 1), bench::fixed(mb_per_s(bytes, ms), 1),
                     ratio == s.over_dd.end() ? "" : bench::fixed(ratio->second, 3)});
  }
  std::printf("  (MB = 10^6 bytes; ckpt/dd = median over reps of each run's ratio to the dd next to it)\n");
}

void run(const bench::Args& args) {
  const fs::path dir = args.text("--dir", fs::read_symlink("/proc/self/exe").parent_path().string());
  const int reps = static_cast<int>(args.positive_integer("--reps", 5));
  Subject subject = make_subject(args.positive_integers("--hidden", {8192, 4096}));
  bench::JsonOutput json(args.text("--json", ""), bench::JsonOutput::Mode::append);
  ScratchDir scratch(dir);
  int64_t bytes = 0;
  const std::vector<Measurement> measured = measure(subject, scratch.path(), reps, bytes);
  const Summary summary = summarize(measured);
  const double param_mb = static_cast<double>(subject.model->arena().numel()) * 4 / 1e6;
  emit_json(measured, summary, bytes, param_mb, reps, json);
  std::printf("\nbench_ckpt: %.1f MB file (%.1f MB f32 params + SGD momentum slot) in %s, median of %d\n",
              static_cast<double>(bytes) / 1e6, param_mb, scratch.path().string().c_str(), reps);
  print_table(summary, bytes);
}

}  // namespace
}  // namespace dtrain

int main(int argc, char** argv) { return dtrain::bench::run_main(dtrain::kProgram, argc, argv, dtrain::run); }
