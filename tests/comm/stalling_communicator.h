#pragma once
// A test seam for the watchdog: wraps a Communicator and, once stall() was called on the chosen
// rank, hands out all-reduces that never finish, as a rank that stopped calling collectives.
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>

#include "comm/communicator.h"

namespace dtrain::testing {

class StallingCommunicator final : public Communicator {
 public:
  StallingCommunicator(std::unique_ptr<Communicator> inner, int stall_rank)
      : inner_(std::move(inner)), stall_rank_(stall_rank) {}
  // From now on, all-reduces on the stall rank never finish.
  void stall() { stalled_ = inner_->rank() == stall_rank_; }

  std::string backend() const override { return inner_->backend(); }
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  int local_rank() const override { return inner_->local_rank(); }
  int local_size() const override { return inner_->local_size(); }
  Device device() const override { return inner_->device(); }
  Work broadcast(Tensor t, int root) override { return inner_->broadcast(std::move(t), root); }
  Work allreduce(Tensor t, ReduceOp op) override {
    if (!stalled_) return inner_->allreduce(std::move(t), op);
    return Work(std::make_shared<WorkState>("allreduce that rank " + std::to_string(rank()) + " never starts"));
  }
  Work allgather(Tensor in, Tensor out) override { return inner_->allgather(std::move(in), std::move(out)); }
  Work reduce_scatter(Tensor t, ReduceOp op) override {
    if (!stalled_) return inner_->reduce_scatter(std::move(t), op);
    return Work(std::make_shared<WorkState>("reduce_scatter that rank " + std::to_string(rank()) + " never starts"));
  }
  Work allgather_pieces(Tensor t) override { return inner_->allgather_pieces(std::move(t)); }
  Work barrier() override { return inner_->barrier(); }
  void set_step_tag(int64_t step) override { inner_->set_step_tag(step); }
  void set_wait_at_once(bool at_once) override { inner_->set_wait_at_once(at_once); }
  [[noreturn]] void abort(int code) noexcept override {
    inner_->abort(code);
    std::abort();  // not reached: Communicator::abort does not return
  }

 private:
  std::unique_ptr<Communicator> inner_;
  int stall_rank_;
  bool stalled_ = false;
};

}  // namespace dtrain::testing
