#pragma once
// The mpi communicator of a test executable launched by mpiexec (one per process, made on
// first use), shared by the comm test suites.
#include <memory>

#include "comm/communicator.h"

namespace dtrain::testing {

inline Communicator& comm() {
  static std::unique_ptr<Communicator> c = make_communicator(CommOptions{.backend = "mpi", .log_world = false});
  return *c;
}

}  // namespace dtrain::testing
