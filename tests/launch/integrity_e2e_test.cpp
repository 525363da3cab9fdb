// Failure drills through the real binaries, as a user meets them: damaged checkpoints (resume auto,
// resume PATH, export, checkpoint verify, all of them damaged), a non-finite loss (stop and skip),
// an unwritable or full output place, and the config files a run cannot use.
#include <sys/mount.h>

#include <fstream>
#include <string>
#include <vector>

#include "damage.h"
#include "train_e2e_fixture.h"

namespace dtrain {
namespace {

using test::run_command;

// Overwrites `count` bytes inside dataset `dataset` of `path` (from its first byte), flipping each.
void damage_dataset(const std::string& path, const std::string& dataset, int64_t count) {
  ASSERT_TRUE(test::flip_bytes(path, test::dataset_file_offset(path, dataset), count)) << path << " " << dataset;
}

// A tmpfs of `kib` KiB mounted at `dir` for the test's life; mounted() is false (with the reason in
// why()) where the test may not mount (no CAP_SYS_ADMIN, a container).
class Tmpfs {
 public:
  Tmpfs(const std::string& dir, int kib, bool read_only = false) : dir_(dir) {
    fs::create_directories(dir);
    const std::string options = "size=" + std::to_string(kib) + "k";
    mounted_ = ::mount("tmpfs", dir.c_str(), "tmpfs", read_only ? MS_RDONLY : 0, options.c_str()) == 0;
    if (!mounted_) why_ = std::string("cannot mount a tmpfs here: ") + std::strerror(errno);
  }
  ~Tmpfs() {
    if (mounted_) ::umount(dir_.c_str());
  }
  bool mounted() const { return mounted_; }
  const std::string& why() const { return why_; }

