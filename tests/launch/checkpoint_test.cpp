#include "launch/checkpoint.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "core/config.h"
#include "core/gpu.h"
#include "core/model.h"
#include "damage.h"
#include "data/h5.h"
#include "tests/core/cuda_test_util.h"

namespace dtrain {
namespace {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("dtrain-checkpoint-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

void touch(const std::string& path, const std::string& content = "") { std::ofstream(path) << content; }

ModelConfig small_mlp() {
  ModelConfig c;
  c.type = "mlp";
  c.input_shape = Shape{1, 4, 4};
  c.num_classes = 3;
  c.hidden = {8, 5};
  return c;
}

std::unique_ptr<Model> built(const ModelConfig& config, uint64_t seed) {
  auto model = create_model(config);
  model->build(Device::cpu(), seed);
  return model;
}

OptimizerConfig adam() {
  OptimizerConfig c;
  c.type = "adam";
  c.lr = 0.01f;
  return c;
}

// `count` optimizer steps from gradients drawn from `seed`, so every slot holds non-zero state.
void fake_steps(Model& model, Optimizer& optimizer, int count, uint64_t seed) {
  Generator g(RngKey{seed, 0, static_cast<uint32_t>(RngPurpose::test)});
  for (int i = 0; i < count; ++i) {
    model.arena().grads().copy_from(Tensor::randn(Shape{model.arena().numel()}, 0, 1, g));
    optimizer.step(model.arena(), optimizer.config().lr);
  }
}

CheckpointMeta sample_meta(const Model& model, const Optimizer* optimizer) {
  CheckpointMeta m;
  m.step = 42;
  m.epoch = 3;
  m.world_size = 2;
  m.sampler = {3, 17};
  m.rng_offsets = {0xFFFFFFFFFFFFFFF0ull, 12345};  // the top bit set: stored as u64, not i64
  m.optimizer_type = optimizer ? optimizer->config().type : "";
  m.optimizer_steps = optimizer ? optimizer->steps() : 0;
  m.config = "[model]\ntype = mlp\n[optim]\ntype = adam\n";
  m.signature = model.signature();
  m.dtrain_version = DTRAIN_VERSION;
  m.test_accuracy = 0.8125;
  m.test_loss = 0.4321;
  m.input_dtype = "u8";
  m.x_scale = 1.0 / 255;
  m.x_shift = -0.5;
  return m;
}

// Bit patterns, so -0.0 vs 0.0 and NaN payloads would show.
std::vector<uint32_t> bits(const Tensor& t) {
  const std::vector<float> v = t.to_vector<float>();
  std::vector<uint32_t> out(v.size());
  std::memcpy(out.data(), v.data(), v.size() * sizeof(float));
  return out;
}

void expect_meta_eq(const CheckpointMeta& a, const CheckpointMeta& b) {
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.epoch, b.epoch);
  EXPECT_EQ(a.world_size, b.world_size);
  EXPECT_EQ(a.sampler, b.sampler);
  EXPECT_EQ(a.rng_offsets, b.rng_offsets);
  EXPECT_EQ(a.optimizer_type, b.optimizer_type);
  EXPECT_EQ(a.optimizer_steps, b.optimizer_steps);
  EXPECT_EQ(a.config, b.config);
  EXPECT_EQ(a.signature, b.signature);
  EXPECT_EQ(a.dtrain_version, b.dtrain_version);
  EXPECT_EQ(a.test_accuracy, b.test_accuracy);
  EXPECT_EQ(a.test_loss, b.test_loss);
  EXPECT_EQ(a.input_dtype, b.input_dtype);
  EXPECT_EQ(a.x_scale, b.x_scale);
  EXPECT_EQ(a.x_shift, b.x_shift);
}

// Runs fn, which must throw dtrain::Error, and returns the message.
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a dtrain::Error";
  return "";
}

// Writes a checkpoint of a stepped small mlp + Adam at `path`.
void write_sample(const std::string& path, uint64_t seed = 1) {
  auto model = built(small_mlp(), seed);
  auto opt = make_optimizer(adam(), model->arena());
  fake_steps(*model, *opt, 2, seed);
  write_checkpoint(path, model->arena(), opt.get(), sample_meta(*model, opt.get()));
}

TEST(Checkpoint, PathIsZeroPaddedStepUnderDir) {
  EXPECT_EQ(checkpoint_path("/ckpt", 123), "/ckpt/step-000000123.h5");
  EXPECT_EQ(checkpoint_path("runs/a", 0), "runs/a/step-000000000.h5");
}

TEST(Checkpoint, RoundTripRestoresParamsSlotsStepsAndMetaBitForBit) {
  TempDir dir;
  auto model = built(small_mlp(), 1);
  auto opt = make_optimizer(adam(), model->arena());
  fake_steps(*model, *opt, 2, 7);
  const CheckpointMeta meta = sample_meta(*model, opt.get());
  const std::string path = checkpoint_path(dir / "nested/dir", meta.step);
  const int64_t bytes = write_checkpoint(path, model->arena(), opt.get(), meta);
  EXPECT_EQ(bytes, static_cast<int64_t>(fs::file_size(path)));
  EXPECT_GT(bytes, 3 * model->arena().numel() * 4);
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  auto restored = built(small_mlp(), 99);  // different initial values
  auto restored_opt = make_optimizer(adam(), restored->arena());
  ASSERT_NE(bits(restored->arena().values()), bits(model->arena().values()));
  const CheckpointMeta loaded = load_checkpoint(path, restored->arena(), restored_opt.get(), model->signature());

  expect_meta_eq(loaded, meta);
  expect_meta_eq(read_checkpoint_meta(path), meta);
  EXPECT_EQ(bits(restored->arena().values()), bits(model->arena().values()));
  for (const Parameter* p : model->parameters())
    EXPECT_EQ(bits(restored->arena().find(p->name).value), bits(p->value)) << p->name;
  const auto slots = opt->slots(), restored_slots = restored_opt->slots();
  ASSERT_EQ(slots.size(), 2u);
  for (size_t i = 0; i < slots.size(); ++i) {
    EXPECT_EQ(restored_slots[i].first, slots[i].first);
    EXPECT_EQ(bits(*restored_slots[i].second), bits(*slots[i].second)) << slots[i].first;
  }
  EXPECT_EQ(restored_opt->steps(), 2);

  // The next step from the restored state equals the next step from the original.
  fake_steps(*model, *opt, 1, 11);
  fake_steps(*restored, *restored_opt, 1, 11);
  EXPECT_EQ(bits(restored->arena().values()), bits(model->arena().values()));
}

// A GPU model's values and slots go through the host; the file loads into a CPU or a GPU model.
TEST(Checkpoint, GpuModelRoundTripsThroughTheHost) {
  DTRAIN_SKIP_WITHOUT_GPU();
  TempDir dir;
  auto model = create_model(small_mlp());
  model->build(Device::cuda(0), 1);
  auto opt = make_optimizer(adam(), model->arena());
  fake_steps(*model, *opt, 2, 7);
  const std::string path = checkpoint_path(dir.str(), 2);
  write_checkpoint(path, model->arena(), opt.get(), sample_meta(*model, opt.get()));
  for (Device device : {Device::cpu(), Device::cuda(0)}) {
    auto restored = create_model(small_mlp());
    restored->build(device, 99);
    auto restored_opt = make_optimizer(adam(), restored->arena());
    load_checkpoint(path, restored->arena(), restored_opt.get(), model->signature());
    EXPECT_EQ(bits(restored->arena().values()), bits(model->arena().values()));
    EXPECT_EQ(bits(*restored_opt->slots()[1].second), bits(*opt->slots()[1].second));
    EXPECT_EQ(restored_opt->steps(), 2);
  }
}

TEST(Checkpoint, LayoutHasOneDatasetPerParameterAndSlotWithItsShape) {
  TempDir dir;
  auto model = built(small_mlp(), 1);
  auto opt = make_optimizer(adam(), model->arena());
  const std::string path = dir / "step-000000001.h5";
  write_checkpoint(path, model->arena(), opt.get(), sample_meta(*model, opt.get()));
  auto guard = h5::lock();
  const h5::File f = h5::File::open(path);
  for (const Parameter* p : model->parameters()) {
    for (const std::string& name :
         {"/params/" + p->name, "/optim/" + p->name + "/exp_avg", "/optim/" + p->name + "/exp_avg_sq"}) {
      ASSERT_TRUE(f.has(name)) << name;
      const h5::Dataset d = f.dataset(name);
      EXPECT_EQ(d.shape(), p->shape) << name;
      EXPECT_EQ(d.type_name(), "f32") << name;
      EXPECT_EQ(d.chunk_rows(), 0) << name << " should be contiguous";
      EXPECT_EQ(d.filter_name(), "none") << name;
    }
  }
  EXPECT_EQ(f.dataset("/rng/0").type_name(), "u64");
  EXPECT_EQ(f.dataset("/sampler").type_name(), "i64");
  EXPECT_EQ(f.dataset("/sampler").shape(), Shape{2});
}

// A stepped checkpoint on disk, and a differently initialised model + Adam to load it into.
class SavedCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override { write_sample(path); }
  bool model_untouched() const { return bits(model->arena().values()) == before && opt->steps() == 0; }

