#pragma once
// Communicator: rank/size plus asynchronous collectives (broadcast, allreduce, allgather, barrier)
// that return a Work handle. The backends are one table in comm/communicator.cpp
// (registered_backends()); "auto" picks one for the build, the launch and the model's device.
//
// Every rank must issue the same collectives in the same order. Buffers must stay alive and
// untouched until the Work is done (each Work also keeps its tensors' storage alive).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace dtrain {

enum class ReduceOp { sum, average, max };
const char* reduce_op_name(ReduceOp op);

// The completion state that a backend shares with the Works it hands out.
class WorkState {
 public:
  explicit WorkState(std::string description) : description_(std::move(description)) {}
  virtual ~WorkState() = default;
  // Blocks until done or `timeout_s` passed; true when done. Rethrows the op's error as dtrain::Error.
  virtual bool wait(double timeout_s);
  virtual bool is_done();
  // Whether the op runs on a device stream (nccl), where wait_on_device need not block the host.
  virtual bool on_device() const { return false; }
  // On a device: makes the compute stream wait for the op (the work queued there from now on sees
  // its result) and returns true at once. On the host: wait(timeout_s).
  virtual bool wait_on_device(double timeout_s) { return wait(timeout_s); }
  // Called by the backend: marks the op finished (error empty on success). Waiters spin briefly
  // (kSpinS) on an atomic flag before they sleep, so a short collective's hand-off back costs no
  // futex wake-up.
  void complete(std::string error = {});
  // The same, with the interval the backend measured itself (a device's events).
  void complete(std::string error, std::chrono::steady_clock::time_point started,
                std::chrono::steady_clock::time_point finished);
  // When the transport took the op over: the start of duration_s() (else the finish).
  void mark_started();
  const std::string& description() const { return description_; }
  // The op's error once it failed ("" while running or after a success).
  std::string error();
  // Seconds between the backend starting the op (handing it to the transport, its inputs ready)
  // and finishing it (0 until done).
  double duration_s() const;
  // When the backend started and finished the op (both default-constructed until done).
  std::pair<std::chrono::steady_clock::time_point, std::chrono::steady_clock::time_point> interval() const;

 protected:
  // Spins up to `limit_s` for the done flag; true when it was set.
  bool spin_until_done(double limit_s) const;
  static constexpr double kSpinS = 50e-6;

  std::mutex mu_;  // guards done_, error_, started_, finished_
  std::condition_variable cv_;
  bool done_ = false;
  std::atomic<bool> done_flag_{false};  // done_, readable without mu_
  std::string error_;
  std::chrono::steady_clock::time_point started_{}, finished_{};
  std::string description_;
};

// A handle to one asynchronous collective. Copies share the same operation.
class Work {
 public:
  Work() = default;
  explicit Work(std::shared_ptr<WorkState> state) : state_(std::move(state)) {}
  // True once finished; false if `timeout_s` passed first. Throws dtrain::Error if the op failed.
  bool wait(double timeout_s = 1e9) const { return !state_ || state_->wait(timeout_s); }
  bool is_done() const { return !state_ || state_->is_done(); }
  bool valid() const { return state_ != nullptr; }  // false: default-constructed (nothing to wait for)
  bool on_device() const { return state_ && state_->on_device(); }
  // Where the op runs on a device stream (nccl): the compute stream waits for it, the host does not
  // (true at once). On the host backends: wait(timeout_s).
  bool wait_on_device(double timeout_s = 1e9) const { return !state_ || state_->wait_on_device(timeout_s); }
  // The op's error once it failed, "" otherwise (never throws).
  std::string error() const { return state_ ? state_->error() : std::string(); }
  std::string description() const { return state_ ? state_->description() : "no-op"; }
  double duration_s() const { return state_ ? state_->duration_s() : 0.0; }
  auto interval() const { return state_ ? state_->interval() : decltype(state_->interval()){}; }
  // An already finished Work.
  static Work done(std::string description);

 private:
  std::shared_ptr<WorkState> state_;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string backend() const = 0;  // "mpi", "nccl", "single"
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_rank() const = 0;  // rank among the processes on this node
  virtual int local_size() const = 0;  // processes on this node
  virtual Device device() const = 0;   // where collective buffers must live
  virtual std::string host() const;    // this node's name

