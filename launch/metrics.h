#pragma once
// What rank 0 reports while training: metrics.jsonl records (one JSON object per line) and the
// progress display (a redrawn bar on a terminal, plain log lines otherwise).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace dtrain {

// One JSON object built field by field: JsonObject().add("step", 3).add("loss", 0.25).str().
class JsonObject {
 public:
  JsonObject& add(const char* key, const std::string& value);
  JsonObject& add(const char* key, const char* value) { return add(key, std::string(value)); }
  JsonObject& add(const char* key, double value);
  JsonObject& add(const char* key, int64_t value);
  JsonObject& add(const char* key, int value) { return add(key, static_cast<int64_t>(value)); }
  std::string str() const { return "{" + body_ + "}"; }

 private:
  void key(const char* k);
  std::string body_;
};

// Appends records to a .jsonl file (flushed per record, so a killed run keeps what it logged).
// Default-constructed: disabled.
class MetricsLog {
 public:
  MetricsLog() = default;
  explicit MetricsLog(const std::string& path);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  void record(const JsonObject& object);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

struct ProgressStatus {
  int64_t epoch = 0, epochs = 0;  // epoch is 0-based
  int64_t step = 0, total_steps = 0;
  // samples_per_s, loss and accuracy count predictions: samples, or tokens for a language model
  double loss = 0, accuracy = 0, lr = 0, samples_per_s = 0, eta_s = 0;
  const char* rate_unit = "samples";  // "tokens" for a language model
};

// mode: "bar" redraws one line on stdout (at most 10 times a second), "lines" logs one line per
// report(), "none" is silent, "auto" is bar when stdout is a terminal, else lines.
class Progress {
 public:
  Progress(const std::string& mode, bool enabled);
  // Every step: redraws the bar (bar mode only).
  void update(const ProgressStatus& status);
  // Every log interval: a log line (lines mode) or a bar redraw.
  void report(const ProgressStatus& status, double comm_s, double data_wait_s);
  // A message that must not be overwritten (evaluation results, checkpoints).
  void message(const std::string& line);
  void finish();
  bool bar() const { return bar_; }

 private:
  void draw(const ProgressStatus& status);
  bool enabled_ = false, bar_ = false, drawn_ = false;
  std::chrono::steady_clock::time_point last_draw_{};
  ProgressStatus last_{};
};

std::string format_duration(double seconds);  // "1h02m", "3m07s", "12s"

}  // namespace dtrain
