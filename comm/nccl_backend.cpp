// The "nccl" backend: GPU buffers. The NCCL communicator is built from a unique id that rank 0
// creates and broadcasts over MPI (no MPI needed for a world of one); the GPU is the local rank
// (from MPI_Comm_split_type(SHARED)) modulo the visible GPUs unless pinned. Collectives run on
// the backend's own stream after an event on the compute stream; timing events around each on that
// stream give its duration (the collective's own, not the compute it waited for) and mark its end,
// which the host polls (wait) or the compute stream waits for (wait_on_device).
#include "comm/backends.h"
#include "core/config.h"

#if DTRAIN_HAVE_NCCL
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "comm/environment.h"
#include "comm/fingerprint.h"
#include "comm/mpi_runtime.h"
#include "core/cuda/check.h"
#include "core/gpu.h"

// NCCL's own last message (e.g. "invalid usage: Duplicate GPU detected") follows its error string.
#define DTRAIN_NCCL_CHECK(call)                                                                                       \
  do {                                                                                                                \
    const ncclResult_t dtrain_nccl_rc_ = (call);                                                                      \
    if (dtrain_nccl_rc_ != ncclSuccess) {                                                                             \
      const char* dtrain_nccl_last_ = ncclGetLastError(nullptr);                                                      \
      ::dtrain::fail("NCCL error in ", #call, " (", __FILE__, ":", __LINE__,                                          \
                     "): ", ncclGetErrorString(dtrain_nccl_rc_),                                                      \
                     dtrain_nccl_last_&&* dtrain_nccl_last_ ? std::string(": ") + dtrain_nccl_last_ : std::string()); \
    }                                                                                                                 \
  } while (0)

namespace dtrain {
namespace {

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::f32: return ncclFloat32;
    case DType::bf16: return ncclBfloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::u8: return ncclUint8;
  }
  fail("nccl backend: unsupported dtype");
}

// A timing event on the communicator's stream whose time on the host clock is known: the origin
// for turning an event into a steady_clock time point (for traces). Shared with the Works, which
// may outlive the communicator.
struct EventClock {
  explicit EventClock(cudaStream_t stream) {
    DTRAIN_CUDA_CHECK(cudaEventCreate(&origin));
    DTRAIN_CUDA_CHECK(cudaEventRecord(origin, stream));
    DTRAIN_CUDA_CHECK(cudaEventSynchronize(origin));
    host = std::chrono::steady_clock::now();
  }
  ~EventClock() { cudaEventDestroy(origin); }
  EventClock(const EventClock&) = delete;
  EventClock& operator=(const EventClock&) = delete;
  // The host time of a completed timing event (float milliseconds from the origin: about 0.25 ms
  // of resolution after an hour, plenty for a trace).
  std::chrono::steady_clock::time_point at(cudaEvent_t event) const {
    float ms = 0;
    if (cudaEventElapsedTime(&ms, origin, event) != cudaSuccess) return std::chrono::steady_clock::now();
    return host + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                      std::chrono::duration<double, std::milli>(ms));
  }
  cudaEvent_t origin = nullptr;
  std::chrono::steady_clock::time_point host;
};

