// An mpiexec job that is EXPECTED to fail, driven by expect_failure.sh:
//   comm_failure_main signature  - the last rank builds a different model: all ranks must exit
//                                  non-zero naming the difference;
//   comm_failure_main stall R    - rank R stops calling collectives after the parameter broadcast
//                                  (StallingCommunicator): the watchdog (comm.timeout 3 s) must end
//                                  the job;
//   comm_failure_main skip R       - rank R skips step 2: the collective fingerprints must fail every
//                                  rank at once naming steps 2 and 3 (watchdog at 30 s);
//   comm_failure_main buckets R    - rank R builds another bucket plan: the fingerprints must name
//                                  both bucket sizes.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "comm/param_sync.h"
#include "tests/comm/stalling_communicator.h"
#include "tests/comm/tiny_mlp.h"

int main(int argc, char** argv) {
  using namespace dtrain;
  const std::string mode = argc > 1 ? argv[1] : "";
  return run_or_abort([&] {
    const int stall_rank = mode == "stall" && argc > 2 ? std::atoi(argv[2]) : -1;
    const int odd_rank = (mode == "skip" || mode == "buckets") && argc > 2 ? std::atoi(argv[2]) : -1;
    auto comm =
        std::make_unique<testing::StallingCommunicator>(make_communicator(CommOptions{.backend = "mpi"}), stall_rank);
    testing::TinyMlp m(1);
    ParamSyncOptions options{.bucket_bytes = 700, .first_bucket_bytes = 64, .timeout_s = 3.0};
    if (mode == "signature") {
      options.signature = {"config type=tiny;hidden=24", "0.weight f32 [24, 12]"};
      if (comm->rank() == comm->size() - 1) options.signature[0] = "config type=tiny;hidden=32";
    } else if (mode == "skip" || mode == "buckets") {
      options.timeout_s = 30.0;
      if (mode == "buckets" && comm->rank() == odd_rank) options.bucket_bytes = 400;
    } else if (mode != "stall") {
      std::fprintf(stderr, "usage: comm_failure_main signature | stall RANK | skip RANK | buckets RANK\n");
      return 2;
    }
    ParamSync sync(*comm, m.arena, options);
    sync.verify_signature();
    sync.broadcast_parameters();
    comm->stall();
    for (int step = 0; step < 5; ++step) {
      if (mode == "skip" && step == 2 && comm->rank() == odd_rank) continue;
      comm->set_step_tag(step);
      sync.begin_backward();
      m.forward_backward(step, comm->rank() * 8, 8);
      sync.finish_backward();
      m.sgd(0.05f);
    }
    std::printf("rank %d: finished without the expected failure\n", comm->rank());
    return 0;
  });
}
