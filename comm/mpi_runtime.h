#pragma once
// Internal to comm/: the process-wide MPI progress thread. MPI can be initialised only once per
// process, so the thread that owns MPI (init, every call, finalize) lives from first use to
// process exit; communicators built on it are cheap handles (a dup of MPI_COMM_WORLD).
// MPI_THREAD_SERIALIZED is requested: collectives run one at a time, in submission order, on that
// thread or on a thread waiting for one of them (help()); MPI_Abort on the way out is called from
// any thread (Open MPI honours it), as are the thread-safe MPI_Initialized/MPI_Finalized.
#include <mpi.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "comm/communicator.h"

// Checks an MPI return code and throws dtrain::Error naming the call and MPI's own message.
#define DTRAIN_MPI_CHECK(call)                                                                                \
  do {                                                                                                        \
    const int dtrain_mpi_rc_ = (call);                                                                        \
    if (dtrain_mpi_rc_ != MPI_SUCCESS) ::dtrain::detail::mpi_fail(#call, dtrain_mpi_rc_, __FILE__, __LINE__); \
  } while (0)

namespace dtrain {
namespace detail {
[[noreturn]] void mpi_fail(const char* call, int rc, const char* file, int line);
}  // namespace detail

class MpiRuntime {
 public:
  // Starts the progress thread and initialises MPI on first use; throws if MPI cannot start.
  static MpiRuntime& instance();
  // True while MPI is usable (initialised and not finalised); safe from any thread.
  static bool active();
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  // Queues `op` for the progress thread; ops run one at a time in submission order. An exception
  // thrown by `op` fails the Work with its message. wake=false: the caller is about to wait for it
  // and will run it itself (help()), so the progress thread is not woken for it.
  Work submit(std::string description, std::function<void()> op, bool wake = true);
  // submit() and wait for it (rethrows its error).
  void run(std::string description, std::function<void()> op);
  // Runs the oldest queued op on the calling thread unless another thread is running one; false
  // when nothing ran (queue empty, an op in progress elsewhere, or MPI without SERIALIZED).
  bool help();
  bool can_help() const { return can_help_; }
  // Wakes the progress thread if it sleeps with ops queued (after a wait that could not help).
  void wake();
  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }
  MPI_Op bf16_sum() const { return bf16_sum_; }
  MPI_Op bf16_max() const { return bf16_max_; }

 private:
  MpiRuntime();
  void loop();
  struct Task {
    std::shared_ptr<WorkState> state;
    std::function<void()> op;
  };
  bool run_front();

  std::mutex exec_mu_;  // held while an op runs: ops run one at a time, in queue order
  std::mutex mu_;       // guards queue_, stop_ and sleeping_
  std::condition_variable cv_;
  std::deque<Task> queue_;
  bool sleeping_ = false;  // the thread waits on cv_: submit() must notify
  bool can_help_ = false;  // MPI_THREAD_SERIALIZED or better: other threads may run ops
  bool stop_ = false;
  bool owns_mpi_ = false;  // we called MPI_Init_thread, so we finalize
  int world_rank_ = 0, world_size_ = 1;
  MPI_Op bf16_sum_ = MPI_OP_NULL, bf16_max_ = MPI_OP_NULL;
  std::string init_error_;
  std::thread thread_;
};

}  // namespace dtrain
