#pragma once
// Internal to comm/: the backend constructors behind make_communicator().
#include <memory>

#include "comm/communicator.h"

namespace dtrain {

std::unique_ptr<Communicator> make_mpi_communicator();
std::unique_ptr<Communicator> make_single_communicator(Device device);
// Throws if this build has no NCCL. gpu < 0: local rank modulo the visible GPUs.
std::unique_ptr<Communicator> make_nccl_communicator(int gpu);

}  // namespace dtrain
