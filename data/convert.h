#pragma once
// Converters into the dataset format (data/dataset.h): IDX (MNIST / Fashion-MNIST, gzip'd or
// raw), CSV (a label column plus numeric features) and raw text (bytes as tokens).
#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace dtrain::data {

// One IDX array: big-endian header (0, 0, type, ndims, dims...) then the data.
struct IdxArray {
  std::vector<int64_t> dims;
  uint8_t type = 0x08;        // 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64
  std::vector<uint8_t> data;  // raw big-endian bytes, dims.product * element size
};

// Reads an IDX file through zlib (gzip'd or not); a bad magic, truncated or oversized data
// throws naming the file.
IdxArray read_idx(const std::string& path);
// The array's values as f32 (any element type) / as i64 labels (integer types only).
std::vector<float> idx_to_f32(const IdxArray& a);
std::vector<int64_t> idx_to_i64(const IdxArray& a, const std::string& path);

struct IdxConvertOptions {
  std::string images, labels, out;
  int64_t num_classes = 0;                      // 0: max label + 1
  double x_scale = 1.0 / 255.0, x_shift = 0.0;  // for u8 images
  WriteOptions write;
};
void convert_idx(const IdxConvertOptions& options);

struct CsvConvertOptions {
  std::string input, out;
  int label_column = 0;  // negative counts from the end (-1 = last)
  int header = -1;       // 1: skip the first line; 0: none; -1: skip it when it is not numeric
  char delimiter = ',';
  int64_t num_classes = 0;  // 0: max label + 1
  WriteOptions write;
};
void convert_csv(const CsvConvertOptions& options);

struct TextConvertOptions {
  std::string input, out;
  WriteOptions write;
  double val_fraction = 0;  // in (0, 0.5]: the last val_fraction of the bytes go to val_out
  std::string val_out = {};
};
// Bytes as tokens, vocab_size 256; with val_fraction, the text's tail (by bytes) is written to
// val_out and the rest to out, each atomically.
void convert_text(const TextConvertOptions& options);

}  // namespace dtrain::data
