#include "serve/metrics.h"

#include <cstdio>

namespace dtrain::serve {
namespace {

const std::vector<double> kSecondsBounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                            0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
const std::vector<double> kRowsBounds = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

std::string version_labels(const std::string& model, int64_t version) {
  return "model=\"" + escape(model) + "\",version=\"" + std::to_string(version) + "\"";
}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  int64_t cumulative = 0;
  const std::string sep = labels.empty() ? "" : ",";
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i];
    const std::string le = i < bounds_.size() ? number(bounds_[i]) : "+Inf";
    out += name + "_bucket{" + labels + sep + "le=\"" + le + "\"} " + std::to_string(cumulative) + "\n";
  }
  out += name + "_sum{" + labels + "} " + number(sum_) + "\n";
  out += name + "_count{" + labels + "} " + std::to_string(count_) + "\n";
}

ServeMetrics::PerVersion::PerVersion()
    : queue(kSecondsBounds), compute(kSecondsBounds), total(kSecondsBounds), batch_rows(kRowsBounds) {}

ServeMetrics::PerVersion& ServeMetrics::at(const Key& key) { return versions_.try_emplace(key).first->second; }

void ServeMetrics::count_request(const std::string& model, int64_t version, int code) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{model, version, code}];
}

void ServeMetrics::observe_request(const std::string& model, int64_t version, double queue_s, double total_s) {
  std::lock_guard<std::mutex> lock(mutex_);
  PerVersion& v = at({model, version});
  v.queue.observe(queue_s);
  v.total.observe(total_s);
}

void ServeMetrics::observe_batch(const std::string& model, int64_t version, int64_t rows, double compute_s) {
  std::lock_guard<std::mutex> lock(mutex_);
  PerVersion& v = at({model, version});
  v.compute.observe(compute_s);
  v.batch_rows.observe(static_cast<double>(rows));
}

std::string ServeMetrics::render(const std::vector<VersionGauges>& loaded) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  out += "# HELP dtrain_serve_requests_total Inference requests by model, version and HTTP status code.\n";
  out += "# TYPE dtrain_serve_requests_total counter\n";
  for (const auto& [key, n] : requests_) {
    const auto& [model, version, code] = key;
    out += "dtrain_serve_requests_total{" + version_labels(model, version) + ",code=\"" + std::to_string(code) +
           "\"} " + std::to_string(n) + "\n";
  }
  struct Family {
    const char* name;
    const char* help;
    const Histogram PerVersion::*histogram;
  };
  const Family families[] = {
      {"dtrain_serve_queue_seconds", "Time a request waited for its batch to start.", &PerVersion::queue},
      {"dtrain_serve_compute_seconds", "Engine time of one batch.", &PerVersion::compute},
      {"dtrain_serve_request_seconds", "Time from parsed request to response body of successful inferences.",
       &PerVersion::total},
      {"dtrain_serve_batch_size", "Rows in each batch the engine ran.", &PerVersion::batch_rows},
  };
  for (const Family& f : families) {
    out += std::string("# HELP ") + f.name + " " + f.help + "\n# TYPE " + f.name + " histogram\n";
    for (const auto& [key, v] : versions_) (v.*f.histogram).render(out, f.name, version_labels(key.first, key.second));
  }
  out += "# HELP dtrain_serve_queue_depth Requests waiting for an engine worker.\n";
  out += "# TYPE dtrain_serve_queue_depth gauge\n";
  for (const VersionGauges& g : loaded)
    out +=
        "dtrain_serve_queue_depth{" + version_labels(g.model, g.version) + "} " + std::to_string(g.queue_depth) + "\n";
  out += "# HELP dtrain_serve_model_loaded A loaded model version (1 while it serves).\n";
  out += "# TYPE dtrain_serve_model_loaded gauge\n";
  for (const VersionGauges& g : loaded)
    out += "dtrain_serve_model_loaded{" + version_labels(g.model, g.version) + "} 1\n";
  out += "# HELP dtrain_serve_models_loaded Loaded model versions.\n# TYPE dtrain_serve_models_loaded gauge\n";
  out += "dtrain_serve_models_loaded " + std::to_string(loaded.size()) + "\n";
  return out;
}

}  // namespace dtrain::serve
