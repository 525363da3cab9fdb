#pragma once
// Internal to comm/: the backend factories behind make_communicator(). A new backend is its file
// (comm/<name>_backend.cpp defining make_<name>_communicator), its declaration here and its entry in
// kBackends (comm/communicator.cpp), which config validation, --help and error messages read.
#include <memory>

#include "comm/communicator.h"

namespace dtrain {

std::unique_ptr<Communicator> make_mpi_communicator(const CommOptions& options);
// Throws if this build has no NCCL. The GPU: options.gpu, else the model's, else the local rank's.
std::unique_ptr<Communicator> make_nccl_communicator(const CommOptions& options);
// Throws when the launch has more than one process.
std::unique_ptr<Communicator> make_single_communicator(const CommOptions& options);

}  // namespace dtrain
