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

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/model.h"
#include "launch/checkpoint.h"

namespace dtrain {
namespace {

namespace fs = std::filesystem;

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// A fresh directory DIR/bench_ckpt.XXXXXX, removed with its contents on destruction.
class ScratchDir {
 public:
  explicit ScratchDir(const fs::path& parent) {
    fs::create_directories(parent);
    std::string pattern = (parent / "bench_ckpt.XXXXXX").string();
    DTRAIN_CHECK(::mkdtemp(pattern.data()) != nullptr, "bench_ckpt: cannot create a directory under ",
                 parent.string());
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
  DTRAIN_CHECK(fd >= 0, "bench_ckpt: cannot open ", path);
  ::fdatasync(fd);
  const int rc = ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
  DTRAIN_CHECK(rc == 0, "bench_ckpt: posix_fadvise(DONTNEED) failed on ", path);
}

double time_command_ms(const std::string& command) {
  const double start = now_ms();
  DTRAIN_CHECK(std::system(command.c_str()) == 0, "bench_ckpt: `", command, "` failed");
  return now_ms() - start;
}

std::vector<int64_t> parse_sizes(const std::string& text) {
  std::vector<int64_t> sizes;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) sizes.push_back(std::stoll(item));
  DTRAIN_CHECK(!sizes.empty(), "bench_ckpt: --hidden needs sizes like 8192,4096");
  return sizes;
}

struct Measurement {
  std::string op;
  int rep;
  double ms;
};

int run(int argc, char** argv) {
  fs::path dir = fs::read_symlink("/proc/self/exe").parent_path();
  int reps = 5;
  std::string hidden = "8192,4096", json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--dir" && has_value) {
      dir = argv[++i];
    } else if (a == "--reps" && has_value) {
      reps = std::atoi(argv[++i]);
    } else if (a == "--hidden" && has_value) {
      hidden = argv[++i];
    } else if (a == "--json" && has_value) {
      json_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: bench_ckpt [--dir DIR] [--reps R] [--hidden 8192,4096] [--json FILE]\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  DTRAIN_CHECK(reps > 0, "bench_ckpt: --reps must be positive");

  ModelConfig config;
  config.type = "mlp";
  config.input_shape = Shape{1, 28, 28};
  config.hidden = parse_sizes(hidden);
  auto model = create_model(config);
  model->build(Device::cpu(), 1);
  OptimizerConfig sgd;
  sgd.type = "sgd";
  sgd.momentum = 0.9f;
  auto optimizer = make_optimizer(sgd, model->arena());
  optimizer->slots().at(0).second->copy_from(model->arena().values());  // non-zero state to write
  CheckpointMeta meta;
  meta.signature = model->signature();
  meta.rng_offsets = {0};
  meta.dtrain_version = DTRAIN_VERSION;

  ScratchDir scratch(dir);
  const std::string ckpt = checkpoint_path(scratch.path().string(), 1);
  const std::string dd_file = (scratch.path() / "dd.bin").string();
  const int64_t bytes = write_checkpoint(ckpt, model->arena(), optimizer.get(), meta);  // warm-up, and the size
  fs::remove(ckpt);
  const std::string dd_write = "dd if=/dev/zero of='" + dd_file + "' bs=4M count=" + std::to_string(bytes) +
                               " iflag=count_bytes conv=fsync status=none";
  const std::string dd_read = "dd if='" + ckpt + "' of=/dev/null bs=4M status=none";
  time_command_ms(dd_write);  // warm-up, like the checkpoint's
  fs::remove(dd_file);

  std::vector<Measurement> measured;
  const auto timed_write = [&](int rep) {
    ::sync();
    const double start = now_ms();
    const int64_t written = write_checkpoint(ckpt, model->arena(), optimizer.get(), meta);
    measured.push_back({"write", rep, now_ms() - start});
    DTRAIN_CHECK(written == bytes, "bench_ckpt: checkpoint size changed from ", bytes, " to ", written);
  };
  const auto timed_dd_write = [&](int rep) {
    ::sync();
    measured.push_back({"dd_write", rep, time_command_ms(dd_write)});
    fs::remove(dd_file);
  };
  const auto timed_read = [&](int rep) {
    evict_from_page_cache(ckpt);
    const double start = now_ms();
    load_checkpoint(ckpt, model->arena(), optimizer.get(), meta.signature);
    measured.push_back({"read", rep, now_ms() - start});
  };
  const auto timed_dd_read = [&](int rep) {
    evict_from_page_cache(ckpt);
    measured.push_back({"dd_read", rep, time_command_ms(dd_read)});
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

  std::ofstream json_file;
  if (!json_path.empty()) {
    json_file.open(json_path, std::ios::app);
    DTRAIN_CHECK(json_file.good(), "bench_ckpt: cannot append to --json file '", json_path, "'");
  }
  const auto emit = [&](const std::string& line) {
    std::printf("%s\n", line.c_str());
    if (json_file.is_open()) json_file << line << "\n";
  };
  const auto mb_per_s = [&](double ms) { return static_cast<double>(bytes) / 1e6 / (ms * 1e-3); };
  std::map<std::string, std::vector<double>> ms_of;
  std::map<int, std::map<std::string, double>> by_rep;
  char line[512];
  for (const Measurement& m : measured) {
    ms_of[m.op].push_back(m.ms);
    by_rep[m.rep][m.op] = m.ms;
    std::snprintf(line, sizeof line, R"({"bench":"ckpt","op":"%s","rep":%d,"bytes":%ld,"ms":%.3f,"mb_per_s":%.1f})",
                  m.op.c_str(), m.rep, static_cast<long>(bytes), m.ms, mb_per_s(m.ms));
    emit(line);
  }
  // Paired ratios: each write against the dd run next to it (same for reads).
  std::vector<double> write_ratio, read_ratio;
  for (auto& [rep, ms] : by_rep) {
    write_ratio.push_back(ms["dd_write"] / ms["write"]);
    read_ratio.push_back(ms["dd_read"] / ms["read"]);
  }
  const double param_mb = static_cast<double>(model->arena().numel()) * 4 / 1e6;
  const double write_mb = mb_per_s(median(ms_of["write"])), dd_write_mb = mb_per_s(median(ms_of["dd_write"]));
  const double read_mb = mb_per_s(median(ms_of["read"])), dd_read_mb = mb_per_s(median(ms_of["dd_read"]));
  std::snprintf(line, sizeof line,
                R"({"bench":"ckpt_summary","bytes":%ld,"param_mb":%.1f,"slots":1,"reps":%d,"write_mb_per_s":%.1f,)"
                R"("dd_write_mb_per_s":%.1f,"write_over_dd":%.3f,"read_mb_per_s":%.1f,"dd_read_mb_per_s":%.1f,)"
                R"("read_over_dd":%.3f})",
                static_cast<long>(bytes), param_mb, reps, write_mb, dd_write_mb, median(write_ratio), read_mb,
                dd_read_mb, median(read_ratio));
  emit(line);

  std::printf("\nbench_ckpt: %.1f MB file (%.1f MB f32 params + SGD momentum slot) in %s, median of %d\n",
              static_cast<double>(bytes) / 1e6, param_mb, scratch.path().string().c_str(), reps);
  std::printf("  %-10s %10s %10s %12s\n", "op", "ms", "MB/s", "ckpt/dd");
  std::printf("  %-10s %10.1f %10.1f %12.3f\n", "write", median(ms_of["write"]), write_mb, median(write_ratio));
  std::printf("  %-10s %10.1f %10.1f %12s\n", "dd_write", median(ms_of["dd_write"]), dd_write_mb, "");
  std::printf("  %-10s %10.1f %10.1f %12.3f\n", "read", median(ms_of["read"]), read_mb, median(read_ratio));
  std::printf("  %-10s %10.1f %10.1f %12s\n", "dd_read", median(ms_of["dd_read"]), dd_read_mb, "");
  std::printf("  (MB = 10^6 bytes; ckpt/dd = median over reps of each run's ratio to the dd next to it)\n");
  return 0;
}

}  // namespace
}  // namespace dtrain

int main(int argc, char** argv) {
  try {
    return dtrain::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_ckpt: %s\n", e.what());
    return 1;
  }
}
