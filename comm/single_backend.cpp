// The "single" backend: a world of one process; every collective is complete on return.
#include "comm/backends.h"
#include "comm/environment.h"

namespace dtrain {
namespace {

class SingleCommunicator final : public Communicator {
 public:
  explicit SingleCommunicator(Device device) : device_(device) {}
  std::string backend() const override { return "single"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_size() const override { return 1; }
  Device device() const override { return device_; }

  Work broadcast(Tensor t, int root) override {
    DTRAIN_CHECK(t.defined(), "broadcast: undefined tensor");
    DTRAIN_CHECK(root == 0, "broadcast: root ", root, " outside a world of 1");
    return Work::done("broadcast");
  }
  Work allreduce(Tensor t, ReduceOp op) override {
    DTRAIN_CHECK(t.defined(), "allreduce: undefined tensor");
    return Work::done(std::string("allreduce(") + reduce_op_name(op) + ")");
  }
  Work allgather(Tensor in, Tensor out) override {
    DTRAIN_CHECK(in.defined() && out.defined() && in.dtype() == out.dtype() && in.numel() == out.numel(),
                 "allgather: output must match the input in a world of 1");
    if (in.numel() > 0 && in.raw_data() != out.raw_data()) out.copy_from(in.view(out.shape()));
    return Work::done("allgather");
  }
  Work reduce_scatter(Tensor t, ReduceOp op) override {
    DTRAIN_CHECK(t.defined(), "reduce_scatter: undefined tensor");
    return Work::done(std::string("reduce_scatter(") + reduce_op_name(op) + ")");
  }
  Work allgather_pieces(Tensor t) override {
    DTRAIN_CHECK(t.defined(), "allgather_pieces: undefined tensor");
    return Work::done("allgather_pieces");
  }
  Work barrier() override { return Work::done("barrier"); }
  [[noreturn]] void abort(int code) noexcept override { std::_Exit(code); }

 private:
  Device device_;
};

}  // namespace

std::unique_ptr<Communicator> make_single_communicator(const CommOptions& options) {
  const LaunchEnv env = detect_launch_env();
  DTRAIN_CHECK(env.world == 1, "comm.backend=single in a launch of ", env.world, " processes (", env.launcher,
               "); use mpi or nccl");
  return std::make_unique<SingleCommunicator>(options.model_device);
}

}  // namespace dtrain
