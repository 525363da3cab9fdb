// `dtrain train` end to end, through the real binary (and mpiexec for 2 ranks), on a small real
// subset of Fashion-MNIST: loss decreases, stop-and-resume is bit-for-bit, a corrupt newest
// checkpoint is skipped, a mismatched model is refused, SIGTERM checkpoints and exits 0, config
// errors name the key.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/kernels.h"
#include "data/convert.h"
#include "data/dataset.h"
#include "train_e2e_fixture.h"

namespace dtrain {

using test::read_text;

// Starts `dtrain train` in the background, waits until it has logged some steps, sends `signal`
// to the launched process, and returns (exit status, output).
RunResult TrainE2E::interrupt(int ranks, const std::vector<std::string>& args, int signal) const {
  const std::string log = dir_ + "/sig.log";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", ("exec " + command(ranks, args) + " > " + log + " 2>&1").c_str(), nullptr);
    ::_exit(127);
  }
  RunResult r;
  if (pid < 0) return r;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::count(r.output.begin(), r.output.end(), '\n') < 8 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    r.output = read_text(dir_ + "/s/metrics.jsonl");
  }
  ::kill(pid, signal);
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.output = read_text(log);
  return r;
}

void TrainE2E::stop_checkpoint_and_resume(int ranks, int signal) {
  const std::vector<std::string> args = plus(base("s"), {"--train.epochs=200", "--train.log_every=1", "--data.test="});
  const RunResult r = interrupt(ranks, args, signal);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("stop requested"), std::string::npos) << r.output;
  const std::vector<std::string> ckpts = list_checkpoints(dir_ + "/s/ckpt");
  ASSERT_EQ(ckpts.size(), 1u) << r.output;
  const int64_t stopped_at = read_checkpoint_meta(ckpts[0]).step;
  EXPECT_GT(stopped_at, 0);
  const RunResult resumed =
      run(ranks, plus(args, {"--resume=auto", "--train.max_steps=" + std::to_string(stopped_at + 3)}));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("at step " + std::to_string(stopped_at)), std::string::npos) << resumed.output;
  EXPECT_EQ(read_checkpoint_meta(list_checkpoints(dir_ + "/s/ckpt")[0]).step, stopped_at + 3);
}

// As Slurm does at a time limit or preemption: SIGTERM to the training process.
namespace {

TEST_F(TrainE2E, LossDecreasesAndTestAccuracyIsReported) {
  const RunResult r = run(1, plus(base("a"), {"--train.epochs=3"}));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream metrics(dir_ + "/a/metrics.jsonl");
  std::vector<double> losses;
  std::string line;
  while (std::getline(metrics, line))
    if (line.find("\"type\":\"train\"") != std::string::npos) {
      const auto at = line.find("\"loss\":");
      losses.push_back(std::stod(line.substr(at + 7)));
    }
  ASSERT_GE(losses.size(), 10u);
  EXPECT_LT(losses.back(), 0.7 * losses.front()) << r.output;
  const auto acc = r.output.find("test_accuracy=");
  ASSERT_NE(acc, std::string::npos) << r.output;
  EXPECT_GT(std::stod(r.output.substr(acc + 14)), 0.65) << r.output;
  EXPECT_TRUE(fs::exists(dir_ + "/a/config.ini"));
  EXPECT_TRUE(fs::exists(checkpoint_path(dir_ + "/a/ckpt", 3 * 64)));
}

TEST_F(TrainE2E, StopAndResumeIsBitwiseIdenticalOneRank) { resume_is_bitwise(1); }
TEST_F(TrainE2E, StopAndResumeIsBitwiseIdenticalTwoRanks) { resume_is_bitwise(2); }

TEST_F(TrainE2E, CorruptNewestCheckpointIsSkippedWithAWarning) {
  const RunResult r = run(1, plus(base("c"), {"--train.max_steps=10", "--checkpoint.every=5", "--data.test="}));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string newest = checkpoint_path(dir_ + "/c/ckpt", 10);
  ASSERT_TRUE(fs::exists(newest));
  fs::resize_file(newest, fs::file_size(newest) / 2);
  const RunResult again = run(1, plus(base("c"), {"--train.max_steps=12", "--resume=auto", "--data.test="}));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find(newest), std::string::npos) << again.output;  // the warning names it
  EXPECT_NE(again.output.find("resumed from " + checkpoint_path(dir_ + "/c/ckpt", 5)), std::string::npos)
      << again.output;
}

TEST_F(TrainE2E, CheckpointOfAnotherModelIsRefusedNamingTheDifference) {
  const RunResult r = run(1, plus(base("m"), {"--train.max_steps=2", "--data.test="}));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const RunResult other = run(1, plus(base("m"), {"--model.hidden=32", "--resume=auto", "--data.test="}));
  EXPECT_NE(other.exit_code, 0);
  EXPECT_NE(other.output.find("does not match the configured model"), std::string::npos) << other.output;
  EXPECT_NE(other.output.find("hidden=64"), std::string::npos) << other.output;
}

TEST_F(TrainE2E, SigtermWritesACheckpointExitsZeroAndResumeContinues) { stop_checkpoint_and_resume(1, SIGTERM); }

// Under mpirun: SIGUSR1 to mpirun reaches every rank (Open MPI forwards it).
TEST_F(TrainE2E, SigusrToMpirunStopsEveryRankWithACheckpoint) { stop_checkpoint_and_resume(2, SIGUSR1); }

