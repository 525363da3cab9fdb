#include "data/convert.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "data/dataset.h"
#include "data/h5.h"

namespace dtrain::data {
namespace {

namespace fs = std::filesystem;

class Convert : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dtrain_convert_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // An IDX file: header for `dims` of u8, then `data` (possibly shorter than declared).
  std::string write_idx(const std::string& name, std::vector<uint32_t> dims, const std::vector<uint8_t>& data,
                        bool gzip) {
    std::string bytes = {0, 0, 0x08, static_cast<char>(dims.size())};
    for (uint32_t d : dims)
      for (int s = 24; s >= 0; s -= 8) bytes.push_back(static_cast<char>((d >> s) & 0xFF));
    bytes.append(data.begin(), data.end());
    const std::string p = path(name);
    if (gzip) {
      gzFile f = gzopen(p.c_str(), "wb");
      gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
      gzclose(f);
    } else {
      std::ofstream(p, std::ios::binary) << bytes;
    }
    return p;
  }

  void write_text(const std::string& p, const std::string& text) { std::ofstream(p) << text; }

  // Runs `f`, expects one dtrain::Error containing each of `parts`, and that neither `out` nor
  // `out.tmp` exists afterwards.
  template <typename F>
  void expect_error(F&& f, const std::vector<std::string>& parts, const std::string& out) {
    try {
      f();
      ADD_FAILURE() << "no error; expected one mentioning " << parts[0];
    } catch (const Error& e) {
      for (const std::string& part : parts) EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(out)) << "partial output left behind: " << out;
    EXPECT_FALSE(fs::exists(out + ".tmp")) << "temp file left behind: " << out << ".tmp";
  }

  std::vector<uint8_t> pixels(int n, int h, int w) {
    std::vector<uint8_t> v(static_cast<size_t>(n * h * w));
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>(i * 7 % 256);
    return v;
  }

  fs::path dir_;
};

TEST_F(Convert, IdxRoundTripGzipAndRaw) {
  for (bool gzip : {true, false}) {
    const std::vector<uint8_t> x = pixels(13, 4, 5), y = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2};
    IdxConvertOptions o;
    o.images = write_idx("img.idx", {13, 4, 5}, x, gzip);
    o.labels = write_idx("lab.idx", {13}, y, gzip);
    o.out = path("out.h5");
    o.write.chunk_bytes = 64;  // several chunks
    o.write.gzip_level = gzip ? 4 : 0;
    convert_idx(o);
    const DatasetInfo info = inspect_dataset(o.out);
    EXPECT_EQ(info.size, 13);
    EXPECT_EQ(info.sample_shape, (Shape{4, 5}));
    EXPECT_EQ(info.x_dtype, DType::u8);
    EXPECT_EQ(info.num_classes, 10);
    EXPECT_FLOAT_EQ(info.x_scale, 1.0f / 255.0f);
    EXPECT_EQ(info.created_by.rfind("dtrain ", 0), 0u);
    EXPECT_NE(info.source.find("img.idx"), std::string::npos);
    EXPECT_GT(info.chunk_rows, 0);
    h5::File f = h5::File::open(o.out);
    EXPECT_EQ(f.dataset("/x").read_all<uint8_t>(), x);
    const auto labels = f.dataset("/y").read_all<int64_t>();
    EXPECT_EQ(labels, std::vector<int64_t>(y.begin(), y.end()));
    EXPECT_EQ(f.dataset("/y").type_name(), "i64");
    EXPECT_FALSE(fs::exists(o.out + ".tmp"));
  }
}

TEST_F(Convert, CsvRoundTripWithHeaderAndLastLabelColumn) {
  write_text(path("in.csv"), "a,b,label\n1.5,2,1\n-3,4e1,0\n\n5,6,2\n");
  CsvConvertOptions o;
  o.input = path("in.csv");
  o.out = path("out.h5");
  o.label_column = -1;
  convert_csv(o);
  const DatasetInfo info = inspect_dataset(o.out);
  EXPECT_EQ(info.size, 3);
  EXPECT_EQ(info.sample_shape, (Shape{2}));
  EXPECT_EQ(info.x_dtype, DType::f32);
  EXPECT_EQ(info.num_classes, 3);
  h5::File f = h5::File::open(o.out);
  EXPECT_EQ(f.dataset("/x").read_all<float>(), (std::vector<float>{1.5f, 2, -3, 40, 5, 6}));
  EXPECT_EQ(f.dataset("/y").read_all<int64_t>(), (std::vector<int64_t>{1, 0, 2}));
}

