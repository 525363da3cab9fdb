// Work completion, backend selection, the world description and abort_job.
#include "comm/communicator.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <thread>

#include "comm/backends.h"
#include "comm/environment.h"
#include "comm/mpi_runtime.h"
#include "core/config.h"
#include "core/gpu.h"
#include "core/log.h"

namespace dtrain {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::average: return "average";
    case ReduceOp::max: return "max";
  }
  return "?";
}

bool WorkState::spin_until_done(double limit_s) const {
  if (done_flag_.load(std::memory_order_acquire)) return true;
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(limit_s);
  for (int i = 1;; ++i) {
    if (done_flag_.load(std::memory_order_acquire)) return true;
    if (i % 64 == 0) {
      if (std::chrono::steady_clock::now() >= until) return false;
      std::this_thread::yield();  // lets the completing thread run where cores are oversubscribed
    }
  }
}

bool WorkState::wait(double timeout_s) {
  spin_until_done(std::min(timeout_s, kSpinS));
  std::unique_lock<std::mutex> lock(mu_);
  const auto limit = std::chrono::duration<double>(std::min(timeout_s, 1e7));
  if (!cv_.wait_for(lock, limit, [&] { return done_; })) return false;
  if (!error_.empty()) fail(error_);
  return true;
}

bool WorkState::is_done() {
  std::lock_guard<std::mutex> lock(mu_);
  return done_;
}

void WorkState::mark_started() {
  std::lock_guard<std::mutex> lock(mu_);
  started_ = std::chrono::steady_clock::now();
}

void WorkState::complete(std::string error) {
  const auto now = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point started;
  {
    std::lock_guard<std::mutex> lock(mu_);
    started = started_ == std::chrono::steady_clock::time_point{} ? now : started_;
  }
  complete(std::move(error), started, now);
}

void WorkState::complete(std::string error, std::chrono::steady_clock::time_point started,
                         std::chrono::steady_clock::time_point finished) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    done_flag_.store(true, std::memory_order_release);
    error_ = std::move(error);
    started_ = started;
    finished_ = finished;
  }
  cv_.notify_all();
}

