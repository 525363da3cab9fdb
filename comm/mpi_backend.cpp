// The "mpi" backend: CPU buffers, blocking MPI collectives run on the progress thread so the
// caller keeps computing. Each communicator is a dup of MPI_COMM_WORLD with errors returned.
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <future>
#include <vector>

#include "comm/backends.h"
#include "comm/fingerprint.h"
#include "comm/mpi_runtime.h"
#include "core/ops.h"

namespace dtrain {
namespace detail {

void mpi_fail(const char* call, int rc, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) std::snprintf(text, sizeof text, "code %d", rc);
  fail("MPI error in ", call, " (", file, ":", line, "): ", text);
}

}  // namespace detail

namespace {

// bf16 reductions for the compressed gradient wire format (MPI has no bf16 type).
void bf16_sum_op(void* in, void* inout, int* len, MPI_Datatype*) {
  auto* a = static_cast<const bf16*>(in);
  auto* b = static_cast<bf16*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = to_bf16(from_bf16(a[i]) + from_bf16(b[i]));
}
void bf16_max_op(void* in, void* inout, int* len, MPI_Datatype*) {
  auto* a = static_cast<const bf16*>(in);
  auto* b = static_cast<bf16*>(inout);
  for (int i = 0; i < *len; ++i)
    if (from_bf16(a[i]) > from_bf16(b[i])) b[i] = a[i];
}

const char* thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE: return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
    default: return "MPI_THREAD_MULTIPLE";
  }
}

}  // namespace

MpiRuntime& MpiRuntime::instance() {
  static MpiRuntime runtime;  // joined (and MPI finalised) at process exit
  if (!runtime.init_error_.empty()) fail(runtime.init_error_);
  return runtime;
}

bool MpiRuntime::active() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

MpiRuntime::MpiRuntime() {
  std::promise<void> ready;
  auto started = ready.get_future();
  thread_ = std::thread([this, &ready] {
    try {
      int init = 0;
      DTRAIN_MPI_CHECK(MPI_Initialized(&init));
      if (!init) {
        int provided = 0;
        DTRAIN_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided));
        owns_mpi_ = true;
        can_help_ = provided >= MPI_THREAD_SERIALIZED;
      } else {
        // Someone else initialised MPI: calling it from this thread needs at least SERIALIZED.
        int provided = 0;
        DTRAIN_MPI_CHECK(MPI_Query_thread(&provided));
        DTRAIN_CHECK(provided >= MPI_THREAD_SERIALIZED, "MPI was initialised elsewhere with ",
                     thread_level_name(provided),
                     "; the mpi backend needs to initialise MPI itself or MPI_THREAD_SERIALIZED");
        can_help_ = true;
      }
      DTRAIN_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_));
      DTRAIN_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_size_));
      DTRAIN_MPI_CHECK(MPI_Op_create(&bf16_sum_op, 1, &bf16_sum_));
      DTRAIN_MPI_CHECK(MPI_Op_create(&bf16_max_op, 1, &bf16_max_));
    } catch (const std::exception& e) {
      init_error_ = e.what();
      ready.set_value();
      return;
    }
    ready.set_value();
    loop();
  });
  started.wait();
  if (!init_error_.empty()) {
    thread_.join();
  }
}

MpiRuntime::~MpiRuntime() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

// With exec_mu_ held: pops the oldest task and runs it; false when the queue was empty.
bool MpiRuntime::run_front() {
  Task task;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (queue_.empty()) return false;
    task = std::move(queue_.front());
    queue_.pop_front();
  }
  task.state->mark_started();
  try {
    task.op();
    task.state->complete();
  } catch (const std::exception& e) {
    task.state->complete(e.what());
  } catch (...) {
    task.state->complete("unknown exception in " + task.state->description());
  }
  return true;
}

bool MpiRuntime::help() {
  if (!can_help_) return false;
  std::unique_lock<std::mutex> exec(exec_mu_, std::try_to_lock);
  return exec.owns_lock() && run_front();
}

void MpiRuntime::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      sleeping_ = true;
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      sleeping_ = false;
      if (queue_.empty()) break;  // stop_ and drained
    }
    std::lock_guard<std::mutex> exec(exec_mu_);
    run_front();  // a waiting thread may have run it already (help())
  }
  std::lock_guard<std::mutex> exec(exec_mu_);  // a helper may still be inside the last op
  MPI_Op_free(&bf16_sum_);
  MPI_Op_free(&bf16_max_);
  if (owns_mpi_) {
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
  }
}

