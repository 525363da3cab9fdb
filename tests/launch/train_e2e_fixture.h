#pragma once
// The fixture of the `dtrain train` end-to-end tests (train_e2e_test.cpp, integrity_e2e_test.cpp):
// a small real subset of Fashion-MNIST written once per test binary, a fresh directory per test,
// and the dtrain binary run with a small, fast configuration (under mpiexec for several ranks).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "data/h5.h"
#include "fmnist_subset.h"
#include "launch/checkpoint.h"
#include "test_files.h"

namespace dtrain {

namespace fs = std::filesystem;

inline std::string dtrain_binary() { return test::built_file("launch/dtrain"); }

// Every /params and /optim dataset of two checkpoints, compared bit for bit.
inline void expect_same_tensors(const std::string& a, const std::string& b) {
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
    if (!fs::exists(std::string(test::kFmnist) + "/train-images-idx3-ubyte.gz")) return;
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
      GTEST_SKIP() << "Fashion-MNIST not found at " << test::kFmnist << " (scripts/install-deps.sh installs it)";
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
    r.output = test::read_text(log);
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

}  // namespace dtrain
