#pragma once
// The server's Prometheus metrics, written in the text exposition format by hand: request counts
// by model/version/status code, latency histograms (queue, compute, total), batch sizes, and for
// language models generated tokens, time to first token, prefill and decoding step times and
// sequences per step; gauges (queue depth, active sequences, loaded versions) are passed in when
// rendering.
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

namespace dtrain::serve {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}
  void observe(double v);
  // `name`_bucket{labels,le=...} (cumulative), `name`_sum, `name`_count lines.
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::vector<double> bounds_;
  std::vector<int64_t> counts_;
  double sum_ = 0;
  int64_t count_ = 0;
};

struct VersionGauges {
  std::string model;
  int64_t version = 0;
  int64_t queue_depth = 0;
  int64_t active_sequences = -1;  // language models: sequences being decoded (-1: not one)
};

class ServeMetrics {
 public:
  // One infer request answered with `code` (model "" and version 0 when it named no known one).
  void count_request(const std::string& model, int64_t version, int code);
  void observe_request(const std::string& model, int64_t version, double queue_s, double total_s);
  void observe_batch(const std::string& model, int64_t version, int64_t rows, double compute_s);
  // Language models: a prefill, a decoding step of `rows` sequences, a request's first token
  // (seconds since it was submitted), tokens generated.
  void observe_prefill(const std::string& model, int64_t version, double seconds);
  void observe_decode_step(const std::string& model, int64_t version, int64_t rows, double seconds);
  void observe_first_token(const std::string& model, int64_t version, double seconds);
  void count_generated(const std::string& model, int64_t version, int64_t tokens);
  // A pipeline's stage (1-based) ran for `seconds` (in this server or on another).
  void observe_stage(const std::string& model, int64_t version, int64_t stage, double seconds);
  std::string render(const std::vector<VersionGauges>& loaded) const;

 private:
  using Key = std::pair<std::string, int64_t>;
  struct PerVersion {
    Histogram queue, compute, total, batch_rows;
    PerVersion();
  };
  struct PerGeneration {
    Histogram prefill, decode_step, decode_rows, first_token;
    int64_t tokens = 0;
    PerGeneration();
  };
  PerVersion& at(const Key& key);
  void render_generation(std::string& out, const std::vector<VersionGauges>& loaded) const;
  mutable std::mutex mutex_;  // guards everything below
  std::map<std::tuple<std::string, int64_t, int>, int64_t> requests_;
  std::map<Key, PerVersion> versions_;
  std::map<Key, PerGeneration> generation_;
  std::map<std::tuple<std::string, int64_t, int64_t>, Histogram> stages_;
};

// `model="m",version="1"` with the value escaped for the text format.
std::string version_labels(const std::string& model, int64_t version);

}  // namespace dtrain::serve
