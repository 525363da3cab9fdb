#pragma once
// The dataset file format. Classification: `/x` (N x features..., f32 or u8, chunked along N,
// optionally gzip'd) and `/y` (N, i64 labels in [0, num_classes)); root attributes
// `num_classes`, `x_scale`, `x_shift` (x_f32 = x_u8 * x_scale + x_shift on load), `source`,
// `created_by`. Token corpora: `/tokens` (u16 or i32) with `vocab_size`. Splits are separate files.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/types.h"

namespace dtrain::data {

struct DatasetInfo {
  std::string path;
  int64_t size = 0;            // N
  Shape sample_shape;          // /x's shape without N
  DType x_dtype = DType::f32;  // u8 or f32
  int64_t num_classes = 0;
  float x_scale = 1.0f, x_shift = 0.0f;
  std::string source, created_by;
  int64_t chunk_rows = 0;
  std::string x_filter;
  int64_t tokens = 0;  // token corpora: tokens in /tokens (0 for classification files)

  int64_t sample_elements() const { return sample_shape.numel(); }
  int64_t sample_bytes() const { return sample_elements() * dtype_size(x_dtype); }  // as stored
};

// Opens a classification dataset and checks it: /x and /y present, /x u8|f32 with >= 1 dims,
// /y i64 and 1-D with as many rows as /x, num_classes > 0, and (check_labels) every label in
// [0, num_classes). Each failure throws one dtrain::Error naming the file and the problem.
DatasetInfo inspect_dataset(const std::string& path, bool check_labels = true);

// Throws naming `file` and the first label outside [0, num_classes).
void check_labels(std::span<const int64_t> labels, int64_t num_classes, const std::string& file);

struct WriteOptions {
  int gzip_level = 0;             // 0 = uncompressed, 1..9 = deflate
  int64_t chunk_bytes = 1 << 20;  // target chunk size along N
};

// In-memory classification data as converters produce it; exactly one of x_u8 / x_f32 is used.
struct ClassificationData {
  Shape x_shape;  // [N, features...]
  DType x_dtype = DType::u8;
  std::vector<uint8_t> x_u8;
  std::vector<float> x_f32;
  std::vector<int64_t> y;
  int64_t num_classes = 0;
  double x_scale = 1.0, x_shift = 0.0;
  std::string source;
};

// Writes `out` atomically (out.tmp, then rename); validates shapes and labels first.
void write_classification(const std::string& out, const ClassificationData& data, const WriteOptions& options);

// Writes a token corpus: /tokens as u16 when vocab_size <= 65536, else i32.
void write_tokens(const std::string& out, std::span<const int32_t> tokens, int64_t vocab_size,
                  const std::string& source, const WriteOptions& options);

std::string created_by_string();  // "dtrain <version> data convert"

}  // namespace dtrain::data
