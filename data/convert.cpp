#include "data/convert.h"

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <sstream>

#include "core/error.h"

namespace dtrain::data {

namespace {

int idx_element_size(uint8_t type) {
  switch (type) {
    case 0x08:
    case 0x09: return 1;
    case 0x0B: return 2;
    case 0x0C:
    case 0x0D: return 4;
    case 0x0E: return 8;
    default: return 0;
  }
}

const char* idx_type_name(uint8_t type) {
  switch (type) {
    case 0x08: return "u8";
    case 0x09: return "i8";
    case 0x0B: return "i16";
    case 0x0C: return "i32";
    case 0x0D: return "f32";
    case 0x0E: return "f64";
    default: return "unknown";
  }
}

struct GzCloser {
  void operator()(gzFile f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// zlib's message without the "path: " prefix gzerror puts on it.
std::string gz_message(gzFile f, int& err) {
  std::string msg = gzerror(f, &err);
  const size_t colon = msg.rfind(": ");
  return colon == std::string::npos ? msg : msg.substr(colon + 2);
}

// Reads up to `bytes` into `out`; returns the count read (less only at the end of the stream).
int64_t gz_read(gzFile f, void* out, int64_t bytes, const std::string& path) {
  int64_t done = 0;
  while (done < bytes) {
    const unsigned want = static_cast<unsigned>(std::min<int64_t>(bytes - done, 1 << 30));
    const int got = gzread(f, static_cast<char*>(out) + done, want);
    if (got < 0) {
      int err = 0;
      fail(path, ": corrupt or truncated gzip stream (", gz_message(f, err), ")");
    }
    if (got == 0) break;
    done += got;
  }
  // zlib reports a gzip stream cut short as a clean end of file plus a Z_BUF_ERROR.
  int err = 0;
  const std::string msg = gz_message(f, err);
  DTRAIN_CHECK(err == Z_OK || err == Z_STREAM_END, path, ": corrupt or truncated gzip stream (", msg, ")");
  return done;
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

template <typename U>
U load_be(const uint8_t* p) {
  U v{};
  for (size_t i = 0; i < sizeof(U); ++i) v = static_cast<U>((v << 8) | p[i]);
  return v;
}

template <typename F>
void for_each_idx_value(const IdxArray& a, F&& f) {
  const int64_t n = static_cast<int64_t>(a.data.size()) / idx_element_size(a.type);
  const uint8_t* p = a.data.data();
  for (int64_t i = 0; i < n; ++i) {
    switch (a.type) {
      case 0x08: f(static_cast<double>(p[i])); break;
      case 0x09: f(static_cast<double>(static_cast<int8_t>(p[i]))); break;
      case 0x0B: f(static_cast<double>(static_cast<int16_t>(load_be<uint16_t>(p + 2 * i)))); break;
      case 0x0C: f(static_cast<double>(static_cast<int32_t>(load_be<uint32_t>(p + 4 * i)))); break;
      case 0x0D: f(static_cast<double>(std::bit_cast<float>(load_be<uint32_t>(p + 4 * i)))); break;
      case 0x0E: f(std::bit_cast<double>(load_be<uint64_t>(p + 8 * i))); break;
    }
  }
}

int64_t infer_num_classes(const std::vector<int64_t>& y, int64_t given) {
  if (given > 0) return given;
  int64_t max_label = -1;
  for (int64_t v : y) max_label = std::max(max_label, v);
  return std::max<int64_t>(max_label + 1, 1);
}

}  // namespace

IdxArray read_idx(const std::string& path) {
  std::ifstream probe(path, std::ios::binary);
  DTRAIN_CHECK(probe.good(), path, ": cannot open: ", std::strerror(errno));
  probe.close();
  GzFile f(gzopen(path.c_str(), "rb"));
  DTRAIN_CHECK(f != nullptr, path, ": cannot open: ", std::strerror(errno));
  gzbuffer(f.get(), 1 << 17);
  uint8_t magic[4];
  DTRAIN_CHECK(gz_read(f.get(), magic, 4, path) == 4, path, ": truncated IDX file: shorter than the 4-byte magic");
  IdxArray a;
  a.type = magic[2];
  const int ndims = magic[3];
  DTRAIN_CHECK(magic[0] == 0 && magic[1] == 0 && idx_element_size(a.type) > 0 && ndims >= 1 && ndims <= 8, path,
               ": not an IDX file (bad magic ", int(magic[0]), " ", int(magic[1]), " ", int(magic[2]), " ",
               int(magic[3]), ")");
  std::vector<uint8_t> header(4 * static_cast<size_t>(ndims));
  DTRAIN_CHECK(gz_read(f.get(), header.data(), header.size(), path) == static_cast<int64_t>(header.size()), path,
               ": truncated IDX file: header ends before its ", ndims, " dimensions");
  int64_t elements = 1;
  std::string dims_text;
  for (int i = 0; i < ndims; ++i) {
    a.dims.push_back(be32(header.data() + 4 * i));
    elements *= a.dims.back();
    dims_text += (i ? " x " : "") + std::to_string(a.dims.back());
  }
  const int64_t bytes = elements * idx_element_size(a.type);
  DTRAIN_CHECK(bytes < (int64_t{1} << 40), path, ": IDX header claims ", dims_text, " elements, too large");
  a.data.resize(static_cast<size_t>(bytes));
  const int64_t got = gz_read(f.get(), a.data.data(), bytes, path);
  DTRAIN_CHECK(got == bytes, path, ": truncated IDX file: header says ", dims_text, " ", idx_type_name(a.type), " (",
               bytes, " bytes of data) but the file has only ", got);
  uint8_t extra;
  DTRAIN_CHECK(gz_read(f.get(), &extra, 1, path) == 0, path, ": IDX file has data after the ", dims_text, " ",
               idx_type_name(a.type), " array it declares");
  return a;
}

std::vector<float> idx_to_f32(const IdxArray& a) {
  std::vector<float> out;
  out.reserve(a.data.size() / idx_element_size(a.type));
  for_each_idx_value(a, [&](double v) { out.push_back(static_cast<float>(v)); });
  return out;
}

std::vector<int64_t> idx_to_i64(const IdxArray& a, const std::string& path) {
  DTRAIN_CHECK(a.type != 0x0D && a.type != 0x0E, path, ": labels are ", idx_type_name(a.type),
               ", expected an integer IDX type");
  std::vector<int64_t> out;
  out.reserve(a.data.size() / idx_element_size(a.type));
  for_each_idx_value(a, [&](double v) { out.push_back(static_cast<int64_t>(v)); });
  return out;
}

void convert_idx(const IdxConvertOptions& o) {
  DTRAIN_CHECK(!o.images.empty() && !o.labels.empty(), "convert --from idx needs --images and --labels");
  const IdxArray images = read_idx(o.images);
  const IdxArray labels = read_idx(o.labels);
  DTRAIN_CHECK(labels.dims.size() == 1, o.labels, ": labels have ", labels.dims.size(), " dimensions, expected 1");
  DTRAIN_CHECK(images.dims[0] == labels.dims[0], "shape mismatch: ", o.images, " has ", images.dims[0], " images but ",
               o.labels, " has ", labels.dims[0], " labels");
  ClassificationData d;
  d.x_shape = Shape(images.dims.begin(), images.dims.end());
  d.y = idx_to_i64(labels, o.labels);
  d.num_classes = infer_num_classes(d.y, o.num_classes);
  check_labels(d.y, d.num_classes, o.labels);
  if (images.type == 0x08) {
    d.x_dtype = DType::u8;
    d.x_u8 = images.data;
    d.x_scale = o.x_scale;
    d.x_shift = o.x_shift;
  } else {
    d.x_dtype = DType::f32;
    d.x_f32 = idx_to_f32(images);
  }
  d.source = "idx: " + o.images + ", " + o.labels;
  write_classification(o.out, d, o.write);
}

namespace {

// Splits one CSV line (no quoting: numeric data only) into fields.
void split_fields(std::string_view line, char delimiter, std::vector<std::string_view>& fields) {
  fields.clear();
  size_t start = 0;
  while (true) {
    const size_t end = line.find(delimiter, start);
    fields.push_back(line.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool parse_double(std::string_view s, double& v) {
  s = trim(s);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return !s.empty() && r.ec == std::errc() && r.ptr == s.data() + s.size();
}

}  // namespace

void convert_csv(const CsvConvertOptions& o) {
  DTRAIN_CHECK(!o.input.empty(), "convert --from csv needs --input");
  std::ifstream in(o.input);
  DTRAIN_CHECK(in.good(), o.input, ": cannot open: ", std::strerror(errno));
  std::string line;
  std::vector<std::string_view> fields;
  ClassificationData d;
  d.x_dtype = DType::f32;
  int64_t columns = -1, line_no = 0, label_col = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (trim(line).empty()) continue;
    split_fields(line, o.delimiter, fields);
    if (columns < 0) {
      columns = static_cast<int64_t>(fields.size());
      DTRAIN_CHECK(columns >= 2, o.input, ":", line_no, ": ", columns, " column(s); expected a label and features");
      label_col = o.label_column < 0 ? columns + o.label_column : o.label_column;
      DTRAIN_CHECK(label_col >= 0 && label_col < columns, o.input, ": --label-column ", o.label_column,
                   " is outside the ", columns, " columns");
      double probe;
      const bool numeric =
          std::all_of(fields.begin(), fields.end(), [&](std::string_view f) { return parse_double(f, probe); });
      if (o.header == 1 || (o.header < 0 && !numeric)) continue;
    }
    DTRAIN_CHECK(static_cast<int64_t>(fields.size()) == columns, o.input, ":", line_no,
                 ": wrong column count: ", fields.size(), " columns, expected ", columns);
    for (int64_t c = 0; c < columns; ++c) {
      double v;
      DTRAIN_CHECK(parse_double(fields[c], v), o.input, ":", line_no, ": column ", c + 1, " ('", trim(fields[c]),
                   "') is not a number");
      if (c == label_col) {
        DTRAIN_CHECK(v == static_cast<double>(static_cast<int64_t>(v)), o.input, ":", line_no, ": label '",
                     trim(fields[c]), "' is not an integer");
        d.y.push_back(static_cast<int64_t>(v));
      } else {
        d.x_f32.push_back(static_cast<float>(v));
      }
    }
  }
  DTRAIN_CHECK(in.eof(), o.input, ": read error after line ", line_no);
  DTRAIN_CHECK(!d.y.empty(), o.input, ": no data rows");
  d.x_shape = Shape{static_cast<int64_t>(d.y.size()), columns - 1};
  d.num_classes = infer_num_classes(d.y, o.num_classes);
  d.source = "csv: " + o.input;
  check_labels(d.y, d.num_classes, o.input);
  write_classification(o.out, d, o.write);
}

namespace {

void check_text_split(const TextConvertOptions& o) {
  if (o.val_fraction == 0) {
    DTRAIN_CHECK(o.val_out.empty(), "convert --from text: --val-out ", o.val_out, " needs --val-fraction in (0, 0.5]");
    return;
  }
  DTRAIN_CHECK(o.val_fraction > 0 && o.val_fraction <= 0.5, "convert --from text: --val-fraction ", o.val_fraction,
               " is outside (0, 0.5]");
  DTRAIN_CHECK(!o.val_out.empty(), "convert --from text: --val-fraction needs --val-out FILE.h5");
  DTRAIN_CHECK(o.val_out != o.out, "convert --from text: --val-out and --out are both ", o.out);
}

}  // namespace

void convert_text(const TextConvertOptions& o) {
  DTRAIN_CHECK(!o.input.empty(), "convert --from text needs --input");
  check_text_split(o);
  std::error_code ec;
  DTRAIN_CHECK(!std::filesystem::is_directory(o.input, ec), "--input ", o.input,
               " is a directory, expected a text file");
  std::ifstream in(o.input, std::ios::binary);
  DTRAIN_CHECK(in.good(), o.input, ": cannot open: ", std::strerror(errno));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const std::string bytes = buffer.str();
  DTRAIN_CHECK(!in.bad(), o.input, ": read error: ", std::strerror(errno));
  DTRAIN_CHECK(!bytes.empty(), "--input ", o.input, " is empty: there is no text to make tokens of");
  std::vector<int32_t> tokens(bytes.size());
  std::transform(bytes.begin(), bytes.end(), tokens.begin(),
                 [](char c) { return static_cast<int32_t>(static_cast<unsigned char>(c)); });
  const auto n = static_cast<int64_t>(tokens.size());
  if (o.val_fraction == 0) {
    write_tokens(o.out, tokens, 256, "text: " + o.input, o.write);
    return;
  }
  const auto val = static_cast<int64_t>(static_cast<double>(n) * o.val_fraction);
  DTRAIN_CHECK(val >= 1, o.input, ": ", n, " bytes leave no validation text at --val-fraction ", o.val_fraction);
  const int64_t split = n - val;
  const std::span<const int32_t> all(tokens);
  write_tokens(o.out, all.first(static_cast<size_t>(split)), 256,
               "text: " + o.input + " bytes [0, " + std::to_string(split) + ")", o.write);
  write_tokens(o.val_out, all.subspan(static_cast<size_t>(split)), 256,
               "text: " + o.input + " bytes [" + std::to_string(split) + ", " + std::to_string(n) + ")", o.write);
}

}  // namespace dtrain::data
