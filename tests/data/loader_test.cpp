#include "data/loader.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "core/ops.h"
#include "data/dataset.h"

namespace dtrain::data {
namespace {

namespace fs = std::filesystem;

// Sample i has pixels (i + j) % 256 and label i % 10, so a batch can be checked against its indices.
uint8_t pixel(int64_t i, int64_t j) { return static_cast<uint8_t>((i + j) % 256); }

class LoaderTest : public ::testing::Test {
 protected:
  static constexpr int64_t kN = 203, kH = 6, kW = 5;
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dtrain_loader_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    file_ = (dir_ / "ds.h5").string();
    ClassificationData d;
    d.x_shape = Shape{kN, kH, kW};
    for (int64_t i = 0; i < kN; ++i)
      for (int64_t j = 0; j < kH * kW; ++j) d.x_u8.push_back(pixel(i, j));
    for (int64_t i = 0; i < kN; ++i) d.y.push_back(i % 10);
    d.num_classes = 10;
    d.x_scale = 0.5;
    d.x_shift = -1.0;
    d.source = "test";
    write_classification(file_, d, WriteOptions{1, 7 * kH * kW});  // gzip, chunks of 7 rows
  }
  void TearDown() override { fs::remove_all(dir_); }

  static std::vector<Batch> epoch(Loader& loader) {
    std::vector<Batch> out;
    while (auto b = loader.next()) out.push_back(std::move(*b));
    return out;
  }
  static void expect_same(const std::vector<Batch>& a, const std::vector<Batch>& b) {
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].indices, b[i].indices);
      EXPECT_EQ(a[i].x.to_vector<float>(), b[i].x.to_vector<float>());
      EXPECT_EQ(a[i].y.to_vector<int64_t>(), b[i].y.to_vector<int64_t>());
    }
  }

  fs::path dir_;
  std::string file_;
};

TEST_F(LoaderTest, BatchesHoldNormalisedSamplesOfTheirIndices) {
  LoaderOptions o;
  o.batch_size = 16;
  Loader loader(file_, 0, 1, o);
  EXPECT_EQ(loader.steps_per_epoch(), (kN + 15) / 16);
  EXPECT_FALSE(loader.streaming());
  const auto batches = epoch(loader);
  ASSERT_EQ(static_cast<int64_t>(batches.size()), loader.steps_per_epoch());
  EXPECT_EQ(batches.back().size(), kN % 16);
  std::vector<int64_t> seen;
  for (const Batch& b : batches) {
    EXPECT_EQ(b.x.shape()[1], kH);
    EXPECT_EQ(b.x.shape()[2], kW);
    const auto x = b.x.to_vector<float>();
    const auto y = b.y.to_vector<int64_t>();
    for (int64_t k = 0; k < b.size(); ++k) {
      const int64_t i = b.indices[k];
      EXPECT_EQ(y[k], i % 10);
      for (int64_t j = 0; j < kH * kW; ++j) ASSERT_EQ(x[k * kH * kW + j], pixel(i, j) * 0.5f - 1.0f);
      seen.push_back(i);
    }
  }
  std::sort(seen.begin(), seen.end());
  for (int64_t i = 0; i < kN; ++i) ASSERT_EQ(seen[i], i);
  EXPECT_FALSE(loader.next().has_value());
  EXPECT_EQ(loader.state(), (SamplerState{0, kN}));
}

TEST_F(LoaderTest, PrefetchAndStreamingDeliverTheSameBatchesAsSynchronousReading) {
  LoaderOptions sync;
  sync.batch_size = 8;
  sync.prefetch_depth = 0;
  sync.seed = 5;
  Loader a(file_, 1, 3, sync);
  LoaderOptions prefetch = sync;
  prefetch.prefetch_depth = 3;
  Loader b(file_, 1, 3, prefetch);
  LoaderOptions stream = prefetch;
  stream.max_memory_bytes = 20 * kH * kW;  // blocks of 16 samples
  Loader c(file_, 1, 3, stream);
  EXPECT_TRUE(c.streaming());
  for (int64_t e = 0; e < 2; ++e) {
    a.set_epoch(e);
    b.set_epoch(e);
    c.set_epoch(e);
    const auto ref = epoch(a);
    expect_same(ref, epoch(b));
    expect_same(ref, epoch(c));
  }
  EXPECT_GT(c.bytes_read(), 0);
}