namespace {

// A Work submitted with wake=false (its caller waits for it at once): the waiter runs the queued
// collectives itself (in order, up to its own) while the progress thread is not running one, so
// the step's last bucket costs no hand-off to the progress thread and back. A waiter inside MPI
// cannot time out, so such Works must be watched by a Watchdog (ParamSync's are; Watchdog::wait
// registers what it waits for); every other Work is run by the progress thread, and wait()'s
// timeout holds.
class MpiWorkState final : public WorkState {
 public:
  MpiWorkState(std::string description, MpiRuntime& rt, bool helped)
      : WorkState(std::move(description)), rt_(rt), helped_(helped) {}
  bool wait(double timeout_s) override {
    if (helped_) {
      while (!done_flag_.load(std::memory_order_acquire) && rt_.help()) {}
      if (!done_flag_.load(std::memory_order_acquire)) rt_.wake();  // queued without a wake-up
    }
    return WorkState::wait(timeout_s);
  }

 private:
  MpiRuntime& rt_;
  bool helped_;
};

}  // namespace

Work MpiRuntime::submit(std::string description, std::function<void()> op, bool wake) {
  auto state = std::make_shared<MpiWorkState>(std::move(description), *this, !wake && can_help_);
  bool notify = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    DTRAIN_CHECK(!stop_, "MPI progress thread already stopped; cannot run ", state->description());
    queue_.push_back(Task{state, std::move(op)});
    notify = sleeping_ && (wake || !can_help_);
  }
  if (notify) cv_.notify_one();
  return Work(state);
}

void MpiRuntime::wake() {
  bool notify = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    notify = sleeping_ && !queue_.empty();
  }
  if (notify) cv_.notify_one();
}

void MpiRuntime::run(std::string description, std::function<void()> op) {
  submit(std::move(description), std::move(op), false).wait();
}

namespace {

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f32: return MPI_FLOAT;
    case DType::bf16: return MPI_UINT16_T;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::u8: return MPI_UINT8_T;
  }
  fail("mpi backend: unsupported dtype");
}

// MPI counts are int: large buffers go in chunks.
constexpr int64_t kMaxChunk = int64_t{1} << 30;

