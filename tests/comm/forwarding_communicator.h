#pragma once
// Test seams: a Communicator that forwards everything to another, for wrappers that change one
// thing (StallingCommunicator, LateInputCommunicator); and CountingCommunicator, a world of one
// that counts the collectives it is asked for.
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>

#include "comm/communicator.h"

namespace dtrain::testing {

class ForwardingCommunicator : public Communicator {
 public:
  explicit ForwardingCommunicator(std::unique_ptr<Communicator> inner) : inner_(std::move(inner)) {}
  std::string backend() const override { return inner_->backend(); }
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  int local_rank() const override { return inner_->local_rank(); }
  int local_size() const override { return inner_->local_size(); }
  Device device() const override { return inner_->device(); }
  Work broadcast(Tensor t, int root) override { return inner_->broadcast(std::move(t), root); }
  Work allreduce(Tensor t, ReduceOp op) override { return inner_->allreduce(std::move(t), op); }
  Work allgather(Tensor in, Tensor out) override { return inner_->allgather(std::move(in), std::move(out)); }
  Work reduce_scatter(Tensor t, ReduceOp op) override { return inner_->reduce_scatter(std::move(t), op); }
  Work allgather_pieces(Tensor t) override { return inner_->allgather_pieces(std::move(t)); }
  Work barrier() override { return inner_->barrier(); }
  void set_step_tag(int64_t step) override { inner_->set_step_tag(step); }
  void set_wait_at_once(bool at_once) override { inner_->set_wait_at_once(at_once); }
  [[noreturn]] void abort(int code) noexcept override {
    inner_->abort(code);
    std::abort();  // not reached: Communicator::abort does not return
  }

 protected:
  Communicator& inner() { return *inner_; }

 private:
  std::unique_ptr<Communicator> inner_;
};

// A world of one on the CPU whose collectives change nothing and are done on return; collectives()
// counts every call.
class CountingCommunicator final : public Communicator {
 public:
  std::string backend() const override { return "counting"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_size() const override { return 1; }
  Device device() const override { return Device::cpu(); }
  Work broadcast(Tensor, int) override { return count("broadcast"); }
  Work allreduce(Tensor, ReduceOp) override { return count("allreduce"); }
  Work allgather(Tensor, Tensor) override { return count("allgather"); }
  Work reduce_scatter(Tensor, ReduceOp) override { return count("reduce_scatter"); }
  Work allgather_pieces(Tensor) override { return count("allgather_pieces"); }
  Work barrier() override { return count("barrier"); }
  [[noreturn]] void abort(int code) noexcept override { std::_Exit(code); }
  int collectives() const { return collectives_; }
  const std::string& last() const { return last_; }

 private:
  Work count(const char* what) {
    ++collectives_;
    last_ = what;
    return Work::done(what);
  }
  int collectives_ = 0;
  std::string last_;
};

}  // namespace dtrain::testing