TEST_F(LoaderTest, RestoreMidEpochContinuesIdentically) {
  LoaderOptions o;
  o.batch_size = 10;
  Loader a(file_, 0, 2, o);
  a.set_epoch(3);
  std::vector<Batch> first;
  for (int i = 0; i < 4; ++i) first.push_back(*a.next());
  const SamplerState saved = a.state();
  EXPECT_EQ(saved, (SamplerState{3, 40}));
  const auto rest = epoch(a);
  Loader b(file_, 0, 2, o);
  b.restore(saved);
  expect_same(rest, epoch(b));
}

TEST_F(LoaderTest, AugmentationIsDeterministicAndFlipsMirror) {
  LoaderOptions o;
  o.batch_size = 32;
  o.shuffle = false;
  o.augment.horizontal_flip = true;
  Loader a(file_, 0, 1, o), b(file_, 0, 1, o);
  const auto ea = epoch(a), eb = epoch(b);
  expect_same(ea, eb);
  int flipped = 0, kept = 0;
  for (const Batch& batch : ea) {
    const auto x = batch.x.to_vector<float>();
    for (int64_t k = 0; k < batch.size(); ++k) {
      const int64_t i = batch.indices[k];
      const float* s = x.data() + k * kH * kW;
      const bool same = s[0] == pixel(i, 0) * 0.5f - 1.0f && s[kW - 1] == pixel(i, kW - 1) * 0.5f - 1.0f;
      const bool mirrored = s[0] == pixel(i, kW - 1) * 0.5f - 1.0f && s[kW - 1] == pixel(i, 0) * 0.5f - 1.0f;
      EXPECT_TRUE(same || mirrored);
      flipped += mirrored;
      kept += same;
    }
  }
  EXPECT_GT(flipped, kN / 4);
  EXPECT_GT(kept, kN / 4);

  o.augment = {2, false};
  Loader c(file_, 0, 1, o);
  const auto ec = epoch(c);
  int shifted = 0;
  for (size_t n = 0; n < ec.size(); ++n) shifted += ec[n].x.to_vector<float>() != ea[n].x.to_vector<float>();
  EXPECT_GT(shifted, 0);
}

// What the trainer does on a GPU: raw u8 batches (4x fewer bytes to copy) normalised where the
// model runs give bit for bit the loader's own normalised batches, augmented or not.
TEST_F(LoaderTest, RawPixelsNormalisedLaterEqualTheNormalisedBatches) {
  for (const AugmentOptions augment : {AugmentOptions{}, AugmentOptions{2, true}}) {
    LoaderOptions o;
    o.batch_size = 16;
    o.augment = augment;
    LoaderOptions raw = o;
    raw.raw_u8 = true;
    Loader a(file_, 0, 2, o), b(file_, 0, 2, raw);
    const auto normalised = epoch(a), pixels = epoch(b);
    ASSERT_EQ(normalised.size(), pixels.size());
    for (size_t i = 0; i < pixels.size(); ++i) {
      ASSERT_EQ(pixels[i].x.dtype(), DType::u8);
      EXPECT_EQ(pixels[i].indices, normalised[i].indices);
      EXPECT_EQ(pixels[i].y.to_vector<int64_t>(), normalised[i].y.to_vector<int64_t>());
      const Tensor x = ops::to_dtype(pixels[i].x, DType::f32, 0.5f, -1.0f);
      EXPECT_EQ(x.to_vector<float>(), normalised[i].x.to_vector<float>())
          << "batch " << i << ", crop " << augment.crop_padding;
    }
  }
}

TEST_F(LoaderTest, MissingFileIsNamed) {
  try {
    Loader loader((dir_ / "none.h5").string(), 0, 1, {});
    FAIL() << "opened a missing file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("none.h5: cannot open"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dtrain::data
