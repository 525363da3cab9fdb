// The single backend (no MPI), backend resolution and the watchdog, in one process.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "comm/communicator.h"
#include "comm/environment.h"
#include "comm/watchdog.h"

namespace dtrain {
namespace {

TEST(SingleCommunicator, CollectivesAreIdentityInAWorldOfOne) {
  auto comm = make_communicator(CommOptions{.backend = "single", .log_world = false});
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->rank(), 0);
  for (int64_t n : {0, 1, 7, 1000}) {
    Tensor t = Tensor::full(Shape{n}, 2.5f);
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::average, ReduceOp::max}) ASSERT_TRUE(comm->allreduce(t, op).wait(1));
    ASSERT_TRUE(comm->broadcast(t, 0).wait(1));
    for (float v : t.to_vector<float>()) ASSERT_EQ(v, 2.5f);
    Tensor out = Tensor::zeros(Shape{n});
    ASSERT_TRUE(comm->allgather(t, out).wait(1));
    for (float v : out.to_vector<float>()) ASSERT_EQ(v, 2.5f);
  }
  EXPECT_TRUE(comm->barrier().is_done());
  Tensor t = Tensor::zeros(Shape{1});
  EXPECT_THROW(comm->broadcast(t, 1), Error);
}

TEST(ResolveBackend, AutoPicksSingleForAPlainProcessOnCpu) {
  EXPECT_EQ(resolve_backend(CommOptions{}), "single");
  EXPECT_EQ(resolve_backend(CommOptions{.backend = "mpi"}), "mpi");
  try {
    resolve_backend(CommOptions{.backend = "gloo"});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'gloo'"), std::string::npos);
  }
}

// Two ranks on one GPU cannot use NCCL ("invalid usage"): auto falls back to mpi when a node has
// fewer GPUs than ranks, and never picks nccl for a CPU model or a build without it.
TEST(ResolveBackend, AutoPicksNcclOnlyWithAGpuForEveryLocalRank) {
  EXPECT_EQ(auto_backend(true, true, 2, 2, true), "nccl");
  EXPECT_EQ(auto_backend(true, true, 1, 1, false), "nccl");
  EXPECT_EQ(auto_backend(true, true, 2, 1, true), "mpi");
  EXPECT_EQ(auto_backend(true, true, 4, 0, true), "mpi");
  EXPECT_EQ(auto_backend(true, false, 1, 8, true), "mpi");
  EXPECT_EQ(auto_backend(false, true, 1, 8, true), "mpi");
  EXPECT_EQ(auto_backend(false, true, 1, 8, false), "single");
  EXPECT_EQ(auto_backend(true, true, 2, 1, false), "single");
}

TEST(Watchdog, FiresOnceForAnUnfinishedCollectiveNamingIt) {
  std::atomic<int> fired{0};
  std::string what;
  {
    Watchdog dog(0.2, [&](const std::string& w, double waited, const std::string& error) {
      EXPECT_EQ(error, "");
      what = w;
      EXPECT_GE(waited, 0.2);
      ++fired;
    });
    auto never = std::make_shared<WorkState>("allreduce of bucket 3");
    dog.watch(Work(never), "allreduce of gradient bucket 3/7");
    dog.watch(Work::done("barrier"), "barrier");
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    EXPECT_GE(dog.wait(Work(never), "again"), 0.19);  // times out, but the handler runs only once
  }
  EXPECT_EQ(fired.load(), 1);
  EXPECT_EQ(what, "allreduce of gradient bucket 3/7");
}

// A Work on a device stream that the compute stream waits for (nccl): no host thread waits for it.
class DeviceWorkState final : public WorkState {
 public:
  using WorkState::WorkState;
  bool on_device() const override { return true; }
  bool wait_on_device(double) override {
    ++device_waits;
    return true;
  }
  int device_waits = 0;
};

TEST(Watchdog, ReportsTheErrorOfAWorkOnlyTheDeviceWaitsFor) {
  std::atomic<int> fired{0};
  std::string what, error;
  {
    Watchdog dog(10, [&](const std::string& w, double, const std::string& e) {
      what = w;
      error = e;
      ++fired;
    });
    auto on_device = std::make_shared<DeviceWorkState>("allreduce(sum) (4096 bytes)");
    auto on_host = std::make_shared<WorkState>("allreduce(sum) (64 bytes)");
    EXPECT_EQ(dog.wait_on_device(Work(on_device), "allreduce of gradient bucket 2/3"), 0.0);  // at once
    EXPECT_EQ(on_device->device_waits, 1);
    dog.watch(Work(on_host), "allreduce of the global sample count");
    on_host->complete("a host error: its waiter throws it");  // not the watchdog's to report
    on_device->complete("NCCL reported an error during allreduce(sum): remote process exited");
    // The poll is timeout / 20 = 0.5 s; the error shows at the next one, long before the timeout.
    for (int i = 0; i < 40 && fired.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(fired.load(), 1);
  EXPECT_EQ(what, "allreduce of gradient bucket 2/3");
  EXPECT_NE(error.find("remote process exited"), std::string::npos) << error;
}

TEST(Watchdog, WaitsOnTheHostForAHostWork) {
  Watchdog dog(10, [](const std::string&, double, const std::string&) { FAIL() << "the watchdog fired"; });
  auto state = std::make_shared<WorkState>("allreduce");
  std::thread finisher([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    state->complete();
  });
  EXPECT_GE(dog.wait_on_device(Work(state), "allreduce of gradient bucket 1/1"), 0.05);
  EXPECT_TRUE(state->is_done());
  finisher.join();
  auto failed = std::make_shared<WorkState>("allreduce");
  failed->complete("MPI error in MPI_Allreduce: boom");
  EXPECT_THROW(dog.wait_on_device(Work(failed), "allreduce of gradient bucket 1/1"), Error);
}

TEST(Work, ReportsTimeoutAndErrors) {
  auto state = std::make_shared<WorkState>("op");
  Work w(state);
  EXPECT_FALSE(w.wait(0.01));
  EXPECT_FALSE(w.is_done());
  state->complete("MPI error in MPI_Allreduce: boom");
  EXPECT_TRUE(w.is_done());
  EXPECT_THROW(w.wait(1), Error);
}

}  // namespace
}  // namespace dtrain

TEST(LaunchEnv, SlurmTasksPerNodeListsAreReadPerNode) {
  EXPECT_EQ(dtrain::slurm_tasks_on_node("4", 0, "V"), 4);
  EXPECT_EQ(dtrain::slurm_tasks_on_node("4(x2),3", 0, "V"), 4);
  EXPECT_EQ(dtrain::slurm_tasks_on_node("4(x2),3", 1, "V"), 4);
  EXPECT_EQ(dtrain::slurm_tasks_on_node("4(x2),3", 2, "V"), 3);
  EXPECT_EQ(dtrain::slurm_tasks_on_node("1,2(x3)", 3, "V"), 2);
  for (const char* bad : {"", "x", "4(x)", "4(x2", "4,,2", "0", "4;2"}) {
    try {
      dtrain::slurm_tasks_on_node(bad, 0, "SLURM_TASKS_PER_NODE");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const dtrain::Error& e) {
      EXPECT_NE(std::string(e.what()).find("SLURM_TASKS_PER_NODE"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(dtrain::slurm_tasks_on_node("4(x2)", 2, "V"), dtrain::Error);
}