TEST_F(Convert, TextBecomesByteTokens) {
  write_text(path("in.txt"), "hi\xff");
  convert_text({path("in.txt"), path("out.h5"), {}});
  h5::File f = h5::File::open(path("out.h5"));
  EXPECT_EQ(f.attr_int("vocab_size"), 256);
  EXPECT_EQ(f.dataset("/tokens").type_name(), "u16");
  EXPECT_EQ(f.dataset("/tokens").read_all<int32_t>(), (std::vector<int32_t>{'h', 'i', 255}));
}

TEST_F(Convert, EmptyTextOrADirectoryIsRefusedAndWritesNothing) {
  write_text(path("empty.txt"), "");
  EXPECT_THROW(
      {
        try {
          convert_text({path("empty.txt"), path("out.h5"), {}});
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("empty.txt is empty"), std::string::npos) << e.what();
          throw;
        }
      },
      Error);
  try {
    convert_text({dir_.string(), path("out.h5"), {}});
    ADD_FAILURE() << "a directory was converted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is a directory"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(path("out.h5")));
}

TEST_F(Convert, TruncatedIdxNamesFileAndSizes) {
  for (bool gzip : {true, false}) {
    IdxConvertOptions o;
    o.images = write_idx("img.idx", {10, 4, 4}, pixels(9, 4, 4), gzip);
    o.labels = write_idx("lab.idx", {10}, std::vector<uint8_t>(10, 1), gzip);
    o.out = path("out.h5");
    expect_error([&] { convert_idx(o); }, {o.images, "truncated IDX file", "10 x 4 x 4", "160 bytes", "144"}, o.out);
  }
}

TEST_F(Convert, TruncatedGzipStreamIsNamed) {
  const std::string full = write_idx("img.idx.gz", {10, 4, 4}, pixels(10, 4, 4), true);
  const auto size = fs::file_size(full);
  fs::resize_file(full, size - 12);  // cut the gzip trailer and some data
  IdxConvertOptions o;
  o.images = full;
  o.labels = write_idx("lab.idx", {10}, std::vector<uint8_t>(10, 1), false);
  o.out = path("out.h5");
  expect_error([&] { convert_idx(o); }, {full, "truncated"}, o.out);
}

TEST_F(Convert, BadIdxInputsAreNamed) {
  const std::string labels = write_idx("lab.idx", {3}, {0, 1, 2}, false);
  IdxConvertOptions o;
  o.images = write_idx("img.idx", {4, 2, 2}, pixels(4, 2, 2), false);
  o.labels = labels;
  o.out = path("out.h5");
  expect_error([&] { convert_idx(o); }, {"shape mismatch", o.images, "4 images", labels, "3 labels"}, o.out);

  write_text(path("junk.idx"), "not an idx file");
  o.images = path("junk.idx");
  expect_error([&] { convert_idx(o); }, {path("junk.idx"), "not an IDX file"}, o.out);

  o.images = path("missing.idx");
  expect_error([&] { convert_idx(o); }, {path("missing.idx"), "cannot open"}, o.out);

  o.images = write_idx("img3.idx", {3, 2, 2}, pixels(3, 2, 2), false);
  o.num_classes = 2;
  expect_error([&] { convert_idx(o); }, {labels, "y[2] = 2", "outside [0, num_classes=2)"}, o.out);
}