// Built for every collective, so without a stream: "allreduce(sum) of 1024 f32 (4096 bytes)".
std::string describe(std::string op, const Tensor& t) {
  op.append(" of ").append(std::to_string(t.numel())).append(" ").append(dtype_name(t.dtype()));
  return op.append(" (").append(std::to_string(t.nbytes())).append(" bytes)");
}

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(bool fingerprint) : rt_(MpiRuntime::instance()), fingerprint_(fingerprint) {
    rt_.run("communicator setup", [this] {
      DTRAIN_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm_));
      DTRAIN_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
      DTRAIN_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
      DTRAIN_MPI_CHECK(MPI_Comm_size(comm_, &size_));
      DTRAIN_MPI_CHECK(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node_));
      DTRAIN_MPI_CHECK(MPI_Comm_rank(node_, &local_rank_));
      DTRAIN_MPI_CHECK(MPI_Comm_size(node_, &local_size_));
      char name[MPI_MAX_PROCESSOR_NAME] = {};
      int len = 0;
      DTRAIN_MPI_CHECK(MPI_Get_processor_name(name, &len));
      host_.assign(name, len);
    });
  }
  ~MpiCommunicator() override {
    if (!MpiRuntime::active()) return;
    try {
      rt_.run("communicator teardown", [this] {
        MPI_Comm_free(&node_);
        MPI_Comm_free(&comm_);
      });
    } catch (...) {}
  }

  std::string backend() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }
  Device device() const override { return Device::cpu(); }
  std::string host() const override { return host_; }

  Work broadcast(Tensor t, int root) override {
    check_buffer(t, "broadcast");
    DTRAIN_CHECK(root >= 0 && root < size_, "broadcast: root ", root, " outside world of ", size_);
    const Fingerprint fp = next_fingerprint(CollectiveKind::broadcast, &t, -1, root);
    return submit_collective(describe("broadcast", t) + " from rank " + std::to_string(root), [this, t, root, fp] {
      check_fingerprint(fp);
      char* p = static_cast<char*>(t.raw_data());
      const int64_t esize = dtype_size(t.dtype());
      for (int64_t done = 0; done < t.numel(); done += kMaxChunk) {
        const int n = static_cast<int>(std::min(kMaxChunk, t.numel() - done));
        DTRAIN_MPI_CHECK(MPI_Bcast(p + done * esize, n, mpi_type(t.dtype()), root, comm_));
      }
    });
  }

  Work allreduce(Tensor t, ReduceOp op) override {
    check_buffer(t, "allreduce");
    const bool is_float = t.dtype() == DType::f32 || t.dtype() == DType::bf16;
    DTRAIN_CHECK(is_float || op != ReduceOp::average, "allreduce: average needs f32 or bf16, got ",
                 dtype_name(t.dtype()));
    DTRAIN_CHECK(t.dtype() != DType::u8 || op == ReduceOp::max, "allreduce: u8 supports max only");
    MPI_Op mop = op == ReduceOp::max ? MPI_MAX : MPI_SUM;
    if (t.dtype() == DType::bf16) mop = op == ReduceOp::max ? rt_.bf16_max() : rt_.bf16_sum();
    const Fingerprint fp = next_fingerprint(CollectiveKind::allreduce, &t, static_cast<int64_t>(op));
    return submit_collective(describe(std::string("allreduce(") + reduce_op_name(op) + ")", t), [this, t, op, mop, fp] {
      check_fingerprint(fp);
      char* p = static_cast<char*>(t.raw_data());
      const int64_t esize = dtype_size(t.dtype());
      for (int64_t done = 0; done < t.numel(); done += kMaxChunk) {
        const int n = static_cast<int>(std::min(kMaxChunk, t.numel() - done));
        DTRAIN_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, p + done * esize, n, mpi_type(t.dtype()), mop, comm_));
      }
      if (op == ReduceOp::average && size_ > 1) divide(t, size_);
    });
  }

  Work allgather(Tensor in, Tensor out) override {
    check_buffer(in, "allgather");
    check_buffer(out, "allgather");
    DTRAIN_CHECK(in.dtype() == out.dtype() && out.numel() == in.numel() * size_, "allgather: output has ", out.numel(),
                 " ", dtype_name(out.dtype()), ", expected ", in.numel() * size_, " ", dtype_name(in.dtype()), " (",
                 size_, " ranks x ", in.numel(), ")");
    DTRAIN_CHECK(in.numel() <= INT_MAX, "allgather: ", in.numel(), " elements per rank exceed MPI's int count");
    const Fingerprint fp = next_fingerprint(CollectiveKind::allgather, &in);
    return submit_collective(describe("allgather", in), [this, in, out, fp] {
      check_fingerprint(fp);
      DTRAIN_MPI_CHECK(MPI_Allgather(in.raw_data(), static_cast<int>(in.numel()), mpi_type(in.dtype()), out.raw_data(),
                                     static_cast<int>(in.numel()), mpi_type(in.dtype()), comm_));
    });
  }

  Work reduce_scatter(Tensor t, ReduceOp op) override {
    check_pieces(t, "reduce_scatter");
    DTRAIN_CHECK(op != ReduceOp::max, "reduce_scatter: sum or average only");
    const Fingerprint fp = next_fingerprint(CollectiveKind::reduce_scatter, &t, static_cast<int64_t>(op));
    return submit_collective(describe(std::string("reduce_scatter(") + reduce_op_name(op) + ")", t), [this, t, op, fp] {
      check_fingerprint(fp);
      const std::vector<int> counts = piece_counts(t.numel());
      float* p = t.data<float>();
      // In place: MPI leaves this rank's result at the buffer's start.
      DTRAIN_MPI_CHECK(MPI_Reduce_scatter(MPI_IN_PLACE, p, counts.data(), MPI_FLOAT, MPI_SUM, comm_));
      const auto [begin, end] = piece_of(t.numel(), rank_, size_);
      if (begin > 0) std::memmove(p + begin, p, static_cast<size_t>(end - begin) * sizeof(float));
      if (op == ReduceOp::average && size_ > 1)
        for (int64_t i = begin; i < end; ++i) p[i] /= static_cast<float>(size_);
    });
  }

  Work allgather_pieces(Tensor t) override {
    check_pieces(t, "allgather_pieces");
    const Fingerprint fp = next_fingerprint(CollectiveKind::allgather_pieces, &t);
    return submit_collective(describe("allgather_pieces", t), [this, t, fp] {
      check_fingerprint(fp);
      const std::vector<int> counts = piece_counts(t.numel());
      std::vector<int> displs(counts.size(), 0);
      for (size_t r = 1; r < counts.size(); ++r) displs[r] = displs[r - 1] + counts[r - 1];
      DTRAIN_MPI_CHECK(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, t.raw_data(), counts.data(), displs.data(),
                                      MPI_FLOAT, comm_));
    });
  }

  Work barrier() override {
    const Fingerprint fp = next_fingerprint(CollectiveKind::barrier, nullptr);
    return submit_collective("barrier", [this, fp] {
      check_fingerprint(fp);
      DTRAIN_MPI_CHECK(MPI_Barrier(comm_));
    });
  }

  void set_wait_at_once(bool at_once) override { wait_at_once_ = at_once; }

  [[noreturn]] void abort(int code) noexcept override {
    std::fflush(stdout);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

 private:
  Work submit_collective(std::string description, std::function<void()> op) {
    return rt_.submit(std::move(description), std::move(op), !wait_at_once_);
  }
  // On the calling thread, in issue order: this collective's fingerprint.
  Fingerprint next_fingerprint(CollectiveKind kind, const Tensor* t, int64_t op = -1, int64_t root = -1) {
    return make_fingerprint(seq_++, kind, step_tag(), t, op, root);
  }
  // On the progress thread, before the collective: every rank's fingerprint in one allgather; a
  // mismatch fails this Work on every rank with the same message.
  void check_fingerprint(const Fingerprint& mine) {
    if (!fingerprint_ || size_ == 1) return;
    gathered_.resize(size_);
    DTRAIN_MPI_CHECK(
        MPI_Allgather(&mine, kFingerprintWords, MPI_INT64_T, gathered_.data(), kFingerprintWords, MPI_INT64_T, comm_));
    const std::string mismatch = fingerprint_mismatch(gathered_);
    if (!mismatch.empty()) fail(mismatch);
  }
  // Each rank's piece size (piece_of), as MPI's int counts.
  std::vector<int> piece_counts(int64_t n) const {
    std::vector<int> counts(static_cast<size_t>(size_));
    for (int r = 0; r < size_; ++r) {
      const auto [begin, end] = piece_of(n, r, size_);
      counts[static_cast<size_t>(r)] = static_cast<int>(end - begin);
    }
    return counts;
  }
  static void check_pieces(const Tensor& t, const char* op) {
    check_buffer(t, op);
    DTRAIN_CHECK(t.dtype() == DType::f32, op, ": f32 only, got ", dtype_name(t.dtype()));
    DTRAIN_CHECK(t.numel() <= INT_MAX, op, ": ", t.numel(), " elements exceed MPI's int count");
  }
  static void check_buffer(const Tensor& t, const char* op) {
    DTRAIN_CHECK(t.defined(), op, ": undefined tensor");
    DTRAIN_CHECK(t.device().is_cpu(), op, ": the mpi backend needs CPU buffers, got a tensor on ", t.device().str());
    DTRAIN_CHECK(t.is_contiguous(), op, ": tensor ", t.shape().str(), " is not contiguous");
  }
  static void divide(const Tensor& t, int n) {
    if (t.dtype() == DType::f32) {
      float* p = t.data<float>();
      const float inv = 1.0f / static_cast<float>(n);
      for (int64_t i = 0; i < t.numel(); ++i) p[i] *= inv;
    } else {
      bf16* p = t.data<bf16>();
      for (int64_t i = 0; i < t.numel(); ++i) p[i] = to_bf16(from_bf16(p[i]) / static_cast<float>(n));
    }
  }

  MpiRuntime& rt_;
  MPI_Comm comm_ = MPI_COMM_NULL, node_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  std::string host_;
  bool fingerprint_;
  bool wait_at_once_ = false;
  int64_t seq_ = 0;                    // collectives issued (calling thread)
  std::vector<Fingerprint> gathered_;  // progress thread only
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(const CommOptions& options) {
  return std::make_unique<MpiCommunicator>(options.fingerprint);
}

}  // namespace dtrain
