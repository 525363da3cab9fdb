// The trainer on a GPU, in this process: how often the host waits for the GPU per step (the
// pipeline of issue 20: batches staged asynchronously, loss and hits summed on the device and read
// at log lines, no collectives at world size 1), and bf16 mixed precision against f32 on a short
// run. Skips with the reason without CUDA or a GPU (DTRAIN_REQUIRE_GPU=1 makes that a failure).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "core/gpu.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "launch/trainer.h"
#include "tests/core/cuda_test_util.h"

namespace dtrain {
namespace {

namespace fs = std::filesystem;

// 10 classes of 28x28 u8 images: a class's own bright band plus noise strong enough that a short
// run does not reach 100 % (so two precisions can differ).
void write_bands(const std::string& path, int64_t n, uint64_t seed) {
  data::ClassificationData d;
  d.x_shape = Shape{n, 28, 28};
  d.num_classes = 10;
  d.x_scale = 1.0 / 255.0;
  d.source = "trainer_gpu_test bands";
  const RngStream noise = rng_stream(RngKey{seed, 0, static_cast<uint32_t>(RngPurpose::data_synth)});
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = i % 10;
    d.y.push_back(c);
    for (int64_t p = 0; p < 784; ++p) {
      const bool band = p / 28 >= 2 * c && p / 28 < 2 * c + 6;
      const float u = rng_uniform_at(noise, static_cast<uint64_t>(i * 784 + p));
      d.x_u8.push_back(static_cast<uint8_t>(std::min(255.0f, 255.0f * (band ? 0.35f + 0.65f * u : 0.9f * u))));
    }
  }
  data::write_classification(path, d, {});
}

class TrainerOnGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    DTRAIN_SKIP_WITHOUT_GPU();
    dir_ = (fs::temp_directory_path() / ("dtrain_trainer_gpu_" + std::to_string(::getpid()))).string();
    fs::create_directories(dir_);
    write_bands(dir_ + "/train.h5", 4096, 1);
    write_bands(dir_ + "/test.h5", 1024, 2);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  TrainConfig config(const std::string& run, std::vector<std::string> extra) const {
    std::vector<std::string> args = {"--data.train=" + dir_ + "/train.h5",
                                     "--train.device=cuda",
                                     "--train.batch_size=64",
                                     "--train.log_every=10",
                                     "--log.progress=none",
                                     "--checkpoint.every=0",
                                     "--log.dir=" + dir_ + "/" + run};
    args.insert(args.end(), extra.begin(), extra.end());
    return parse_train_args(args).config;
  }
  std::string dir_;
};

// Waits of the host for the GPU over a run of `steps` (setup, loop and the end of the run).
int64_t waits_of_run(const TrainConfig& c) {
  const int64_t before = gpu::host_waits();
  Trainer trainer(c);
  const TrainResult r = trainer.run();
  EXPECT_TRUE(r.failure.empty()) << r.failure;
  return gpu::host_waits() - before;
}

TEST_F(TrainerOnGpu, TheHostWaitsForTheGpuAboutOncePerStep) {
  // The difference of two runs cancels setup and the end of the run: what remains is the steps'.
  const int64_t short_run = waits_of_run(config("s", {"--train.max_steps=10", "--model.type=mlp"}));
  const int64_t long_run = waits_of_run(config("l", {"--train.max_steps=50", "--model.type=mlp"}));
  const double per_step = static_cast<double>(long_run - short_run) / 40.0;
  // One wait a step reads the gradient norm (clipping and the non-finite guard need it on the
  // host before the update); a log line every 10 steps reads the loss sums (2 waits) and sums them
  // across ranks (1 more): 1.3 per step.
  EXPECT_LE(per_step, 1.5) << "host waits: " << short_run << " in 10 steps, " << long_run << " in 50";
}

TEST_F(TrainerOnGpu, Bf16TrainsWithinHalfAPointOfF32) {
  std::vector<double> accuracy;
  for (const char* precision : {"f32", "bf16"}) {
    Trainer trainer(config(
        precision, {"--train.max_steps=150", "--model.type=cnn", "--optim.lr=0.02", "--data.test=" + dir_ + "/test.h5",
                    "--train.eval_every=150", std::string("--train.precision=") + precision}));
    const TrainResult r = trainer.run();
    ASSERT_TRUE(r.failure.empty()) << r.failure;
    ASSERT_GT(r.test.samples, 0);
    accuracy.push_back(r.test.accuracy);
  }
  EXPECT_GT(accuracy[0], 0.5) << "f32 did not learn the bands";
  EXPECT_NEAR(accuracy[1], accuracy[0], 0.005) << "test accuracy: f32 " << accuracy[0] << ", bf16 " << accuracy[1];
}

}  // namespace
}  // namespace dtrain
