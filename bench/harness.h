#pragma once
// What every program in bench/ shares, in the spirit of nccl-tests' common: the `--key value`
// command line, wall-time statistics, JSON lines (stdout and a --json FILE) and a human table.
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/error.h"

namespace dtrain::bench {

// A command line that does not fit the program: run_main prints it with the usage and exits 2.
class UsageError : public Error {
 public:
  using Error::Error;
};

struct Program {
  std::string name;                          // prefixes every error message: "bench_core: ..."
  std::string usage;                         // printed for --help and after a usage error
  std::vector<std::string> options;          // the `--key value` options it takes
  std::vector<std::string> positional = {};  // names of the other arguments, in order ("MODEL.onnx")
  size_t required = 0;                       // how many of those must be given
};

// The command line, checked against a Program. Getters parse on demand and throw UsageError
// naming the option when the value is not what it should be.
class Args {
 public:
  Args(const Program& program, int argc, char** argv);
  bool help() const { return help_; }
  std::string text(const std::string& option, const std::string& fallback) const;
  int64_t integer(const std::string& option, int64_t fallback) const;
  int64_t positive_integer(const std::string& option, int64_t fallback) const;
  double number(const std::string& option, double fallback) const;
  // A comma-separated list such as 1,64.
  std::vector<int64_t> positive_integers(const std::string& option, const std::vector<int64_t>& fallback) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  const std::string* value(const std::string& option) const;  // null when not given
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
  bool help_ = false;
};

// A program's main after its first call: parses the command line and runs body (exit 0). --help
// or -h prints the usage (exit 0); a UsageError prints "name: message" and the usage to stderr
// (exit 2); any other exception prints "name: message" (exit 1).
int run_main(const Program& program, int argc, char** argv, const std::function<void(const Args&)>& body);

// Wall time of one call of fn.
double wall_ms(const std::function<void()>& fn);
// Wall times of `reps` calls of fn after `warmup` unmeasured ones, in the order run.
std::vector<double> sample_ms(const std::function<void()>& fn, int warmup, int reps);
// The middle value; the mean of the two middle ones for an even count.
double median(std::vector<double> values);
// The value at index floor(size * q) of the sorted values (as bench/ort_latency.js computes it).
double percentile(std::vector<double> values, double q);
// Wall time of a shell command (the anchors: cat, dd); throws naming it when it fails.
double command_ms(const std::string& command);

// One measurement as one JSON object on one line: {"bench":NAME, then the fields as added}.
class JsonLine {
 public:
  explicit JsonLine(std::string_view bench);
  JsonLine& add(std::string_view key, std::string_view text);
  template <std::integral T>
  JsonLine& add(std::string_view key, T value) {
    return add_raw(key, std::to_string(value));
  }
  // As iostreams print it (%g: six significant digits).
  JsonLine& add(std::string_view key, double value);
  JsonLine& add(std::string_view key, double value, int decimals);
  std::string str() const { return text_ + "}"; }

 private:
  JsonLine& add_raw(std::string_view key, std::string_view json_value);
  std::string text_;
};

// Where JSON lines go: stdout, and the --json FILE when a path is given (emptied first, or
// appended to so that several runs collect in one file).
class JsonOutput {
 public:
  enum class Mode { truncate, append };
  JsonOutput(const std::string& path, Mode mode);
  void emit(const JsonLine& line);

 private:
  std::ofstream file_;
};

// `value` with `decimals` digits after the point, then `suffix` ("1.25x"): a table cell.
std::string fixed(double value, int decimals, std::string_view suffix = "");

struct Column {
  std::string header;
  size_t width;
  bool left = false;  // the name column; numbers align right
};

// A human table, printed a row at a time so that a long benchmark shows each as it finishes.
class Table {
 public:
  explicit Table(std::vector<Column> columns, std::FILE* out = stdout, std::string indent = "");
  void print_header() const;
  void print_row(const std::vector<std::string>& cells) const;

 private:
  std::vector<Column> columns_;
  std::FILE* out_;
  std::string indent_;
};

}  // namespace dtrain::bench
