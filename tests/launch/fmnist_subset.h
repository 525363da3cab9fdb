#pragma once
// The launch e2e tests' data: the first n samples of a Fashion-MNIST split (Debian's
// dataset-fashion-mnist IDX files) written as a dtrain dataset file.
#include <string>
#include <vector>

#include "data/convert.h"
#include "data/dataset.h"

namespace dtrain::test {

inline const char* kFmnist = "/usr/share/datasets/fashion-mnist";

inline void write_fmnist_subset(const std::string& prefix, int64_t n, const std::string& out) {
  const data::IdxArray images = data::read_idx(std::string(kFmnist) + "/" + prefix + "-images-idx3-ubyte.gz");
  const data::IdxArray labels = data::read_idx(std::string(kFmnist) + "/" + prefix + "-labels-idx1-ubyte.gz");
  data::ClassificationData d;
  const int64_t pixels = images.dims[1] * images.dims[2];
  d.x_shape = Shape{n, images.dims[1], images.dims[2]};
  d.x_dtype = DType::u8;
  d.x_u8.assign(images.data.begin(), images.data.begin() + n * pixels);
  const std::vector<int64_t> y = data::idx_to_i64(labels, prefix);
  d.y.assign(y.begin(), y.begin() + n);
  d.num_classes = 10;
  d.x_scale = 1.0 / 255.0;
  d.source = "fashion-mnist subset";
  data::write_classification(out, d, {});
}

}  // namespace dtrain::test
