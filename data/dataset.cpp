#include "data/dataset.h"

#include <algorithm>

#include "core/config.h"
#include "core/error.h"
#include "data/h5.h"

namespace dtrain::data {

namespace {

h5::CreateOptions create_options(int64_t row_bytes, int64_t rows, const WriteOptions& options) {
  DTRAIN_CHECK(options.gzip_level >= 0 && options.gzip_level <= 9, "gzip level ", options.gzip_level,
               " is outside 0..9");
  h5::CreateOptions c;
  c.chunk_rows =
      std::clamp<int64_t>(options.chunk_bytes / std::max<int64_t>(row_bytes, 1), 1, std::max<int64_t>(rows, 1));
  c.gzip_level = options.gzip_level;
  return c;
}

}  // namespace

std::string created_by_string() { return std::string("dtrain ") + DTRAIN_VERSION + " data convert"; }

void check_labels(std::span<const int64_t> labels, int64_t num_classes, const std::string& file) {
  for (size_t i = 0; i < labels.size(); ++i)
    DTRAIN_CHECK(labels[i] >= 0 && labels[i] < num_classes, file, ": label y[", i, "] = ", labels[i],
                 " is outside [0, num_classes=", num_classes, ")");
}

DatasetInfo inspect_dataset(const std::string& path, bool check) {
  h5::File f = h5::File::open(path);
  DTRAIN_CHECK(f.has("/x"), path, ": missing dataset /x (expected N x features..., u8 or f32)");
  DTRAIN_CHECK(f.has("/y"), path, ": missing dataset /y (expected N i64 class labels)");
  h5::Dataset x = f.dataset("/x"), y = f.dataset("/y");
  DatasetInfo info;
  info.path = path;
  const Shape xs = x.shape(), ys = y.shape();
  DTRAIN_CHECK(xs.size() >= 1, path, ": /x is a scalar, expected N x features...");
  const std::string xt = x.type_name();
  DTRAIN_CHECK(xt == "u8" || xt == "f32", path, ": /x has element type ", xt, ", expected u8 or f32");
  DTRAIN_CHECK(ys.size() == 1, path, ": /y has shape ", ys.str(), ", expected [N] class labels");
  const std::string yt = y.type_name();
  DTRAIN_CHECK(yt.starts_with("i") || yt.starts_with("u"), path, ": /y has element type ", yt, ", expected i64 labels");
  DTRAIN_CHECK(xs[0] == ys[0], path, ": shape mismatch: /x has ", xs[0], " samples ", xs.str(), " but /y has ", ys[0],
               " labels");
  info.size = xs[0];
  info.sample_shape = Shape(xs.begin() + 1, xs.end());
  info.x_dtype = x.dtype();
  info.chunk_rows = x.chunk_rows();
  info.x_filter = x.filter_name();
  DTRAIN_CHECK(f.has_attr("num_classes"), path, ": missing attribute num_classes");
  info.num_classes = f.attr_int("num_classes");
  DTRAIN_CHECK(info.num_classes > 0, path, ": attribute num_classes = ", info.num_classes, ", expected > 0");
  if (f.has_attr("x_scale")) info.x_scale = static_cast<float>(f.attr_float("x_scale"));
  if (f.has_attr("x_shift")) info.x_shift = static_cast<float>(f.attr_float("x_shift"));
  if (f.has_attr("source")) info.source = f.attr_text("source");
  if (f.has_attr("created_by")) info.created_by = f.attr_text("created_by");
  if (check) check_labels(y.read_all<int64_t>(), info.num_classes, path);
  return info;
}

void write_classification(const std::string& out, const ClassificationData& d, const WriteOptions& options) {
  DTRAIN_CHECK(d.x_shape.size() >= 1, d.source, ": samples have no shape");
  const int64_t n = d.x_shape[0];
  DTRAIN_CHECK(static_cast<int64_t>(d.y.size()) == n, d.source, ": shape mismatch: ", n, " samples but ", d.y.size(),
               " labels");
  DTRAIN_CHECK(d.x_dtype == DType::u8 || d.x_dtype == DType::f32, "write_classification: x must be u8 or f32");
  const int64_t expect = d.x_shape.numel();
  const int64_t have = d.x_dtype == DType::u8 ? d.x_u8.size() : d.x_f32.size();
  DTRAIN_CHECK(have == expect, d.source, ": ", have, " feature values for shape ", d.x_shape.str());
  DTRAIN_CHECK(d.num_classes > 0, d.source, ": num_classes = ", d.num_classes, ", expected > 0");
  check_labels(d.y, d.num_classes, d.source);

  h5::AtomicFile af(out);
  h5::File& f = af.file();
  const int64_t row_bytes = n > 0 ? expect / n * dtype_size(d.x_dtype) : 1;
  h5::Dataset x = f.create_dataset("/x", d.x_dtype, d.x_shape, create_options(row_bytes, n, options));
  if (d.x_dtype == DType::u8)
    x.write(std::span<const uint8_t>(d.x_u8));
  else
    x.write(std::span<const float>(d.x_f32));
  h5::Dataset y = f.create_dataset("/y", DType::i64, Shape{n}, create_options(8, n, options));
  y.write(std::span<const int64_t>(d.y));
  f.set_attr("num_classes", d.num_classes);
  f.set_attr("x_scale", d.x_scale);
  f.set_attr("x_shift", d.x_shift);
  f.set_attr("source", d.source);
  f.set_attr("created_by", created_by_string());
  af.commit();
}

void write_tokens(const std::string& out, std::span<const int32_t> tokens, int64_t vocab_size,
                  const std::string& source, const WriteOptions& options) {
  DTRAIN_CHECK(vocab_size > 0, source, ": vocab_size = ", vocab_size, ", expected > 0");
  for (size_t i = 0; i < tokens.size(); ++i)
    DTRAIN_CHECK(tokens[i] >= 0 && tokens[i] < vocab_size, source, ": token ", i, " = ", tokens[i],
                 " is outside [0, vocab_size=", vocab_size, ")");
  h5::AtomicFile af(out);
  h5::File& f = af.file();
  const int64_t n = static_cast<int64_t>(tokens.size());
  const bool narrow = vocab_size <= 65536;
  h5::Dataset t = f.create_dataset("/tokens", narrow ? H5T_STD_U16LE : H5T_STD_I32LE, Shape{n},
                                   create_options(narrow ? 2 : 4, n, options));
  t.write(tokens);
  f.set_attr("vocab_size", vocab_size);
  f.set_attr("source", source);
  f.set_attr("created_by", created_by_string());
  af.commit();
}

}  // namespace dtrain::data
