#pragma once
// Internal to comm/: the process-wide MPI progress thread. MPI can be initialised only once per
// process, so the thread that owns MPI (init, every call, finalize) lives from first use to
// process exit; communicators built on it are cheap handles (a dup of MPI_COMM_WORLD).
// MPI_THREAD_FUNNELED is requested: only that thread calls MPI, except MPI_Abort on the way out
// (Open MPI honours it from any thread) and the thread-safe MPI_Initialized/MPI_Finalized.
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
  // thrown by `op` fails the Work with its message.
  Work submit(std::string description, std::function<void()> op);
  // submit() and wait for it (rethrows its error).
  void run(std::string description, std::function<void()> op);
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
  // After a task, the thread spins this long for the next before it sleeps: a step's collectives
  // come in bursts, and a sleeping thread costs a futex wake-up (5-10 us) per hand-off.
  static constexpr double kIdleSpinS = 200e-6;
  void spin_for_task() const;

  std::mutex mu_;  // guards queue_, stop_ and sleeping_
  std::condition_variable cv_;
  std::deque<Task> queue_;
  std::atomic<int> queued_{0};  // queue_.size(), readable without mu_
  bool sleeping_ = false;       // the thread waits on cv_: submit() must notify
  bool stop_ = false;
  bool owns_mpi_ = false;  // we called MPI_Init_thread, so we finalize
  int world_rank_ = 0, world_size_ = 1;
  MPI_Op bf16_sum_ = MPI_OP_NULL, bf16_max_ = MPI_OP_NULL;
  std::string init_error_;
  std::thread thread_;
};

}  // namespace dtrain