std::string WorkState::error() {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

double WorkState::duration_s() const {
  auto* self = const_cast<WorkState*>(this);
  std::lock_guard<std::mutex> lock(self->mu_);
  if (!done_) return 0.0;
  return std::chrono::duration<double>(finished_ - started_).count();
}

std::pair<std::chrono::steady_clock::time_point, std::chrono::steady_clock::time_point> WorkState::interval() const {
  auto* self = const_cast<WorkState*>(this);
  std::lock_guard<std::mutex> lock(self->mu_);
  if (!done_) return {};
  return {started_, finished_};
}

std::pair<int64_t, int64_t> piece_of(int64_t n, int rank, int size) { return {n * rank / size, n * (rank + 1) / size}; }

Work Work::done(std::string description) {
  auto state = std::make_shared<WorkState>(std::move(description));
  state->complete();
  return Work(state);
}

std::string Communicator::host() const {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "unknown";
  return name;
}

namespace {

// The backends, one entry each: comm.backend's values besides "auto", what --help says of them, and
// their factories (comm/backends.h).
struct Registered {
  const char* name;
  const char* summary;
  std::unique_ptr<Communicator> (*make)(const CommOptions&);
};

const Registered kBackends[] = {
    {"mpi", "MPI collectives on host buffers (one progress thread owns every MPI call)", make_mpi_communicator},
    {"nccl", "NCCL collectives on GPU buffers, on their own CUDA stream (needs train.device=cuda)",
     make_nccl_communicator},
    {"single", "a world of one process, no MPI", make_single_communicator},
};

const Registered* find_backend(const std::string& name) {
  for (const Registered& b : kBackends)
    if (name == b.name) return &b;
  return nullptr;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> registered_backends() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const Registered& b : kBackends) out.emplace_back(b.name, b.summary);
  return out;
}

std::string resolve_backend(const CommOptions& options) {
  const std::string& b = options.backend;
  if (b != "auto") {
    if (find_backend(b)) return b;
    std::string known = "auto";
    for (const Registered& r : kBackends) known.append(", ").append(r.name);
    fail("comm.backend: unknown backend '", b, "' (expected ", known, ")");
  }
  const LaunchEnv env = detect_launch_env();
  const int gpus = options.model_device.is_cuda() ? gpu::device_count() : 0;
  return auto_backend(options.model_device.is_cuda(), DTRAIN_HAVE_NCCL, env.local_world, gpus, env.under_mpi);
}

std::string auto_backend(bool cuda_model, bool nccl_built, int local_ranks, int visible_gpus, bool under_mpi) {
  // NCCL refuses two ranks on one GPU; the mpi backend then carries GPU tensors through host memory.
  if (cuda_model && nccl_built && local_ranks <= visible_gpus) return "nccl";
  if (under_mpi) return "mpi";
  return "single";
}

std::unique_ptr<Communicator> make_communicator(const CommOptions& options) {
  std::unique_ptr<Communicator> comm = find_backend(resolve_backend(options))->make(options);
  if (options.log_world) describe_world(*comm, true);
  return comm;
}

std::vector<std::string> allgather_strings(Communicator& comm, const std::string& mine) {
  Tensor length = Tensor::from_vector(std::vector<int64_t>{static_cast<int64_t>(mine.size())}, Shape{1}, comm.device());
  comm.allreduce(length, ReduceOp::max).wait();
  const int64_t longest = std::max<int64_t>(1, length.to_vector<int64_t>()[0]);
  std::vector<uint8_t> bytes(mine.begin(), mine.end());
  bytes.resize(longest, 0);
  Tensor in = Tensor::from_vector(bytes, Shape{longest}, comm.device());
  Tensor out = Tensor::zeros(Shape{longest * comm.size()}, DType::u8, comm.device());
  comm.allgather(in, out).wait();
  const std::vector<uint8_t> all = out.to_vector<uint8_t>();
  std::vector<std::string> strings;
  for (int r = 0; r < comm.size(); ++r) {
    const char* p = reinterpret_cast<const char*>(all.data() + r * longest);
    strings.emplace_back(p, strnlen(p, longest));
  }
  return strings;
}

std::vector<std::string> describe_world(Communicator& comm, bool log) {
  const std::vector<std::string> lines = allgather_strings(
      comm, detail::concat("rank ", comm.rank(), " on ", comm.host(), " (local rank ", comm.local_rank(), "/",
                           comm.local_size(), "): backend ", comm.backend(), ", device ", comm.device().str()));
  std::map<std::string, int> per_host;
  for (const std::string& line : lines) {
    const auto on = line.find(" on "), paren = line.find(" (");
    ++per_host[line.substr(on + 4, paren - on - 4)];
  }
  if (log && comm.rank() == 0) {
    std::string counts;
    for (const auto& [h, n] : per_host) counts += detail::concat(counts.empty() ? "" : ", ", h, ": ", n);
    log_info("world: {} ranks on {} node(s) (ranks per node: {}), backend {}", comm.size(), per_host.size(), counts,
             comm.backend());
    for (const std::string& l : lines) log_info("  {}", l);
  }
  return lines;
}

void abort_job(const std::string& message, int code) noexcept {
  int rank = 0;
  if (MpiRuntime::active()) {
    rank = MpiRuntime::instance().world_rank();  // cached at init: only the progress thread calls MPI
  } else {
    try {
      rank = detect_launch_env().rank;
    } catch (...) {  // a malformed launcher variable must not stop the message from being printed
    }
  }
  std::fprintf(stderr, "[rank %d] error: %s\n", rank, message.c_str());
  std::fflush(stdout);
  std::fflush(stderr);
  if (MpiRuntime::active()) {
    // Give the other ranks a moment to print their own message before the job is torn down.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    MPI_Abort(MPI_COMM_WORLD, code);
  }
  std::_Exit(code);
}

}  // namespace dtrain

namespace dtrain {

int run_or_abort(const std::function<int()>& body) noexcept {
  try {
    return body();
  } catch (const std::exception& e) {
    abort_job(e.what());
  } catch (...) {
    abort_job("unknown exception");
  }
}

}  // namespace dtrain