TEST_F(Convert, CsvWrongColumnCountNamesFileAndLine) {
  write_text(path("in.csv"), "1,2,3\n4,5,6\n7,8\n");
  CsvConvertOptions o;
  o.input = path("in.csv");
  o.out = path("out.h5");
  expect_error([&] { convert_csv(o); }, {path("in.csv") + ":3", "wrong column count", "2 columns, expected 3"}, o.out);
  write_text(path("in.csv"), "1,2,3\n4,x,6\n");
  expect_error([&] { convert_csv(o); }, {path("in.csv") + ":2", "column 2 ('x') is not a number"}, o.out);
}

// Writes an HDF5 file with the given pieces, to check what inspect_dataset rejects.
void write_raw_dataset(const std::string& p, bool with_x, bool with_y, int64_t ny, int64_t label) {
  h5::File f = h5::File::create(p);
  if (with_x)
    f.create_dataset("/x", DType::u8, Shape{4, 3}).write(std::span<const uint8_t>(std::vector<uint8_t>(12, 1)));
  if (with_y) {
    std::vector<int64_t> y(static_cast<size_t>(ny), 0);
    y.back() = label;
    f.create_dataset("/y", DType::i64, Shape{ny}).write(std::span<const int64_t>(y));
  }
  f.set_attr("num_classes", int64_t{3});
}

TEST_F(Convert, BadDatasetFilesAreNamed) {
  const std::string p = path("bad.h5");
  expect_error([&] { inspect_dataset(path("none.h5")); }, {path("none.h5"), "cannot open"}, path("none.h5"));
  write_text(p, "plain text");
  EXPECT_THROW(
      {
        try {
          inspect_dataset(p);
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find(p + ": not an HDF5 file"), std::string::npos) << e.what();
          throw;
        }
      },
      Error);
  const std::vector<std::pair<std::function<void()>, std::string>> cases = {
      {[&] { write_raw_dataset(p, false, true, 4, 0); }, "missing dataset /x"},
      {[&] { write_raw_dataset(p, true, false, 4, 0); }, "missing dataset /y"},
      {[&] { write_raw_dataset(p, true, true, 5, 0); }, "shape mismatch: /x has 4 samples [4, 3] but /y has 5 labels"},
      {[&] { write_raw_dataset(p, true, true, 4, 3); }, "label y[3] = 3 is outside [0, num_classes=3)"},
      {[&] { write_raw_dataset(p, true, true, 4, -1); }, "label y[3] = -1 is outside [0, num_classes=3)"},
  };
  for (const auto& [make, message] : cases) {
    make();
    try {
      inspect_dataset(p);
      ADD_FAILURE() << "accepted a file that should fail with: " << message;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(p + ": " + message), std::string::npos) << e.what();
    }
    fs::remove(p);
  }
}

TEST_F(Convert, CliExitsNonZeroAndLeavesNoOutput) {
  const char* bin = std::getenv("DTRAIN_BINARY_DIR");
  if (!bin) GTEST_SKIP() << "DTRAIN_BINARY_DIR not set (run through ctest)";
  const std::string dtrain = std::string(bin) + "/launch/dtrain";
  if (!fs::exists(dtrain)) GTEST_SKIP() << dtrain << " not built";
  const std::string images = write_idx("img.idx", {10, 4, 4}, pixels(9, 4, 4), true);
  const std::string labels = write_idx("lab.idx", {10}, std::vector<uint8_t>(10, 1), true);
  const std::string out = path("out.h5"), log = path("log.txt");
  const std::string cmd =
      dtrain + " data convert --from idx --images " + images + " --labels " + labels + " --out " + out + " 2>" + log;
  const int status = std::system(cmd.c_str());
  EXPECT_EQ(WEXITSTATUS(status), 1);
  std::ifstream in(log);
  std::string line;
  std::getline(in, line);
  EXPECT_NE(line.find("dtrain data: error: " + images + ": truncated IDX file"), std::string::npos) << line;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".tmp"));
  EXPECT_EQ(WEXITSTATUS(std::system((dtrain + " data convert --bogus 2>/dev/null").c_str())), 2);
  EXPECT_EQ(WEXITSTATUS(std::system((dtrain + " data convert --from idx 2>/dev/null").c_str())), 2);
}

}  // namespace
}  // namespace dtrain::data