 private:
  std::string dir_, why_;
  bool mounted_ = false;
};

class IntegrityE2E : public TrainE2E {
 protected:
  // A 2-rank run of 10 steps with a checkpoint every 5: step-5.h5 and step-10.h5 in run/ckpt.
  std::string two_checkpoints(const std::string& run_name) {
    const RunResult r = run(2, plus(base(run_name), {"--train.max_steps=10", "--checkpoint.every=5", "--data.test="}));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return dir_ + "/" + run_name + "/ckpt";
  }
};

TEST_F(IntegrityE2E, DamagedCheckpointIsSkippedByResumeAutoAndRefusedByResumePathExportAndVerify) {
  const std::string ckpt = two_checkpoints("d");
  const std::string newest = checkpoint_path(ckpt, 10), older = checkpoint_path(ckpt, 5);
  damage_dataset(newest, "/params/1.weight", 4096);

  const auto verify = run_command(dtrain_binary() + " checkpoint verify " + newest + " " + older);
  EXPECT_EQ(verify.exit_code, 1) << verify.output;
  EXPECT_NE(verify.output.find("DAMAGED  /params/1.weight"), std::string::npos) << verify.output;
  EXPECT_NE(verify.output.find(older + ": ok"), std::string::npos) << verify.output;

  const auto exported = run_command(dtrain_binary() + " export --checkpoint " + newest + " --repo " + dir_ +
                                    "/models --name m --data none");
  EXPECT_EQ(exported.exit_code, 1) << exported.output;
  EXPECT_NE(exported.output.find("fails verification: dataset /params/1.weight"), std::string::npos) << exported.output;
  EXPECT_FALSE(fs::exists(dir_ + "/models")) << "a refused export leaves no folder";

  const RunResult by_path = run(2, plus(base("d"), {"--train.max_steps=12", "--resume=" + newest, "--data.test="}));
  EXPECT_EQ(by_path.exit_code, 1) << by_path.output;
  EXPECT_NE(by_path.output.find("dataset /params/1.weight: its bytes do not match the checksum"), std::string::npos)
      << by_path.output;

  const RunResult automatic =
      run(2, plus(base("d"), {"--train.max_steps=12", "--resume=auto", "--data.test=", "--checkpoint.keep_last=1"}));
  ASSERT_EQ(automatic.exit_code, 0) << automatic.output;
  EXPECT_NE(automatic.output.find("skipping checkpoint " + newest + ": dataset /params/1.weight"), std::string::npos)
      << automatic.output;
  EXPECT_NE(automatic.output.find("resumed from " + older), std::string::npos) << automatic.output;
  EXPECT_TRUE(fs::exists(newest + ".corrupt")) << "keep-last rotation must leave the damaged file as evidence";
}

TEST_F(IntegrityE2E, ResumeAutoOverOnlyDamagedCheckpointsFailsListingThemUnlessAutoOrFresh) {
  const std::string ckpt = two_checkpoints("all");
  for (int step : {5, 10}) damage_dataset(checkpoint_path(ckpt, step), "/optim/1.weight/exp_avg", 64);
  const RunResult strict = run(2, plus(base("all"), {"--train.max_steps=12", "--resume=auto", "--data.test="}));
  EXPECT_EQ(strict.exit_code, 1) << strict.output;
  EXPECT_NE(strict.output.find("--resume auto: none of the 2 checkpoint(s)"), std::string::npos) << strict.output;
  EXPECT_NE(strict.output.find(checkpoint_path(ckpt, 5) + ".corrupt: dataset /optim/1.weight/exp_avg"),
            std::string::npos)
      << strict.output;
  EXPECT_NE(strict.output.find("--resume auto-or-fresh"), std::string::npos) << strict.output;

  const RunResult fresh =
      run(2, plus(base("all"), {"--train.max_steps=6", "--resume=auto-or-fresh", "--data.test=", "--checkpoint.every=2",
                                "--checkpoint.keep_last=1"}));
  ASSERT_EQ(fresh.exit_code, 0) << fresh.output;
  EXPECT_NE(fresh.output.find("no trustworthy checkpoint"), std::string::npos) << fresh.output;
  EXPECT_TRUE(fs::exists(checkpoint_path(ckpt, 5) + ".corrupt"));
  EXPECT_TRUE(fs::exists(checkpoint_path(ckpt, 10) + ".corrupt"));
}

TEST_F(IntegrityE2E, NonFiniteLossStopsTheRunNamingTheStepTheParameterAndTheLastGoodCheckpoint) {
  const RunResult r = run(2, plus(base("nan"), {"--optim.type=sgd", "--optim.lr=1e30", "--train.max_steps=20",
                                                "--checkpoint.every=1", "--data.test="}));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("error: train.on_nonfinite=stop: step 2 has a gradient norm of"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("the first non-finite gradient: parameter '"), std::string::npos) << r.output;
  const std::string good = checkpoint_path(dir_ + "/nan/ckpt", 1);
  EXPECT_NE(r.output.find("the last good checkpoint is " + good), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(good));
  EXPECT_FALSE(fs::exists(checkpoint_path(dir_ + "/nan/ckpt", 2))) << "no checkpoint of the bad step";
}

TEST_F(IntegrityE2E, NonFiniteStepsAreSkippedAndCountedUntilMaxSkippedInARow) {
  const RunResult r =
      run(1, plus(base("skip"), {"--optim.type=sgd", "--optim.lr=1e30", "--train.max_steps=20",
                                 "--train.on_nonfinite=skip", "--train.max_skipped=3", "--data.test="}));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("train.on_nonfinite=skip: 3 steps in a row had non-finite gradients"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("skipped=3"), std::string::npos) << r.output;
  const std::string metrics = test::read_text(dir_ + "/skip/metrics.jsonl");
  for (int step : {2, 3, 4})
    EXPECT_NE(metrics.find("{\"type\":\"skip\",\"step\":" + std::to_string(step)), std::string::npos) << metrics;
}

TEST_F(IntegrityE2E, AnUnwritableCheckpointDirEndsTheRunBeforeTheFirstStep) {
  std::ofstream(dir_ + "/blocker") << "a file where a folder is needed";
  const RunResult r = run(2, plus(base("u"), {"--checkpoint.dir=" + dir_ + "/blocker/ckpt", "--train.max_steps=5"}));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("checkpoint.dir " + dir_ + "/blocker/ckpt cannot be created: Not a directory"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("step 1"), std::string::npos) << "no step may run: " << r.output;

  Tmpfs read_only(dir_ + "/ro", 64, /*read_only=*/true);
  if (!read_only.mounted()) GTEST_SKIP() << "the read-only case: " << read_only.why();
  const RunResult ro = run(1, plus(base("u"), {"--checkpoint.dir=" + dir_ + "/ro/ckpt", "--train.max_steps=5"}));
  EXPECT_EQ(ro.exit_code, 1) << ro.output;
  EXPECT_NE(ro.output.find("Read-only file system"), std::string::npos) << ro.output;
}

TEST_F(IntegrityE2E, AFullDiskDuringACheckpointOrAConvertSaysNoSpaceLeftAndLeavesNoFile) {
  Tmpfs full(dir_ + "/full", 192);
  if (!full.mounted()) GTEST_SKIP() << full.why();
  const RunResult r = run(1, plus(base("f"), {"--checkpoint.dir=" + dir_ + "/full", "--model.hidden=512",
                                              "--train.max_steps=2", "--data.test="}));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("No space left on device (errno 28)"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("H5Dwrite("), std::string::npos) << "no source text: " << r.output;
  EXPECT_TRUE(fs::is_empty(dir_ + "/full")) << "no partial checkpoint or temp file";

  const auto convert = run_command(dtrain_binary() + " data convert --from idx --images " + test::kFmnist +
                                   "/t10k-images-idx3-ubyte.gz --labels " + test::kFmnist +
                                   "/t10k-labels-idx1-ubyte.gz --out " + dir_ + "/full/test.h5");
  EXPECT_NE(convert.exit_code, 0) << convert.output;
  EXPECT_NE(convert.output.find("No space left on device"), std::string::npos) << convert.output;
  EXPECT_TRUE(fs::is_empty(dir_ + "/full"));
}

TEST_F(IntegrityE2E, ConfigThatIsAFolderOrBinaryIsRefusedWithoutEchoingIt) {
  const RunResult folder = run(1, plus(base("c"), {"--config=" + dir_}));
  EXPECT_EQ(folder.exit_code, 2) << folder.output;
  EXPECT_NE(folder.output.find("config file " + dir_ + " is a directory"), std::string::npos) << folder.output;

  const RunResult binary = run(1, plus(base("c"), {"--config=" + dtrain_binary()}));
  EXPECT_EQ(binary.exit_code, 2) << binary.output;
  EXPECT_NE(binary.output.find("is not a text file (byte"), std::string::npos) << binary.output;
  EXPECT_EQ(binary.output.find("ELF"), std::string::npos) << "the raw bytes are not echoed: " << binary.output;
}

}  // namespace
}  // namespace dtrain