  // Copies `t` from `root` to every rank (in place).
  virtual Work broadcast(Tensor t, int root) = 0;
  // In place; f32 and bf16 support every op, i32/i64 sum and max.
  virtual Work allreduce(Tensor t, ReduceOp op) = 0;
  // out (contiguous, size() * in.numel() elements, same dtype) receives every rank's `in` in rank order.
  virtual Work allgather(Tensor in, Tensor out) = 0;
  // ZeRO-1's pair, in place on a contiguous f32 tensor split into one piece per rank (piece_of):
  // reduce_scatter leaves in this rank's piece the reduction (sum or average) of every rank's
  // piece and the rest of t unspecified; allgather_pieces gives every rank every rank's piece.
  virtual Work reduce_scatter(Tensor t, ReduceOp op) = 0;
  virtual Work allgather_pieces(Tensor t) = 0;
  virtual Work barrier() = 0;
  // Ends the whole job now (MPI_Abort where MPI runs): used by the watchdog and by failing ranks.
  [[noreturn]] virtual void abort(int code) noexcept = 0;

  // The training step the collectives issued from now on belong to (-1: none). It is part of each
  // collective's fingerprint (comm/fingerprint.h), so a rank that skipped a step fails at once.
  // A communicator that wraps another forwards it (and set_wait_at_once).
  virtual void set_step_tag(int64_t step) { step_tag_ = step; }
  // true: the caller waits for the collectives it issues from now on at once, instead of computing
  // while they run. The mpi backend then runs them on the waiting thread without waking its
  // progress thread (a futex hand-off each way, 5-10 us on a small collective). A hint only.
  virtual void set_wait_at_once(bool) {}
  int64_t step_tag() const { return step_tag_; }

 private:
  int64_t step_tag_ = -1;
};

// The piece [begin, end) of an n-element buffer that `rank` of `size` owns in reduce_scatter and
// allgather_pieces: [n * rank / size, n * (rank + 1) / size), so pieces differ by at most one.
std::pair<int64_t, int64_t> piece_of(int64_t n, int rank, int size);

struct CommOptions {
  std::string backend = "auto";         // auto or a registered backend (registered_backends())
  Device model_device = Device::cpu();  // auto picks nccl for a CUDA model when NCCL is built
  int gpu = -1;                         // nccl: pinned GPU; -1 = local rank modulo visible GPUs
  bool log_world = true;                // rank 0 logs world size, ranks per node, backend and devices
  bool fingerprint = true;              // comm.fingerprint: check each collective's fingerprint across ranks first
  double timeout_s = 300;               // comm.timeout_s: nccl's host-side fingerprint exchange aborts after it
};

// Creates the communicator (collective: every rank of the launch calls it).
std::unique_ptr<Communicator> make_communicator(const CommOptions& options = {});
// Resolves "auto" to a concrete backend name for this build, launch and model device; throws naming
// comm.backend and the registered backends for an unknown name.
std::string resolve_backend(const CommOptions& options);
// What "auto" picks: nccl for a model on a GPU when NCCL is built and this node has a GPU for every
// local rank; otherwise mpi under an MPI launcher, else single.
std::string auto_backend(bool cuda_model, bool nccl_built, int local_ranks, int visible_gpus, bool under_mpi);
// The registered backends (comm/communicator.cpp's table), in table order: name and a one-line summary.
std::vector<std::pair<std::string, std::string>> registered_backends();
// Collective: every rank's string (no NUL bytes), in rank order, on every rank.
std::vector<std::string> allgather_strings(Communicator& comm, const std::string& mine);
// Gathers one line per rank ("rank 1 on node-a: mpi cpu") to every rank; rank 0 logs it.
std::vector<std::string> describe_world(Communicator& comm, bool log);

// Prints "[rank r] error: message" to stderr and ends the whole job: MPI_Abort when MPI is
// initialised (so no other rank hangs), otherwise a plain exit with `code`.
[[noreturn]] void abort_job(const std::string& message, int code = 1) noexcept;
// Runs `body` and returns its result; an exception aborts the whole job via abort_job.
int run_or_abort(const std::function<int()>& body) noexcept;

}  // namespace dtrain