TEST_F(TrainE2E, TraceHasComputeAndCommunicationSpansOfEveryRank) {
  const std::string trace = dir_ + "/trace.json";
  const RunResult r = run(2, plus(base("t"), {"--train.max_steps=4", "--trace", trace, "--data.test="}));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string json = read_text(trace);
  ASSERT_FALSE(json.empty());
  EXPECT_EQ(json.rfind("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[", 0), 0u);
  EXPECT_EQ(json.substr(json.size() - 3), "]}\n");
  for (const char* span : {"\"forward\"", "\"backward\"", "\"optimizer\"", "\"data wait\"", "\"allreduce wait\"",
                           "allreduce of gradient bucket 1/", "\"checkpoint\""})
    EXPECT_NE(json.find(span), std::string::npos) << span;
  for (const char* rank : {"\"pid\":0,\"tid\":1", "\"pid\":1,\"tid\":1", "\"pid\":1,\"tid\":0"})
    EXPECT_NE(json.find(rank), std::string::npos) << rank;
}

TEST_F(TrainE2E, ResumingOnAnotherWorldSizeWarnsAndContinues) {
  const RunResult one = run(1, plus(base("w"), {"--train.max_steps=20", "--train.stop_at_step=10", "--data.test="}));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  const RunResult two = run(2, plus(base("w"), {"--train.max_steps=20", "--resume=auto", "--data.test="}));
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_NE(two.output.find("resuming a 1-rank checkpoint on 2 ranks"), std::string::npos) << two.output;
  EXPECT_NE(two.output.find("not bit-identical"), std::string::npos) << two.output;
  EXPECT_EQ(read_checkpoint_meta(checkpoint_path(dir_ + "/w/ckpt", 20)).world_size, 2);
}

// `dtrain info`'s output (stdout and stderr) with `env_prefix` ("env -u VAR", "env VAR=x") before it.
std::string dtrain_info(const std::string& env_prefix) {
  return test::run_command(env_prefix + " " + dtrain_binary() + " info").output;
}

// The kernel family on `dtrain info`'s "blas:   OpenBLAS, NAME kernels..." line.
std::string blas_kernels(const std::string& info) {
  const std::string key = "OpenBLAS, ";
  const size_t at = info.find(key);
  if (at == std::string::npos) return "";
  const size_t end = info.find(" kernels", at);
  return end == std::string::npos ? "" : info.substr(at + key.size(), end - at - key.size());
}

// OpenBLAS falls back to SSE kernels on CPU models newer than it knows; dtrain then restarts
// itself with OPENBLAS_CORETYPE naming the tier the CPU supports.
TEST(BlasKernels, DtrainRunsKernelsOfTheTierTheCpuSupports) {
  const std::string info = dtrain_info("env -u OPENBLAS_CORETYPE -u DTRAIN_BLAS_DETECTED");
  const std::string kernels = blas_kernels(info);
  ASSERT_FALSE(kernels.empty()) << info;
  const char* cpu_core = cpu::blas_cpu_core();
  EXPECT_GE(cpu::blas_core_tier(kernels.c_str()), cpu::blas_core_tier(cpu_core))
      << "this CPU runs " << (cpu_core ? cpu_core : "SSE") << " kernels\n"
      << info;
}

TEST(BlasKernels, AFamilyChosenInOpenblasCoretypeStands) {
  const std::string info = dtrain_info("env -u DTRAIN_BLAS_DETECTED OPENBLAS_CORETYPE=Prescott");
  EXPECT_NE(info.find("Prescott kernels (forced by OPENBLAS_CORETYPE=Prescott)"), std::string::npos) << info;
}

TEST(BlasKernels, TiersOrderTheKernelFamilies) {
  EXPECT_EQ(cpu::blas_core_tier("Prescott"), 0);
  EXPECT_EQ(cpu::blas_core_tier(nullptr), 0);
  EXPECT_EQ(cpu::blas_core_tier("Sandybridge"), 1);
  EXPECT_EQ(cpu::blas_core_tier("Zen"), 2);
  EXPECT_EQ(cpu::blas_core_tier("Haswell"), 2);
  EXPECT_EQ(cpu::blas_core_tier("Cooperlake"), 3);
  EXPECT_EQ(cpu::blas_core_tier("SkylakeX"), 3);
}

TEST_F(TrainE2E, ConfigErrorsExitWithUsageCodeNamingTheKey) {
  const RunResult r = run(1, plus(base("e"), {"--train.epochs=many"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("train.epochs: 'many' is not an integer"), std::string::npos) << r.output;
  const RunResult missing = run(1, plus(base("e"), {"--data.train=/nonexistent/train.h5"}));
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("/nonexistent/train.h5"), std::string::npos) << missing.output;
  const RunResult bf16 = run(1, plus(base("e"), {"--train.device=cpu", "--train.precision=bf16"}));
  EXPECT_EQ(bf16.exit_code, 1);
  EXPECT_NE(bf16.output.find("train.precision=bf16 needs a cuda device, this run trains on cpu"), std::string::npos)
      << bf16.output;
  const RunResult bad = run(1, plus(base("e"), {"--train.precision=fp8"}));
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("train.precision"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace dtrain