// Done when the event recorded after the collective has fired; holds the buffers until then.
class NcclWorkState final : public WorkState {
 public:
  NcclWorkState(std::string description, int device, ncclComm_t comm, std::vector<Tensor> keep,
                std::shared_ptr<const EventClock> clock)
      : WorkState(std::move(description)),
        device_(device),
        comm_(comm),
        keep_(std::move(keep)),
        clock_(std::move(clock)) {
    DTRAIN_CUDA_CHECK(cudaSetDevice(device_));
    DTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&queued_, cudaEventDisableTiming));
    DTRAIN_CUDA_CHECK(cudaEventCreate(&begin_));
    DTRAIN_CUDA_CHECK(cudaEventCreate(&end_));
  }
  ~NcclWorkState() override {
    for (cudaEvent_t e : {queued_, begin_, end_})
      if (e) cudaEventDestroy(e);
  }
  cudaEvent_t queued() const { return queued_; }  // on the compute stream: the inputs are written
  cudaEvent_t begin() const { return begin_; }    // on the comm stream, before the collective
  cudaEvent_t end() const { return end_; }        // after it
  bool on_device() const override { return true; }
  bool wait_on_device(double) override {
    DTRAIN_CUDA_CHECK(cudaSetDevice(device_));
    DTRAIN_CUDA_CHECK(cudaStreamWaitEvent(cuda::compute_stream(device_), end_, 0));
    return true;
  }

  // The watchdog thread and the waiting thread both query: one at a time, so the event is read and
  // the buffers released exactly once.
  bool is_done() override {
    std::lock_guard<std::mutex> lock(query_mu_);
    if (WorkState::is_done()) return true;
    cudaSetDevice(device_);
    const cudaError_t rc = cudaEventQuery(end_);
    if (rc == cudaErrorNotReady) {
      // A failed peer shows here within the watchdog's next poll, not at comm.timeout_s.
      ncclResult_t async = ncclSuccess;
      if (comm_ && ncclCommGetAsyncError(comm_, &async) == ncclSuccess && async != ncclSuccess) {
        complete(detail::concat("NCCL reported an error during ", description(), ": ", ncclGetErrorString(async),
                                " (a peer rank may have failed)"));
        keep_.clear();
        return true;
      }
      return false;
    }
    if (rc == cudaSuccess)
      complete({}, clock_->at(begin_), clock_->at(end_));
    else
      complete(std::string("CUDA error while waiting for ") + description() + ": " + cudaGetErrorString(rc));
    keep_.clear();
    return true;
  }
  bool wait(double timeout_s) override {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(std::min(timeout_s, 1e7));
    while (!is_done()) {
      if (std::chrono::steady_clock::now() >= until) return false;
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    return WorkState::wait(0);
  }

 private:
  int device_;
  ncclComm_t comm_;
  std::mutex query_mu_;  // guards the query-complete-release transition and keep_
  std::vector<Tensor> keep_;
  std::shared_ptr<const EventClock> clock_;
  cudaEvent_t queued_ = nullptr, begin_ = nullptr, end_ = nullptr;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(int gpu, bool fingerprint, double timeout_s) : timeout_s_(timeout_s) {
    const LaunchEnv env = detect_launch_env();
    fingerprint_ = fingerprint && env.under_mpi;
    ncclUniqueId id{};
    if (env.under_mpi) {
      MpiRuntime& rt = MpiRuntime::instance();
      rt.run("nccl bootstrap", [&] {
        DTRAIN_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
        DTRAIN_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_));
        MPI_Comm node = MPI_COMM_NULL;
        DTRAIN_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node));
        MPI_Comm_rank(node, &local_rank_);
        MPI_Comm_size(node, &local_size_);
        MPI_Comm_free(&node);
        if (rank_ == 0) DTRAIN_NCCL_CHECK(ncclGetUniqueId(&id));
        DTRAIN_MPI_CHECK(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD));
      });
    } else {
      DTRAIN_CHECK(env.world == 1, "nccl backend: launched by ", env.launcher, " with ", env.world,
                   " processes but without MPI to share the NCCL id (use mpirun or srun --mpi=pmix)");
      DTRAIN_NCCL_CHECK(ncclGetUniqueId(&id));
    }
    const int visible = gpu::device_count();
    DTRAIN_CHECK(visible > 0, "nccl backend on rank ", rank_, ": no GPU is visible");
    gpu_ = gpu >= 0 ? gpu : local_rank_ % visible;
    DTRAIN_CHECK(gpu_ < visible, "nccl backend on rank ", rank_, ": GPU ", gpu_, " pinned but only ", visible,
                 " visible");
    DTRAIN_CUDA_CHECK(cudaSetDevice(gpu_));
    if (env.under_mpi) check_one_gpu_per_rank();
    DTRAIN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    DTRAIN_NCCL_CHECK(ncclCommInitRank(&comm_, size_, id, rank_));
    clock_ = std::make_shared<const EventClock>(stream_);
    barrier_buf_ = Tensor::zeros(Shape{1}, DType::f32, Device::cuda(gpu_));
  }
  ~NcclCommunicator() override {
    if (comm_) {
      cudaSetDevice(gpu_);
      cudaStreamSynchronize(stream_);
      ncclCommDestroy(comm_);
    }
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string backend() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }
  Device device() const override { return Device::cuda(gpu_); }

  Work broadcast(Tensor t, int root) override {
    check_buffer(t, "broadcast");
    DTRAIN_CHECK(root >= 0 && root < size_, "broadcast: root ", root, " outside world of ", size_);
    return launch(
        "broadcast", {t}, make_fingerprint(seq_++, CollectiveKind::broadcast, step_tag(), &t, -1, root),
        [&](cudaStream_t s) {
          DTRAIN_NCCL_CHECK(ncclBroadcast(t.raw_data(), t.raw_data(), t.numel(), nccl_type(t.dtype()), root, comm_, s));
        });
  }
  Work allreduce(Tensor t, ReduceOp op) override {
    check_buffer(t, "allreduce");
    const ncclRedOp_t nop = op == ReduceOp::sum ? ncclSum : op == ReduceOp::max ? ncclMax : ncclAvg;
    return launch(
        std::string("allreduce(") + reduce_op_name(op) + ")", {t},
        make_fingerprint(seq_++, CollectiveKind::allreduce, step_tag(), &t, static_cast<int64_t>(op)),
        [&](cudaStream_t s) {
          DTRAIN_NCCL_CHECK(ncclAllReduce(t.raw_data(), t.raw_data(), t.numel(), nccl_type(t.dtype()), nop, comm_, s));
        });
  }
  Work allgather(Tensor in, Tensor out) override {
    check_buffer(in, "allgather");
    check_buffer(out, "allgather");
    DTRAIN_CHECK(in.dtype() == out.dtype() && out.numel() == in.numel() * size_, "allgather: output has ", out.numel(),
                 " elements, expected ", in.numel() * size_);
    return launch(
        "allgather", {in, out}, make_fingerprint(seq_++, CollectiveKind::allgather, step_tag(), &in),
        [&](cudaStream_t s) {
          DTRAIN_NCCL_CHECK(ncclAllGather(in.raw_data(), out.raw_data(), in.numel(), nccl_type(in.dtype()), comm_, s));
        });
  }
  // NCCL's own reduce-scatter and all-gather need equal pieces; piece_of's may differ by one, so
  // each piece is a reduce to (or a broadcast from) its owner, all in one NCCL group.
  Work reduce_scatter(Tensor t, ReduceOp op) override {
    check_buffer(t, "reduce_scatter");
    DTRAIN_CHECK(t.dtype() == DType::f32 && op != ReduceOp::max, "reduce_scatter: f32 sum or average only");
    const ncclRedOp_t nop = op == ReduceOp::sum ? ncclSum : ncclAvg;
    return launch(std::string("reduce_scatter(") + reduce_op_name(op) + ")", {t},
                  make_fingerprint(seq_++, CollectiveKind::reduce_scatter, step_tag(), &t, static_cast<int64_t>(op)),
                  [&](cudaStream_t s) {
                    float* p = t.data<float>();
                    DTRAIN_NCCL_CHECK(ncclGroupStart());
                    for (int r = 0; r < size_; ++r) {
                      const auto [begin, end] = piece_of(t.numel(), r, size_);
                      DTRAIN_NCCL_CHECK(ncclReduce(p + begin, p + begin, end - begin, ncclFloat32, nop, r, comm_, s));
                    }
                    DTRAIN_NCCL_CHECK(ncclGroupEnd());
                  });
  }
  Work allgather_pieces(Tensor t) override {
    check_buffer(t, "allgather_pieces");
    DTRAIN_CHECK(t.dtype() == DType::f32, "allgather_pieces: f32 only");
    return launch("allgather_pieces", {t}, make_fingerprint(seq_++, CollectiveKind::allgather_pieces, step_tag(), &t),
                  [&](cudaStream_t s) {
                    float* p = t.data<float>();
                    DTRAIN_NCCL_CHECK(ncclGroupStart());
                    for (int r = 0; r < size_; ++r) {
                      const auto [begin, end] = piece_of(t.numel(), r, size_);
                      DTRAIN_NCCL_CHECK(ncclBroadcast(p + begin, p + begin, end - begin, ncclFloat32, r, comm_, s));
                    }
                    DTRAIN_NCCL_CHECK(ncclGroupEnd());
                  });
  }
  Work barrier() override {
    return launch(
        "barrier", {barrier_buf_}, make_fingerprint(seq_++, CollectiveKind::barrier, step_tag()), [&](cudaStream_t s) {
          DTRAIN_NCCL_CHECK(
              ncclAllReduce(barrier_buf_.raw_data(), barrier_buf_.raw_data(), 1, ncclFloat32, ncclSum, comm_, s));
        });
  }
  [[noreturn]] void abort(int code) noexcept override {
    std::fflush(stdout);
    std::fflush(stderr);
    if (comm_) ncclCommAbort(comm_);
    if (MpiRuntime::active()) MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

 private:
  // NCCL needs one GPU per rank: every rank's PCI bus id, gathered over MPI, must differ. Otherwise
  // every rank fails naming the ranks that share a GPU (ncclCommInitRank would only say "invalid
  // usage").
  void check_one_gpu_per_rank() {
    constexpr int kIdBytes = 32;
    char mine[kIdBytes] = {};
    DTRAIN_CUDA_CHECK(cudaDeviceGetPCIBusId(mine, kIdBytes, gpu_));
    std::vector<char> all(static_cast<size_t>(kIdBytes) * static_cast<size_t>(size_));
    MpiRuntime::instance().run("nccl bus id exchange", [&] {
      DTRAIN_MPI_CHECK(MPI_Allgather(mine, kIdBytes, MPI_CHAR, all.data(), kIdBytes, MPI_CHAR, MPI_COMM_WORLD));
    });
    for (int a = 0; a < size_; ++a)
      for (int b = a + 1; b < size_; ++b) {
        const std::string bus_a(&all[static_cast<size_t>(a) * kIdBytes]),
            bus_b(&all[static_cast<size_t>(b) * kIdBytes]);
        if (bus_a == bus_b)
          fail("nccl backend: ranks ", a, " and ", b, " share the GPU at PCI bus ", bus_a,
               "; NCCL needs one GPU per rank: use comm.backend=mpi (collectives through host memory) or at most "
               "as many ranks per node as GPUs");
      }
  }

  void check_buffer(const Tensor& t, const char* op) const {
    DTRAIN_CHECK(t.defined(), op, ": undefined tensor");
    DTRAIN_CHECK(t.device() == Device::cuda(gpu_), op, ": the nccl backend needs buffers on cuda:", gpu_,
                 ", got a tensor on ", t.device().str());
    DTRAIN_CHECK(t.is_contiguous(), op, ": tensor ", t.shape().str(), " is not contiguous");
  }
  // Orders the collective after the work already queued on the compute stream.
  // comm.fingerprint: every rank's fingerprint over MPI (host side, before the collective is
  // queued), as the mpi backend does; a mismatch throws on every rank at the same collective.
  void check_fingerprint(const Fingerprint& mine) {
    if (!fingerprint_ || size_ == 1) return;
    std::vector<Fingerprint> all(static_cast<size_t>(size_));
    const Work exchange = MpiRuntime::instance().submit("collective fingerprint", [&] {
      DTRAIN_MPI_CHECK(MPI_Allgather(&mine, kFingerprintWords, MPI_INT64_T, all.data(), kFingerprintWords, MPI_INT64_T,
                                     MPI_COMM_WORLD));
    });
    if (!exchange.wait(timeout_s_))  // run by the progress thread, so the timeout holds
      abort_job(detail::concat("watchdog: the fingerprint exchange before ", describe_fingerprint(mine),
                               " not finished after ", timeout_s_, " s (comm.timeout_s)"));
    const std::string mismatch = fingerprint_mismatch(all);
    if (!mismatch.empty()) fail(mismatch);
  }
  template <typename Launch>
  Work launch(std::string what, std::vector<Tensor> keep, const Fingerprint& fp, Launch&& call) {
    check_fingerprint(fp);
    int64_t bytes = keep.empty() ? 0 : keep.front().nbytes();
    auto state = std::make_shared<NcclWorkState>(detail::concat(what, " (", bytes, " bytes)"), gpu_, comm_,
                                                 std::move(keep), clock_);
    DTRAIN_CUDA_CHECK(cudaSetDevice(gpu_));
    DTRAIN_CUDA_CHECK(cudaEventRecord(state->queued(), cuda::compute_stream(gpu_)));
    DTRAIN_CUDA_CHECK(cudaStreamWaitEvent(stream_, state->queued(), 0));
    // Timed on the device from here (the compute it waited for is behind it) to the end.
    DTRAIN_CUDA_CHECK(cudaEventRecord(state->begin(), stream_));
    call(stream_);
    DTRAIN_CUDA_CHECK(cudaEventRecord(state->end(), stream_));
    return Work(state);
  }

  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1, gpu_ = 0;
  bool fingerprint_ = false;
  double timeout_s_;
  int64_t seq_ = 0;
  cudaStream_t stream_ = nullptr;
  ncclComm_t comm_ = nullptr;
  std::shared_ptr<const EventClock> clock_;
  Tensor barrier_buf_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const CommOptions& options) {
  DTRAIN_CHECK(options.model_device.is_cuda() || options.backend != "nccl",
               "comm.backend=nccl needs the model on a GPU (device=cuda), got device=cpu");
  // The model's GPU unless one is pinned: NCCL must run where the gradients are.
  const Device& model = options.model_device;
  return std::make_unique<NcclCommunicator>(options.gpu >= 0  ? options.gpu
                                            : model.is_cuda() ? model.index
                                                              : -1,
                                            options.fingerprint, options.timeout_s);
}

}  // namespace dtrain

#else  // !DTRAIN_HAVE_NCCL

namespace dtrain {
std::unique_ptr<Communicator> make_nccl_communicator(const CommOptions&) {
  fail("comm.backend=nccl: this build of dtrain has no NCCL (configure with -DDTRAIN_CUDA=ON and NCCL installed)");
}
}  // namespace dtrain

#endif
