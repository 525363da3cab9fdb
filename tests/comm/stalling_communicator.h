#pragma once
// A test seam for the watchdog: wraps a Communicator and, once stall() was called on the chosen
// rank, hands out all-reduces that never finish, as a rank that stopped calling collectives.
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>

#include "tests/comm/forwarding_communicator.h"

namespace dtrain::testing {

class StallingCommunicator final : public ForwardingCommunicator {
 public:
  StallingCommunicator(std::unique_ptr<Communicator> inner, int stall_rank)
      : ForwardingCommunicator(std::move(inner)), stall_rank_(stall_rank) {}
  // From now on, all-reduces on the stall rank never finish.
  void stall() { stalled_ = rank() == stall_rank_; }

  Work allreduce(Tensor t, ReduceOp op) override {
    if (!stalled_) return inner().allreduce(std::move(t), op);
    return Work(std::make_shared<WorkState>("allreduce that rank " + std::to_string(rank()) + " never starts"));
  }
  Work reduce_scatter(Tensor t, ReduceOp op) override {
    if (!stalled_) return inner().reduce_scatter(std::move(t), op);
    return Work(std::make_shared<WorkState>("reduce_scatter that rank " + std::to_string(rank()) + " never starts"));
  }

 private:
  int stall_rank_;
  bool stalled_ = false;
};

}  // namespace dtrain::testing
