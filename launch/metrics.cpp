#include "launch/metrics.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/log.h"

namespace dtrain {

void JsonObject::key(const char* k) {
  if (!body_.empty()) body_ += ",";
  body_.append("\"").append(k).append("\":");
}

JsonObject& JsonObject::add(const char* k, const std::string& value) {
  key(k);
  body_ += "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') {
      body_ += '\\';
      body_ += c;
    } else if (c == '\n') {
      body_ += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", c);
      body_ += esc;
    } else {
      body_ += c;
    }
  }
  body_ += "\"";
  return *this;
}

JsonObject& JsonObject::add(const char* k, double value) {
  key(k);
  if (!std::isfinite(value)) {
    body_ += "null";
    return *this;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", value);
  body_ += buf;
  return *this;
}

JsonObject& JsonObject::add(const char* k, int64_t value) {
  key(k);
  body_ += std::to_string(value);
  return *this;
}

MetricsLog::MetricsLog(const std::string& path) : path_(path) {
  file_ = std::fopen(path.c_str(), "a");
  if (!file_) fail("cannot open metrics file ", path, " for appending: ", std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

void MetricsLog::record(const JsonObject& object) {
  if (!file_) return;
  const std::string line = object.str() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0)
    fail("cannot write metrics file ", path_, ": ", std::strerror(errno));
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", static_cast<long>(s / 3600), static_cast<long>(s / 60 % 60));
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", static_cast<long>(s / 60), static_cast<long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lds", static_cast<long>(s));
  return buf;
}

Progress::Progress(const std::string& mode, bool enabled) : enabled_(enabled && mode != "none") {
  bar_ = enabled_ && (mode == "bar" || (mode == "auto" && ::isatty(STDOUT_FILENO)));
}

void Progress::draw(const ProgressStatus& st) {
  constexpr int kWidth = 24;
  const double frac = st.total_steps > 0 ? static_cast<double>(st.step) / static_cast<double>(st.total_steps) : 0.0;
  const int filled = static_cast<int>(frac * kWidth);
  std::string bar(filled, '#');
  bar.resize(kWidth, '.');
  std::printf("\r\033[Kepoch %ld/%ld [%s] step %ld/%ld  loss %.4f  acc %.3f  %.0f %s/s  ETA %s",
              static_cast<long>(st.epoch + 1), static_cast<long>(st.epochs), bar.c_str(), static_cast<long>(st.step),
              static_cast<long>(st.total_steps), st.loss, st.accuracy, st.samples_per_s, st.rate_unit,
              format_duration(st.eta_s).c_str());
  std::fflush(stdout);
  drawn_ = true;
  last_draw_ = std::chrono::steady_clock::now();
}

void Progress::update(const ProgressStatus& st) {
  last_ = st;
  if (!bar_) return;
  if (std::chrono::steady_clock::now() - last_draw_ < std::chrono::milliseconds(100)) return;
  draw(st);
}

void Progress::report(const ProgressStatus& st, double comm_s, double data_wait_s) {
  last_ = st;
  if (!enabled_) return;
  if (bar_) {
    draw(st);
    return;
  }
  log_info("epoch {}/{} step {}/{} loss {:.4f} acc {:.3f} lr {:.4g} {:.0f} {}/s comm {:.3f}s data-wait {:.3f}s ETA {}",
           st.epoch + 1, st.epochs, st.step, st.total_steps, st.loss, st.accuracy, st.lr, st.samples_per_s,
           st.rate_unit, comm_s, data_wait_s, format_duration(st.eta_s));
}

void Progress::message(const std::string& line) {
  if (!enabled_) return;
  if (bar_ && drawn_) {
    std::printf("\r\033[K");
    std::fflush(stdout);
  }
  log_info("{}", line);
  if (bar_ && drawn_) draw(last_);
}

void Progress::finish() {
  if (bar_ && drawn_) {
    draw(last_);
    std::printf("\n");
    std::fflush(stdout);
  }
  drawn_ = false;
}

}  // namespace dtrain
