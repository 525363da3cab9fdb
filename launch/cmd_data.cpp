// `dtrain data convert|info`: build dataset files (data/dataset.h) and describe them.
#include <boost/program_options.hpp>

#include <cstdio>
#include <iostream>
#include <sstream>

#include "core/error.h"
#include "data/convert.h"
#include "data/dataset.h"
#include "data/h5.h"
#include "launch/cli.h"
#include "launch/commands.h"

namespace po = boost::program_options;

namespace dtrain {
namespace {

const char* kDataUsage =
    "usage: dtrain data convert --from idx|csv|text --out FILE.h5 [options]\n"
    "       dtrain data convert --from text --input TEXT --out TRAIN.h5 [--val-fraction F --val-out VAL.h5]\n"
    "       dtrain data info FILE.h5\n\n"
    "convert writes FILE.h5 (via FILE.h5.tmp, renamed on success); info prints shapes, dtypes,\n"
    "attributes and the class histogram. --from text makes a token corpus, one token per byte\n"
    "(vocab_size 256); --val-fraction F puts the last F of the bytes in --val-out, the rest in --out.\n";

const CommandUsage kData{"data convert", kDataUsage};
int usage_error(const std::string& message) { return kData.error(message); }

// The options of `data convert`; which apply depends on --from.
struct ConvertArgs {
  std::string from, out, images, labels, input, header = "auto", delimiter = ",", val_out;
  int64_t num_classes = 0, chunk_bytes = 1 << 20;
  int label_column = 0, compress = 0;
  double x_scale = 1.0 / 255.0, x_shift = 0.0, val_fraction = 0.0;
};

void add_convert_options(po::options_description& opts, ConvertArgs& a) {
  opts.add_options()("help,h", "show this help")("from", po::value(&a.from), "input format: idx | csv | text")(
      "out,o", po::value(&a.out), "output dataset file (.h5)")("images", po::value(&a.images),
                                                               "idx: images file (.gz or raw)")(
      "labels", po::value(&a.labels), "idx: labels file (.gz or raw)")("input,i", po::value(&a.input),
                                                                       "csv/text: input file")(
      "label-column", po::value(&a.label_column)->default_value(0), "csv: label column (0-based; -1 = last)")(
      "header", po::value(&a.header)->default_value("auto"), "csv: first line is a header: yes | no | auto")(
      "delimiter", po::value(&a.delimiter)->default_value(","), "csv: field delimiter (one character)")(
      "num-classes", po::value(&a.num_classes)->default_value(0), "number of classes (0: max label + 1)")(
      "x-scale", po::value(&a.x_scale)->default_value(1.0 / 255.0, "1/255"),
      "u8 images: x_f32 = x_u8 * x_scale + x_shift")("x-shift", po::value(&a.x_shift)->default_value(0.0),
                                                     "u8 images: see --x-scale")(
      "val-fraction", po::value(&a.val_fraction)->default_value(0.0),
      "text: fraction in (0, 0.5] of the bytes, the text's tail, written to --val-out (0 = no split)")(
      "val-out", po::value(&a.val_out), "text: validation token file (.h5) for --val-fraction")(
      "compress", po::value(&a.compress)->default_value(0), "gzip level for /x and /y chunks (0 = none, 1..9)")(
      "chunk-bytes", po::value(&a.chunk_bytes)->default_value(1 << 20), "target chunk size along N in bytes");
}

int convert_csv_command(const ConvertArgs& a, const data::WriteOptions& write) {
  if (a.input.empty()) return usage_error("--from csv needs --input");
  if (a.header != "yes" && a.header != "no" && a.header != "auto")
    return usage_error("--header must be yes, no or auto");
  if (a.delimiter.size() != 1) return usage_error("--delimiter must be one character");
  data::CsvConvertOptions o;
  o.input = a.input;
  o.out = a.out;
  o.label_column = a.label_column;
  o.header = a.header == "yes" ? 1 : a.header == "no" ? 0 : -1;
  o.delimiter = a.delimiter[0];
  o.num_classes = a.num_classes;
  o.write = write;
  data::convert_csv(o);
  return 0;
}

int convert_text_command(const ConvertArgs& a, const data::WriteOptions& write) {
  if (a.input.empty()) return usage_error("--from text needs --input");
  if (a.val_fraction != 0 && !(a.val_fraction > 0 && a.val_fraction <= 0.5)) {
    std::ostringstream given;
    given << a.val_fraction;
    return usage_error("--val-fraction must be in (0, 0.5], got " + given.str());
  }
  if (a.val_fraction != 0 && a.val_out.empty()) return usage_error("--val-fraction needs --val-out FILE.h5");
  if (a.val_fraction == 0 && !a.val_out.empty()) return usage_error("--val-out needs --val-fraction in (0, 0.5]");
  if (!a.val_out.empty() && a.val_out == a.out) return usage_error("--val-out must differ from --out");
  data::convert_text({a.input, a.out, write, a.val_fraction, a.val_out});
  return 0;
}

int cmd_convert(const std::vector<std::string>& args) {
  ConvertArgs a;
  po::options_description opts("dtrain data convert options");
  add_convert_options(opts, a);
  po::variables_map vm;
  if (const auto stop = parse_command_options(kData, args, opts, vm)) return *stop;
  if (a.from.empty()) return usage_error("convert needs --from idx|csv|text");
  if (a.out.empty()) return usage_error("convert needs --out FILE.h5");
  if (a.compress < 0 || a.compress > 9) return usage_error("--compress must be 0..9");
  if (a.chunk_bytes <= 0) return usage_error("--chunk-bytes must be positive");
  if (a.from != "text" && (a.val_fraction != 0 || !a.val_out.empty()))
    return usage_error("--val-fraction and --val-out apply to --from text only");
  const data::WriteOptions write{a.compress, a.chunk_bytes};
  int rc = 0;
  if (a.from == "idx") {
    if (a.images.empty() || a.labels.empty()) return usage_error("--from idx needs --images and --labels");
    data::convert_idx({a.images, a.labels, a.out, a.num_classes, a.x_scale, a.x_shift, write});
  } else if (a.from == "csv") {
    rc = convert_csv_command(a, write);
  } else if (a.from == "text") {
    rc = convert_text_command(a, write);
  } else {
    return usage_error("unknown --from '" + a.from + "' (expected idx, csv or text)");
  }
  if (rc != 0) return rc;
  std::printf("wrote %s\n", a.out.c_str());
  if (!a.val_out.empty()) std::printf("wrote %s\n", a.val_out.c_str());
  return 0;
}

void print_attributes(const h5::Object& o) {
  for (const std::string& a : o.attr_names()) std::printf("  %-12s %s\n", a.c_str(), o.attr_text(a).c_str());
}

int cmd_data_info(const std::vector<std::string>& args) {
  if (args.size() == 1 && (args[0] == "--help" || args[0] == "-h")) {
    std::printf("%s", kDataUsage);
    return 0;
  }
  if (args.size() != 1) return usage_error("info takes one FILE.h5");
  const std::string& path = args[0];
  h5::File f = h5::File::open(path);
  std::printf("%s\n", path.c_str());
  if (f.has("/tokens") && !f.has("/x")) {
    h5::Dataset t = f.dataset("/tokens");
    std::printf("  /tokens      %s %s, %s\n", t.shape().str().c_str(), t.type_name().c_str(), t.filter_name().c_str());
    std::printf("attributes:\n");
    print_attributes(f);
    return 0;
  }
  const data::DatasetInfo info = data::inspect_dataset(path);
  h5::Dataset x = f.dataset("/x"), y = f.dataset("/y");
  std::printf("  /x           %s %s, chunks of %lld rows, filters %s\n", x.shape().str().c_str(), x.type_name().c_str(),
              static_cast<long long>(info.chunk_rows), info.x_filter.c_str());
  std::printf("  /y           %s %s\n", y.shape().str().c_str(), y.type_name().c_str());
  std::printf("attributes:\n");
  print_attributes(f);
  std::vector<int64_t> histogram(static_cast<size_t>(info.num_classes), 0);
  for (int64_t label : y.read_all<int64_t>()) ++histogram[static_cast<size_t>(label)];
  std::printf("classes:\n");
  for (size_t c = 0; c < histogram.size(); ++c)
    std::printf("  %-4zu %8lld  %5.1f%%\n", c, static_cast<long long>(histogram[c]),
                info.size ? 100.0 * histogram[c] / info.size : 0.0);
  return 0;
}

}  // namespace

int cmd_data(const std::vector<std::string>& args) {
  if (args.empty()) return usage_error("missing subcommand (convert or info)");
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "convert") return cmd_convert(rest);
  if (args[0] == "info") return cmd_data_info(rest);
  if (args[0] == "--help" || args[0] == "-h") {
    std::printf("%s\n`dtrain data convert --help` lists the convert options.\n", kDataUsage);
    return 0;
  }
  return usage_error("unknown subcommand '" + args[0] + "' (expected convert or info)");
}

}  // namespace dtrain
