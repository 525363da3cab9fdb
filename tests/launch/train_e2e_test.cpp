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
#include "data/h5.h"
#include "fmnist_subset.h"
#include "launch/checkpoint.h"
#include "test_files.h"

namespace fs = std::filesystem;

namespace dtrain {
namespace {

using test::kFmnist;

using test::read_text;

std::string dtrain_binary() { return test::built_file("launch/dtrain"); }

// Every /params and /optim dataset of two checkpoints, compared bit for bit.
void expect_same_tensors(const std::string& a, const std::string& b) {
  const h5::File fa = h5::File::open(a), fb = h5::File::open(b);
  int compared = 0;
  for (const std::string group : {"/params", "/optim"}) {
    ASSERT_TRUE(fa.has(group) && fb.has(group)) << group;
    std::vector<std::string> names;
    for (const std::string& child : fa.group(group).children()) {
      if (group == "/optim") {
        for (const std::string& slot : fa.group(group + "/" + child).children())
          names.push_back(group + "/" + child + "/" + slot);
      } else {
        names.push_back(group + "/" + child);
      }
    }
    for (const std::string& name : names) {
      const std::vector<float> va = fa.dataset(name).read_all<float>(), vb = fb.dataset(name).read_all<float>();
      ASSERT_EQ(va.size(), vb.size()) << name;
      EXPECT_EQ(0, std::memcmp(va.data(), vb.data(), va.size() * sizeof(float))) << name << " differs";
      ++compared;
    }
  }
  EXPECT_GT(compared, 4);
}

struct RunResult {
  int exit_code = -1;
  std::string output;
};

class TrainE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(std::string(kFmnist) + "/train-images-idx3-ubyte.gz")) return;
    data_dir_ = (fs::temp_directory_path() / ("dtrain_train_e2e_data_" + std::to_string(::getpid()))).string();
    fs::create_directories(data_dir_);
    test::write_fmnist_subset("train", 2048, data_dir_ + "/train.h5");
    test::write_fmnist_subset("t10k", 512, data_dir_ + "/test.h5");
  }
  static void TearDownTestSuite() {
    if (!data_dir_.empty()) fs::remove_all(data_dir_);
  }
  void SetUp() override {
    if (data_dir_.empty())
      GTEST_SKIP() << "Fashion-MNIST not found at " << kFmnist << " (scripts/install-deps.sh installs it)";
    dir_ = (fs::temp_directory_path() / ("dtrain_train_e2e_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty() && !HasFailure()) fs::remove_all(dir_);
  }

  // The base arguments of a small, fast run writing into `run`.
  std::vector<std::string> base(const std::string& run) const {
    return {"--data.train=" + data_dir_ + "/train.h5",
            "--data.test=" + data_dir_ + "/test.h5",
            "--model.hidden=64",
            "--model.dropout=0.1",
            "--train.batch_size=32",
            "--train.log_every=8",
            "--optim.type=adam",
            "--optim.lr=0.002",
            "--log.progress=lines",
            "--log.dir=" + dir_ + "/" + run};
  }
  static std::string command(int ranks, const std::vector<std::string>& args) {
    std::string cmd;
    if (ranks > 1) cmd = std::string(DTRAIN_MPIEXEC) + " -n " + std::to_string(ranks) + " --oversubscribe ";
    cmd += dtrain_binary() + " train";
    for (const std::string& a : args) cmd += " '" + a + "'";
    return cmd;
  }
  RunResult run(int ranks, const std::vector<std::string>& args) const {
    const std::string log = dir_ + "/out.log";
    const int status = std::system((command(ranks, args) + " > " + log + " 2>&1").c_str());
    RunResult r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.output = read_text(log);
    return r;
  }
  static std::vector<std::string> plus(std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  }

  // A run stopped at step k and resumed ends bit-for-bit where an uninterrupted run ends.
  void resume_is_bitwise(int ranks) {
    // Dropout, shuffling, augmentation, accumulation, evaluations, and a mid-epoch stop.
    const std::vector<std::string> common = {"--data.augment_crop_padding=2", "--data.augment_flip=true",
                                             "--train.accumulation=3",        "--train.max_steps=30",
                                             "--optim.schedule=cosine",       "--train.eval_every=7"};
    const RunResult full = run(ranks, plus(base("full"), common));
    ASSERT_EQ(full.exit_code, 0) << full.output;
    const RunResult first = run(ranks, plus(plus(base("split"), common), {"--train.stop_at_step=13"}));
    ASSERT_EQ(first.exit_code, 0) << first.output;
    const RunResult second = run(ranks, plus(plus(base("split"), common), {"--resume=auto"}));
    ASSERT_EQ(second.exit_code, 0) << second.output;
    EXPECT_NE(second.output.find("resumed from"), std::string::npos) << second.output;
    EXPECT_NE(second.output.find("at step 13"), std::string::npos) << second.output;
    const std::string a_path = checkpoint_path(dir_ + "/full/ckpt", 30),
                      b_path = checkpoint_path(dir_ + "/split/ckpt", 30);
    expect_same_tensors(a_path, b_path);
    const CheckpointMeta a = read_checkpoint_meta(a_path), b = read_checkpoint_meta(b_path);
    EXPECT_EQ(a.sampler, b.sampler);
    EXPECT_EQ(a.rng_offsets, b.rng_offsets);
    EXPECT_EQ(a.optimizer_steps, b.optimizer_steps);
  }

  RunResult interrupt(int ranks, const std::vector<std::string>& args, int signal) const;
  void stop_checkpoint_and_resume(int ranks, int signal);

  static inline std::string data_dir_;
  std::string dir_;
};

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
}

}  // namespace
}  // namespace dtrain
