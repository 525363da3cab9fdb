#include "bench/harness.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <sstream>

namespace dtrain::bench {
namespace {

template <typename T>
bool parse(const std::string& text, T& value) {
  const char* end = text.data() + text.size();
  const auto [stop, ec] = std::from_chars(text.data(), end, value);
  return !text.empty() && ec == std::errc() && stop == end;
}

// The option's value as a T, or fallback when the option is not given (text is null).
template <typename T>
T parse_option(const std::string& option, const std::string* text, T fallback, const char* expected) {
  if (!text) return fallback;
  T parsed{};
  if (!parse(*text, parsed)) throw UsageError(option + " takes " + expected + ", got '" + *text + "'");
  return parsed;
}

std::string quoted(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(c));
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace

Args::Args(const Program& program, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_ = true;
      return;
    }
    if (!arg.starts_with("--")) {
      if (positional_.size() == program.positional.size()) throw UsageError("unexpected argument '" + arg + "'");
      positional_.push_back(arg);
      continue;
    }
    if (std::find(program.options.begin(), program.options.end(), arg) == program.options.end())
      throw UsageError("unknown option " + arg);
    if (i + 1 == argc) throw UsageError(arg + " needs a value");
    values_[arg] = argv[++i];
  }
  if (positional_.size() < program.required) throw UsageError("missing " + program.positional[positional_.size()]);
}

const std::string* Args::value(const std::string& option) const {
  const auto it = values_.find(option);
  return it == values_.end() ? nullptr : &it->second;
}

std::string Args::text(const std::string& option, const std::string& fallback) const {
  const std::string* text = value(option);
  return text ? *text : fallback;
}

int64_t Args::integer(const std::string& option, int64_t fallback) const {
  return parse_option(option, value(option), fallback, "an integer");
}

int64_t Args::positive_integer(const std::string& option, int64_t fallback) const {
  const int64_t parsed = integer(option, fallback);
  if (parsed <= 0) throw UsageError(detail::concat(option, " must be positive, got ", parsed));
  return parsed;
}

double Args::number(const std::string& option, double fallback) const {
  return parse_option(option, value(option), fallback, "a number");
}

std::vector<int64_t> Args::positive_integers(const std::string& option, const std::vector<int64_t>& fallback) const {
  const std::string* text = value(option);
  if (!text) return fallback;
  std::vector<int64_t> values;
  bool valid = true;
  std::stringstream list(*text);
  for (std::string item; valid && std::getline(list, item, ',');) {
    int64_t parsed = 0;
    valid = parse(item, parsed) && parsed > 0;
    values.push_back(parsed);
  }
  if (!valid || values.empty())
    throw UsageError(option + " takes positive integers separated by commas, got '" + *text + "'");
  return values;
}

int run_main(const Program& program, int argc, char** argv, const std::function<void(const Args&)>& body) {
  try {
    const Args args(program, argc, argv);
    if (args.help()) {
      std::printf("%s\n", program.usage.c_str());
      return 0;
    }
    body(args);
    return 0;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: %s\n%s\n", program.name.c_str(), e.what(), program.usage.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program.name.c_str(), e.what());
    return 1;
  }
}

double wall_ms(const std::function<void()>& fn) {
  const auto start = Clock::now();
  fn();
  return seconds_since(start) * 1e3;
}

std::vector<double> sample_ms(const std::function<void()>& fn, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) ms.push_back(wall_ms(fn));
  return ms;
}

double median(std::vector<double> values) {
  DTRAIN_CHECK(!values.empty(), "median of no values");
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

double percentile(std::vector<double> values, double q) {
  DTRAIN_CHECK(!values.empty(), "percentile of no values");
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1, static_cast<size_t>(static_cast<double>(values.size()) * q))];
}

double command_ms(const std::string& command) {
  int status = 0;
  const double ms = wall_ms([&] { status = std::system(command.c_str()); });
  DTRAIN_CHECK(status == 0, "`", command, "` failed");
  return ms;
}

JsonLine::JsonLine(std::string_view bench) : text_("{") { add("bench", bench); }

JsonLine& JsonLine::add(std::string_view key, std::string_view text) { return add_raw(key, quoted(text)); }

JsonLine& JsonLine::add(std::string_view key, double value) {
  std::ostringstream os;
  os << value;
  return add_raw(key, os.str());
}

JsonLine& JsonLine::add(std::string_view key, double value, int decimals) {
  return add_raw(key, fixed(value, decimals));
}

JsonLine& JsonLine::add_raw(std::string_view key, std::string_view json_value) {
  if (text_.size() > 1) text_ += ',';
  text_ += quoted(key);
  text_ += ':';
  text_ += json_value;
  return *this;
}

JsonOutput::JsonOutput(const std::string& path, Mode mode) {
  if (path.empty()) return;
  file_.open(path, mode == Mode::append ? std::ios::app : std::ios::trunc);
  DTRAIN_CHECK(file_.good(), "cannot ", mode == Mode::append ? "append to" : "write", " --json file '", path, "'");
}

void JsonOutput::emit(const JsonLine& line) {
  const std::string text = line.str();
  std::printf("%s\n", text.c_str());
  if (file_.is_open()) file_ << text << "\n";
}

std::string fixed(double value, int decimals, std::string_view suffix) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text + std::string(suffix);
}

Table::Table(std::vector<Column> columns, std::FILE* out, std::string indent)
    : columns_(std::move(columns)), out_(out), indent_(std::move(indent)) {}

void Table::print_header() const {
  std::vector<std::string> headers;
  for (const Column& c : columns_) headers.push_back(c.header);
  print_row(headers);
}

void Table::print_row(const std::vector<std::string>& cells) const {
  DTRAIN_CHECK(cells.size() == columns_.size(), "a table row of ", cells.size(), " cells for ", columns_.size(),
               " columns");
  std::string line = indent_;
  for (size_t i = 0; i < cells.size(); ++i) {
    const std::string padding(std::max<size_t>(columns_[i].width, cells[i].size()) - cells[i].size(), ' ');
    if (i > 0) line += ' ';
    line += columns_[i].left ? cells[i] + padding : padding + cells[i];
  }
  std::fprintf(out_, "%s\n", line.c_str());
}

}  // namespace dtrain::bench