  TempDir dir;
  const std::string path = dir / "step-000000001.h5";
  std::unique_ptr<Model> model = built(small_mlp(), 5);
  std::unique_ptr<Optimizer> opt = make_optimizer(adam(), model->arena());
  const std::vector<uint32_t> before = bits(model->arena().values());
};

TEST_F(SavedCheckpoint, SignatureMismatchIsRefusedNamingTheFirstDifferentLineAndLeavesTheModelUntouched) {
  std::vector<std::string> signature = model->signature();
  const std::string original_line = signature[2];
  signature[2] = "2.bias f32 [6]";
  const std::string msg = error_of([&] { load_checkpoint(path, model->arena(), opt.get(), signature); });
  EXPECT_NE(msg.find("checkpoint " + path + " does not match the configured model"), std::string::npos) << msg;
  EXPECT_NE(msg.find("first difference: line 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find(original_line), std::string::npos) << msg;
  EXPECT_NE(msg.find("2.bias f32 [6]"), std::string::npos) << msg;
  EXPECT_TRUE(model_untouched());

  // A model with a different config differs on the config line already.
  ModelConfig wider = small_mlp();
  wider.hidden = {9, 5};
  auto other = built(wider, 5);
  const std::string msg2 = error_of([&] { load_checkpoint(path, other->arena(), nullptr, other->signature()); });
  EXPECT_NE(msg2.find("line 1"), std::string::npos) << msg2;
  EXPECT_NE(msg2.find("hidden=9,5"), std::string::npos) << msg2;
}

TEST_F(SavedCheckpoint, MissingDatasetIsNamedAndTheModelIsUntouched) {
  const std::string last = model->parameters().back()->name;
  {
    auto guard = h5::lock();
    h5::File f = h5::File::open(path, /*writable=*/true);
    ASSERT_GE(H5Ldelete(f.id(), ("/optim/" + last + "/exp_avg_sq").c_str(), H5P_DEFAULT), 0);
  }
  const std::string msg = error_of([&] { load_checkpoint(path, model->arena(), opt.get(), model->signature()); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing dataset /optim/" + last + "/exp_avg_sq"), std::string::npos) << msg;
  EXPECT_TRUE(model_untouched()) << "params were read fine but must not be applied";
  // Without an optimizer the slots are not needed.
  EXPECT_NO_THROW(load_checkpoint(path, model->arena(), nullptr, model->signature()));
}

TEST_F(SavedCheckpoint, ParameterWithTheWrongShapeIsNamed) {
  const Parameter& p = *model->parameters().front();
  {
    auto guard = h5::lock();
    h5::File f = h5::File::open(path, true);
    ASSERT_GE(H5Ldelete(f.id(), ("/params/" + p.name).c_str(), H5P_DEFAULT), 0);
    f.create_dataset("/params/" + p.name, DType::f32, Shape{2, 2});
  }
  const std::string msg = error_of([&] { load_checkpoint(path, model->arena(), nullptr, model->signature()); });
  EXPECT_NE(msg.find("dataset /params/" + p.name + " is f32 [2, 2], expected f32 " + p.shape.str()), std::string::npos)
      << msg;
}

TEST_F(SavedCheckpoint, OptimizerTypeMismatchNamesBoth) {
  OptimizerConfig sgd;
  sgd.type = "sgd";
  auto sgd_opt = make_optimizer(sgd, model->arena());
  const std::string msg = error_of([&] { load_checkpoint(path, model->arena(), sgd_opt.get(), model->signature()); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("'adam'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'sgd'"), std::string::npos) << msg;
  EXPECT_TRUE(model_untouched());
}

TEST_F(SavedCheckpoint, MissingAttributeIsNamedWithTheFile) {
  {
    auto guard = h5::lock();
    h5::File f = h5::File::open(path, true);
    ASSERT_GE(H5Adelete(f.id(), "x_scale"), 0);
  }
  const std::string msg = error_of([&] { read_checkpoint_meta(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("'x_scale'"), std::string::npos) << msg;
}

TEST(Checkpoint, WithoutOptimizerWritesNoOptimGroupAndLoadsWithoutOne) {
  TempDir dir;
  auto model = built(small_mlp(), 1);
  const std::string path = dir / "step-000000001.h5";
  CheckpointMeta meta = sample_meta(*model, nullptr);
  write_checkpoint(path, model->arena(), nullptr, meta);
  {
    auto guard = h5::lock();
    const h5::File f = h5::File::open(path);
    EXPECT_TRUE(f.has("/params"));
    EXPECT_FALSE(f.has("/optim"));
  }
  auto restored = built(small_mlp(), 2);
  const CheckpointMeta loaded = load_checkpoint(path, restored->arena(), nullptr, model->signature());
  expect_meta_eq(loaded, meta);
  EXPECT_EQ(bits(restored->arena().values()), bits(model->arena().values()));

  // Asking for optimizer state the file does not have names the first missing slot.
  auto opt = make_optimizer(adam(), restored->arena());
  meta.optimizer_type = "adam";
  write_checkpoint(path, model->arena(), nullptr, meta);
  const std::string msg = error_of([&] { load_checkpoint(path, restored->arena(), opt.get(), model->signature()); });
  EXPECT_NE(msg.find("missing dataset /optim/"), std::string::npos) << msg;
}

TEST(Checkpoint, ListIsNewestFirstAndIgnoresTempAndUnrelatedFiles) {
  TempDir dir;
  EXPECT_TRUE(list_checkpoints(dir / "does-not-exist").empty());
  for (const char* name :
       {"step-000000002.h5", "step-000000010.h5", "step-000000001.h5", "step-5.h5", "step-000000011.h5.tmp",
        "notes.txt", "step-abc.h5", "step-.h5", "xstep-000000012.h5", "step-000000013.h5.bak"})
    touch(dir / name);
  fs::create_directories(dir / "step-000000020.h5");  // a directory is not a checkpoint
  const std::vector<std::string> want{dir / "step-000000010.h5", dir / "step-5.h5", dir / "step-000000002.h5",
                                      dir / "step-000000001.h5"};
  EXPECT_EQ(list_checkpoints(dir.str()), want);
}

TEST(Checkpoint, PruneKeepsTheNewestK) {
  TempDir dir;
  for (int step : {1, 2, 3, 4, 5}) touch(checkpoint_path(dir.str(), step));
  touch(dir / "step-000000009.h5.tmp");
  touch(dir / "notes.txt");
  prune_checkpoints(dir.str(), 0);
  EXPECT_EQ(list_checkpoints(dir.str()).size(), 5u);
  prune_checkpoints(dir.str(), 2);
  EXPECT_EQ(list_checkpoints(dir.str()),
            (std::vector<std::string>{checkpoint_path(dir.str(), 5), checkpoint_path(dir.str(), 4)}));
  EXPECT_TRUE(fs::exists(dir / "step-000000009.h5.tmp"));
  EXPECT_TRUE(fs::exists(dir / "notes.txt"));
  prune_checkpoints(dir.str(), 10);
  EXPECT_EQ(list_checkpoints(dir.str()).size(), 2u);
}

// Collects what the spdlog default logger prints while alive.
class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(text_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  std::string text() const { return text_.str(); }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::ostringstream text_;
};

TEST(Checkpoint, ResumeSkipsTruncatedAndGarbageCheckpointsWithAWarning) {
  TempDir dir;
  const std::string good = checkpoint_path(dir.str(), 1), truncated = checkpoint_path(dir.str(), 2),
                    garbage = checkpoint_path(dir.str(), 3);
  write_sample(good);
  write_sample(truncated);
  fs::resize_file(truncated, fs::file_size(truncated) / 2);
  touch(garbage, "this is not an HDF5 file\n");
  touch(checkpoint_path(dir.str(), 4) + ".tmp", "a crashed write");

  CapturedLog log;
  EXPECT_EQ(find_resumable_checkpoint(dir.str()).path, good);
  EXPECT_NE(log.text().find(garbage), std::string::npos) << log.text();
  EXPECT_NE(log.text().find("not an HDF5 file"), std::string::npos) << log.text();
  EXPECT_NE(log.text().find(truncated), std::string::npos) << log.text();
  EXPECT_EQ(log.text().find(good), std::string::npos) << log.text();
}

TEST(Checkpoint, ResumeFindsNothingInAnEmptyOrMissingDir) {
  TempDir dir;
  EXPECT_EQ(find_resumable_checkpoint(dir.str()).path, "");
  EXPECT_EQ(find_resumable_checkpoint(dir / "missing").path, "");
  touch(checkpoint_path(dir.str(), 1), "garbage");
  CapturedLog log;
  const ResumeChoice choice = find_resumable_checkpoint(dir.str());
  EXPECT_EQ(choice.path, "");
  ASSERT_EQ(choice.rejected.size(), 1u);
  EXPECT_EQ(choice.rejected[0].first, checkpoint_path(dir.str(), 1) + ".corrupt");
}

TEST(Checkpoint, WriteToAnUnwritableDirThrowsNamingThePathAndLeavesNoTemp) {
  TempDir dir;
  auto model = built(small_mlp(), 1);
  const CheckpointMeta meta = sample_meta(*model, nullptr);

  touch(dir / "blocker");  // a file where a directory is needed
  const std::string under_file = checkpoint_path(dir / "blocker/ckpt", 1);
  std::string msg = error_of([&] { write_checkpoint(under_file, model->arena(), nullptr, meta); });
  EXPECT_NE(msg.find(under_file), std::string::npos) << msg;
  EXPECT_NE(msg.find("blocker/ckpt"), std::string::npos) << msg;

  if (::geteuid() != 0) {  // root writes into a read-only directory anyway
    fs::create_directories(dir / "readonly");
    fs::permissions(dir / "readonly", fs::perms::owner_read | fs::perms::owner_exec);
    const std::string path = checkpoint_path(dir / "readonly", 1);
    msg = error_of([&] { write_checkpoint(path, model->arena(), nullptr, meta); });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_FALSE(fs::exists(path + ".tmp"));
    EXPECT_FALSE(fs::exists(path));
  }
}

TEST(Checkpoint, FailureHalfwayThroughTheWriteLeavesNoFileBehind) {
  TempDir dir;
  // "a" is written as a dataset, then "a/b" needs "a" to be a group: HDF5 fails mid-file.
  ParameterArena arena;
  arena.add("a", Shape{2}, nullptr);
  arena.add("a/b", Shape{3}, nullptr);
  Generator g;
  arena.allocate(Device::cpu(), g);
  CheckpointMeta meta;
  meta.rng_offsets = {0};
  const std::string path = checkpoint_path(dir.str(), 1);
  const std::string msg = error_of([&] { write_checkpoint(path, arena, nullptr, meta); });
  EXPECT_NE(msg.find("cannot write checkpoint " + path), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_FALSE(fs::exists(path));
}

// A signature far over HDF5's compact 64 KiB attribute limit (a model with thousands of
// parameters) round-trips: files use the 1.8+ format with dense attribute storage.
TEST(Checkpoint, LargeSignatureRoundTrips) {
  TempDir dir;
  auto model = built(small_mlp(), 1);
  CheckpointMeta meta = sample_meta(*model, nullptr);
  for (int i = 0; i < 2000; ++i)
    meta.signature.push_back("blocks." + std::to_string(i) + ".attn.weight f32 [1024, 1024]");
  const std::string path = checkpoint_path(dir.str(), 1);
  write_checkpoint(path, model->arena(), nullptr, meta);
  EXPECT_EQ(read_checkpoint_meta(path).signature, meta.signature);
}

TEST(Checkpoint, MetaWithTheWrongNumberOfRngOffsetsIsRefused) {
  TempDir dir;
  auto model = built(small_mlp(), 1);
  CheckpointMeta meta = sample_meta(*model, nullptr);
  meta.rng_offsets = {1, 2, 3};
  const std::string path = checkpoint_path(dir.str(), 1);
  const std::string msg = error_of([&] { write_checkpoint(path, model->arena(), nullptr, meta); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("3 rng offsets for world_size 2"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(path));
}

// The dd reproduction of issue 19, at several places: the first byte, the middle and the last byte
// of a parameter, of an optimizer slot and of a rank's RNG offset must each be caught, by name.
TEST(CheckpointIntegrity, DamagedDatasetBytesAreDetectedWhereverTheyAre) {
  auto model = built(small_mlp(), 1);
  const std::string weight = "/params/" + model->parameters().front()->name;
  const std::string slot = "/optim/" + model->parameters().back()->name + "/exp_avg_sq";
  for (const std::string& dataset : {weight, slot, std::string("/rng/1"), std::string("/sampler")})
    for (const char* where : {"first", "middle", "last"}) {
      TempDir dir;
      const std::string path = checkpoint_path(dir.str(), 7);
      write_sample(path);
      int64_t bytes = 0;
      {
        auto guard = h5::lock();
        const h5::File f = h5::File::open(path);
        const h5::Dataset d = f.dataset(dataset);
        bytes = static_cast<int64_t>(H5Dget_storage_size(d.id()));
      }
      const int64_t at = std::string(where) == "first" ? 0 : std::string(where) == "middle" ? bytes / 2 : bytes - 1;
      ASSERT_TRUE(test::flip_bytes(path, test::dataset_file_offset(path, dataset) + at, 1));
      const std::string what = dataset + " (" + where + " byte)";

      const CheckpointReport report = verify_checkpoint(path);
      EXPECT_FALSE(report.ok()) << what;
      EXPECT_NE(report.first_problem().find("dataset " + dataset + ": its bytes do not match the checksum"),
                std::string::npos)
          << what << ": " << report.first_problem();
      auto fresh = built(small_mlp(), 2);
      auto opt = make_optimizer(adam(), fresh->arena());
      const std::vector<uint32_t> before = bits(fresh->arena().values());
      const std::string msg = error_of([&] { load_checkpoint(path, fresh->arena(), opt.get(), fresh->signature()); });
      EXPECT_NE(msg.find(path), std::string::npos) << what << ": " << msg;
      EXPECT_NE(msg.find(dataset), std::string::npos) << what << ": " << msg;
      EXPECT_EQ(bits(fresh->arena().values()), before) << what << ": the model changed";
    }
}

TEST(CheckpointIntegrity, SixtyFourKibOverwrittenMidFileIsDetected) {
  TempDir dir;
  const std::string path = checkpoint_path(dir.str(), 1);
  auto model = built(ModelConfig{}, 1);  // the default mlp: 784-256-128-10, ~1 MB of parameters
  auto opt = make_optimizer(adam(), model->arena());
  fake_steps(*model, *opt, 1, 1);
  write_checkpoint(path, model->arena(), opt.get(), sample_meta(*model, opt.get()));
  ASSERT_TRUE(test::flip_bytes(path, static_cast<int64_t>(fs::file_size(path) / 2), 64 * 1024));
  const CheckpointReport report = verify_checkpoint(path);
  EXPECT_FALSE(report.ok());
  CapturedLog log;
  const ResumeChoice choice = find_resumable_checkpoint(dir.str());
  EXPECT_EQ(choice.path, "");
  ASSERT_EQ(choice.rejected.size(), 1u);
  EXPECT_EQ(choice.rejected[0].first, path + ".corrupt");
  EXPECT_TRUE(fs::exists(path + ".corrupt")) << "the damaged file is kept as evidence";
  EXPECT_NE(log.text().find("renamed to " + path + ".corrupt"), std::string::npos) << log.text();
  prune_checkpoints(dir.str(), 1);
  EXPECT_TRUE(fs::exists(path + ".corrupt")) << "keep-last rotation must not delete it";
}

TEST(CheckpointIntegrity, ResumeAutoSkipsADamagedNewestForTheOlderGoodOne) {
  TempDir dir;
  const std::string older = checkpoint_path(dir.str(), 20), newer = checkpoint_path(dir.str(), 40);
  write_sample(older);
  write_sample(newer);
  ASSERT_TRUE(test::flip_bytes(newer, test::dataset_file_offset(newer, "/params/1.weight") + 5, 4));
  CapturedLog log;
  const ResumeChoice choice = find_resumable_checkpoint(dir.str());
  EXPECT_EQ(choice.path, older);
  ASSERT_EQ(choice.rejected.size(), 1u);
  EXPECT_NE(log.text().find("skipping checkpoint " + newer + ": dataset /params/1.weight"), std::string::npos)
      << log.text();
}

TEST(CheckpointIntegrity, DamagedAttributesAreDetected) {
  TempDir dir;
  const std::string path = checkpoint_path(dir.str(), 1);
  write_sample(path);
  {
    auto guard = h5::lock();
    h5::File f = h5::File::open(path, /*writable=*/true);
    f.set_attr("config", std::string("[model]\ntype = cnn\n"));  // a plausible value the writer did not write
  }
  const std::string msg = error_of([&] { read_checkpoint_meta(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("attributes (step, config, signature, ...) are damaged"), std::string::npos) << msg;
  EXPECT_FALSE(verify_checkpoint(path).ok());
}

TEST(CheckpointIntegrity, FileWithoutChecksumsLoadsWithAWarningAndDoesNotVerify) {
  TempDir dir;
  const std::string path = checkpoint_path(dir.str(), 1);
  write_sample(path);
  {  // what a format-1 writer left: no format_version, no checksums
    auto guard = h5::lock();
    h5::File f = h5::File::open(path, true);
    ASSERT_GE(H5Adelete(f.id(), "format_version"), 0);
    ASSERT_GE(H5Adelete(f.id(), "meta_checksum"), 0);
  }
  auto model = built(small_mlp(), 3);
  auto opt = make_optimizer(adam(), model->arena());
  CapturedLog log;
  EXPECT_NO_THROW(load_checkpoint(path, model->arena(), opt.get(), model->signature()));
  EXPECT_NE(log.text().find("has no checksums (format 1)"), std::string::npos) << log.text();
  const CheckpointReport report = verify_checkpoint(path);
  EXPECT_EQ(report.format, 1);
  EXPECT_TRUE(report.ok()) << "it reads back whole: `dtrain checkpoint verify` says NOT VERIFIED for format 1";
}

TEST(CheckpointIntegrity, TruncatedFileSaysTruncated) {
  TempDir dir;
  const std::string path = checkpoint_path(dir.str(), 1);
  write_sample(path);
  fs::resize_file(path, fs::file_size(path) - 100);
  const CheckpointReport report = verify_checkpoint(path);
  EXPECT_FALSE(report.ok());
  EXPECT_NE(report.error.find("the file is truncated"), std::string::npos) << report.error;
  EXPECT_EQ(report.error.find("H5Fopen(path"), std::string::npos) << "no source text: " << report.error;
}

// What an operating-system error during a checkpoint write reads like: the file, the operation and
// the OS cause, no source text, and no file left behind (EFBIG from the file size limit stands in for
// a full disk; the ENOSPC drill on a tmpfs is in integrity_e2e_test).
TEST(CheckpointIntegrity, AnOsErrorDuringTheWriteIsNamedAndLeavesNoFile) {
  TempDir dir;
  const std::string path = checkpoint_path(dir.str(), 1);
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{16 * 1024, 16 * 1024};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    std::string message = "no error";
    try {
      auto model = built(ModelConfig{}, 1);  // ~1 MB of parameters
      write_checkpoint(path, model->arena(), nullptr, sample_meta(*model, nullptr));
    } catch (const Error& e) {
      message = e.what();
    }
    (void)!::write(pipe_fds[1], message.data(), message.size());
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  std::string message;
  char buf[512];
  for (ssize_t n; (n = ::read(pipe_fds[0], buf, sizeof buf)) > 0;) message.append(buf, static_cast<size_t>(n));
  ::close(pipe_fds[0]);
  ::waitpid(child, nullptr, 0);
  EXPECT_NE(message.find("cannot write checkpoint " + path), std::string::npos) << message;
  EXPECT_NE(message.find("File too large (errno 27)"), std::string::npos) << message;
  EXPECT_EQ(message.find("H5Dwrite("), std::string::npos) << "no source text: " << message;
  EXPECT_TRUE(fs::is_empty(dir.str())) << "no checkpoint and no temp file";
}

}  // namespace
}  // namespace dtrain
