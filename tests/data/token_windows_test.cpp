#include "data/token_windows.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "data/convert.h"
#include "data/dataset.h"
#include "data/h5.h"

namespace dtrain::data {
namespace {

namespace fs = std::filesystem;

class TokenWindowsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dtrain_token_windows_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // A corpus whose token at offset i is i (mod vocab_size): a window's tokens tell where it starts.
  std::string counting_corpus(const std::string& name, int64_t n, int64_t vocab_size = 65536) {
    std::vector<int32_t> tokens(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) tokens[static_cast<size_t>(i)] = static_cast<int32_t>(i % vocab_size);
    write_tokens(path(name), tokens, vocab_size, "test", {});
    return path(name);
  }

  // A corpus written without write_tokens' checks: i32 /tokens and vocab_size as given.
  std::string raw_corpus(const std::string& name, const std::vector<int32_t>& tokens, int64_t vocab_size) {
    h5::File f = h5::File::create(path(name));
    f.create_dataset("/tokens", DType::i32, Shape{static_cast<int64_t>(tokens.size())})
        .write(std::span<const int32_t>(tokens));
    f.set_attr("vocab_size", vocab_size);
    return path(name);
  }

  template <typename F>
  void expect_error(F&& f, const std::vector<std::string>& parts) {
    try {
      f();
      ADD_FAILURE() << "no error; expected one mentioning " << parts[0];
    } catch (const Error& e) {
      for (const std::string& part : parts) EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  }

  fs::path dir_;
};

// All window offsets of the current epoch, batch by batch.
std::vector<int64_t> drain(TokenWindows& w) {
  std::vector<int64_t> starts;
  while (std::optional<Batch> b = w.next()) starts.insert(starts.end(), b->indices.begin(), b->indices.end());
  return starts;
}

TokenWindowOptions random_options(int64_t ctx, int64_t batch_size, uint64_t seed = 7) {
  TokenWindowOptions o;
  o.ctx = ctx;
  o.batch_size = batch_size;
  o.seed = seed;
  return o;
}

TEST_F(TokenWindowsTest, InspectReportsTokensVocabAndProvenance) {
  const std::string p = counting_corpus("c.h5", 1000, 300);
  const DatasetInfo info = inspect_tokens(p);
  EXPECT_EQ(info.tokens, 1000);
  EXPECT_EQ(info.num_classes, 300);
  EXPECT_EQ(info.x_dtype, DType::i64);
  EXPECT_EQ(info.source, "test");
  EXPECT_NE(info.created_by.find("dtrain"), std::string::npos);
}

TEST_F(TokenWindowsTest, XMatchesTheFileAndYIsXShiftedByOne) {
  for (const int64_t vocab : {int64_t{65536}, int64_t{70000}}) {  // u16 and i32 files
    const std::string p = counting_corpus(std::to_string(vocab) + ".h5", 5000, vocab);
    TokenWindows w(p, 0, 1, random_options(16, 8));
    EXPECT_EQ(w.info().sample_shape, Shape{16});
    const Batch b = *w.next();
    ASSERT_EQ(b.x.shape(), (Shape{8, 16}));
    ASSERT_EQ(b.y.shape(), (Shape{8, 16}));
    EXPECT_EQ(b.x.dtype(), DType::i64);
    EXPECT_EQ(b.y.dtype(), DType::i64);
    const int64_t* x = b.x.data<int64_t>();
    const int64_t* y = b.y.data<int64_t>();
    for (int64_t i = 0; i < b.size(); ++i)
      for (int64_t j = 0; j < 16; ++j) {
        EXPECT_EQ(x[i * 16 + j], b.indices[i] + j);
        EXPECT_EQ(y[i * 16 + j], b.indices[i] + j + 1);
      }
  }
}

TEST_F(TokenWindowsTest, RandomWindowsStayInsideTheRankShard) {
  const int64_t n = 1000, ctx = 16;
  const std::string p = counting_corpus("c.h5", n);
  for (int rank = 0; rank < 3; ++rank) {
    TokenWindows w(p, rank, 3, random_options(ctx, 5));
    const int64_t begin = rank * n / 3, end = (rank + 1) * n / 3;
    std::set<int64_t> seen;
    for (int64_t epoch = 0; epoch < 20; ++epoch) {
      w.set_epoch(epoch);
      for (int64_t s : drain(w)) {
        EXPECT_GE(s, begin);
        EXPECT_LE(s + ctx + 1, end);
        seen.insert(s);
      }
    }
    EXPECT_GT(seen.size(), 100u) << "rank " << rank << " draws few distinct windows";
  }
}

TEST_F(TokenWindowsTest, EveryRankHasTheSameWindowsPerEpoch) {
  const std::string p = counting_corpus("c.h5", 1001);  // shards of 250, 250, 250 and 251 tokens
  for (int rank = 0; rank < 4; ++rank) {
    TokenWindows w(p, rank, 4, random_options(16, 4));
    EXPECT_EQ(w.samples_per_epoch(), 15);  // (250 - 1) / 16
    EXPECT_EQ(w.info().size, 60);
    std::vector<int64_t> sizes;
    while (std::optional<Batch> b = w.next()) sizes.push_back(b->size());
    EXPECT_EQ(sizes, (std::vector<int64_t>{4, 4, 4, 3}));
    EXPECT_EQ(w.state(), (SamplerState{0, 15}));
  }
}

TEST_F(TokenWindowsTest, WindowsArePureFunctionsOfSeedEpochRankAndPosition) {
  const std::string p = counting_corpus("c.h5", 4000);
  TokenWindows a(p, 1, 2, random_options(8, 3)), b(p, 1, 2, random_options(8, 3));
  a.set_epoch(2);
  b.set_epoch(2);
  EXPECT_EQ(drain(a), drain(b));
  TokenWindows other_seed(p, 1, 2, random_options(8, 3, 8));
  other_seed.set_epoch(2);
  a.set_epoch(2);
  EXPECT_NE(drain(a), drain(other_seed));
}

TEST_F(TokenWindowsTest, RestoreMidEpochContinuesLikeAnUninterruptedRun) {
  const std::string p = counting_corpus("c.h5", 4000);
  TokenWindows uninterrupted(p, 0, 2, random_options(8, 5));
  uninterrupted.set_epoch(1);
  std::vector<Batch> expected;
  while (std::optional<Batch> b = uninterrupted.next()) expected.push_back(std::move(*b));
  ASSERT_GT(expected.size(), 3u);

  TokenWindows before(p, 0, 2, random_options(8, 5));
  before.set_epoch(1);
  before.next();
  before.next();
  const SamplerState saved = before.state();
  EXPECT_EQ(saved, (SamplerState{1, 10}));

  TokenWindows resumed(p, 0, 2, random_options(8, 5));  // a fresh process at epoch 0
  resumed.restore(saved);
  for (size_t i = 2; i < expected.size(); ++i) {
    const std::optional<Batch> b = resumed.next();
    ASSERT_TRUE(b);
    EXPECT_EQ(b->indices, expected[i].indices);
    EXPECT_EQ(b->x.to_vector<int64_t>(), expected[i].x.to_vector<int64_t>());
    EXPECT_EQ(b->y.to_vector<int64_t>(), expected[i].y.to_vector<int64_t>());
  }
  EXPECT_FALSE(resumed.next());
  EXPECT_EQ(resumed.state(), (SamplerState{1, resumed.samples_per_epoch()}));
}

TEST_F(TokenWindowsTest, EpochsDrawDifferentWindows) {
  const std::string p = counting_corpus("c.h5", 4000);
  TokenWindows w(p, 0, 1, random_options(8, 16));
  const std::vector<int64_t> epoch0 = drain(w);
  EXPECT_FALSE(w.next());
  w.set_epoch(1);
  const std::vector<int64_t> epoch1 = drain(w);
  EXPECT_EQ(epoch0.size(), epoch1.size());
  EXPECT_NE(epoch0, epoch1);
  w.set_epoch(0);
  EXPECT_EQ(drain(w), epoch0);
}

TEST_F(TokenWindowsTest, FixedWindowsTileTheFileAndAlternateOverRanks) {
  const std::string p = counting_corpus("c.h5", 1001);  // (1001 - 1) / 10 = 100 windows
  TokenWindowOptions o;
  o.ctx = 10;
  o.batch_size = 7;
  o.random = false;
  std::vector<int64_t> all;
  for (int rank = 0; rank < 3; ++rank) {
    o.seed = static_cast<uint64_t>(rank) + 1;  // no effect
    TokenWindows w(p, rank, 3, o);
    EXPECT_EQ(w.info().size, 100);
    EXPECT_EQ(w.samples_per_epoch(), rank == 0 ? 34 : 33);
    const std::vector<int64_t> starts = drain(w);
    for (size_t k = 0; k < starts.size(); ++k) EXPECT_EQ(starts[k], (rank + 3 * static_cast<int64_t>(k)) * 10);
    w.set_epoch(5);
    EXPECT_EQ(drain(w), starts);
    all.insert(all.end(), starts.begin(), starts.end());
  }
  std::sort(all.begin(), all.end());
  std::vector<int64_t> tiles(100);
  for (int64_t k = 0; k < 100; ++k) tiles[static_cast<size_t>(k)] = k * 10;
  EXPECT_EQ(all, tiles);
}

TEST_F(TokenWindowsTest, FixedWindowsThinToMaxWindowsEvenlySpaced) {
  const std::string p = counting_corpus("c.h5", 1001);
  TokenWindowOptions o;
  o.ctx = 10;
  o.random = false;
  o.max_windows = 7;
  TokenWindows one(p, 0, 1, o);
  EXPECT_EQ(one.info().size, 7);
  EXPECT_EQ(drain(one), (std::vector<int64_t>{0, 140, 280, 420, 570, 710, 850}));  // k = i * 100 / 7
  TokenWindows second(p, 1, 2, o);
  EXPECT_EQ(drain(second), (std::vector<int64_t>{140, 420, 710}));
  o.max_windows = 500;  // more than there are: all 100
  EXPECT_EQ(TokenWindows(p, 0, 1, o).samples_per_epoch(), 100);
}

TEST_F(TokenWindowsTest, ShardShorterThanAWindowIsAnErrorSayingWhatFits) {
  const std::string p = counting_corpus("short.h5", 100);  // shards of 25 tokens over 4 ranks
  expect_error([&] { TokenWindows(p, 0, 4, random_options(32, 4)); },
               {p, "shards of 25 tokens", "ctx + 1 = 33", "3 rank(s) fit ctx 32", "ctx 24 at most with 4"});
  TokenWindowOptions fixed;
  fixed.ctx = 100;
  fixed.random = false;
  expect_error([&] { TokenWindows(p, 0, 1, fixed); }, {p, "100 tokens hold no window of ctx + 1 = 101"});
}

TEST_F(TokenWindowsTest, TokenOutsideTheVocabularyIsAnErrorNamingPositionAndValue) {
  const std::string p = raw_corpus("bad.h5", {1, 2, 3, 4, 5, 300, 6, 7}, 256);
  expect_error([&] { inspect_tokens(p); }, {p, "/tokens[5] = 300", "vocab_size=256"});
  expect_error([&] { TokenWindows(p, 0, 1, random_options(2, 1)); }, {p, "/tokens[5] = 300"});
  const std::string negative = raw_corpus("negative.h5", {1, -4, 3}, 256);
  expect_error([&] { inspect_tokens(negative); }, {negative, "/tokens[1] = -4"});
}

TEST_F(TokenWindowsTest, MalformedCorporaAreErrorsNamingTheFile) {
  const std::string one = raw_corpus("one.h5", {1}, 256);
  expect_error([&] { inspect_tokens(one); }, {one, "holds 1 token(s), expected at least 2"});
  const std::string no_vocab = raw_corpus("vocab0.h5", {1, 2, 3}, 0);
  expect_error([&] { inspect_tokens(no_vocab); }, {no_vocab, "vocab_size = 0"});
  {
    h5::File f = h5::File::create(path("f32.h5"));
    f.create_dataset("/tokens", DType::f32, Shape{3}).write(std::span<const float>(std::vector<float>{1, 2, 3}));
    f.set_attr("vocab_size", int64_t{256});
  }
  expect_error([&] { inspect_tokens(path("f32.h5")); }, {path("f32.h5"), "element type f32, expected u16 or i32"});
}

TEST_F(TokenWindowsTest, RestoreRejectsPositionsOutsideTheEpoch) {
  const std::string p = counting_corpus("c.h5", 1000);
  TokenWindows w(p, 0, 1, random_options(10, 4));
  expect_error([&] { w.restore({0, w.samples_per_epoch() + 1}); }, {p, "outside [0, 99]"});
  expect_error([&] { w.restore({0, -1}); }, {p, "saved position -1"});
  w.restore({3, w.samples_per_epoch()});
  EXPECT_FALSE(w.next());
}

TEST_F(TokenWindowsTest, TellsTokenCorporaFromClassificationFiles) {
  EXPECT_TRUE(is_token_dataset(counting_corpus("c.h5", 10)));
  ClassificationData d;
  d.x_shape = Shape{2, 3};
  d.x_u8 = {1, 2, 3, 4, 5, 6};
  d.y = {0, 1};
  d.num_classes = 2;
  write_classification(path("cls.h5"), d, {});
  EXPECT_FALSE(is_token_dataset(path("cls.h5")));
  expect_error([&] { is_token_dataset(path("missing.h5")); }, {path("missing.h5"), "cannot open"});
  expect_error([&] { inspect_tokens(path("cls.h5")); }, {path("cls.h5"), "missing dataset /tokens"});
}

TEST_F(TokenWindowsTest, TextConvertSplitsTheTailIntoValidation) {
  std::string text(1000, '\0');
  for (size_t i = 0; i < text.size(); ++i) text[i] = static_cast<char>('a' + i % 26);
  std::ofstream(path("in.txt"), std::ios::binary) << text;
  convert_text({path("in.txt"), path("train.h5"), {}, 0.05, path("val.h5")});
  const std::vector<int32_t> train = h5::File::open(path("train.h5")).dataset("/tokens").read_all<int32_t>();
  const std::vector<int32_t> val = h5::File::open(path("val.h5")).dataset("/tokens").read_all<int32_t>();
  EXPECT_EQ(train.size(), 950u);
  EXPECT_EQ(val.size(), 50u);
  std::vector<int32_t> joined = train;
  joined.insert(joined.end(), val.begin(), val.end());
  EXPECT_EQ(joined, std::vector<int32_t>(text.begin(), text.end()));
  EXPECT_EQ(inspect_tokens(path("val.h5")).num_classes, 256);
  EXPECT_NE(inspect_tokens(path("val.h5")).source.find("bytes [950, 1000)"), std::string::npos);
}

TEST_F(TokenWindowsTest, TextConvertRejectsBadSplitOptions) {
  std::ofstream(path("in.txt")) << "some text";
  expect_error(
      [&] {
        convert_text({path("in.txt"), path("t.h5"), {}, 0.6, path("v.h5")});
      },
      {"--val-fraction 0.6", "(0, 0.5]"});
  expect_error([&] { convert_text({path("in.txt"), path("t.h5"), {}, 0.1, ""}); }, {"--val-out"});
  expect_error([&] { convert_text({path("in.txt"), path("t.h5"), {}, 0.0, path("v.h5")}); }, {"--val-fraction"});
  expect_error(
      [&] {
        convert_text({path("in.txt"), path("t.h5"), {}, 0.05, path("v.h5")});
      },
      {path("in.txt"), "9 bytes leave no validation text"});
  EXPECT_FALSE(fs::exists(path("t.h5")));
  EXPECT_FALSE(fs::exists(path("v.h5")));
}

}  // namespace
}  // namespace dtrain::data
