#include "launch/trace.h"

#include <algorithm>
#include <cstdio>

#include "comm/communicator.h"
#include "core/fs.h"
#include "core/log.h"

namespace dtrain {

TraceRecorder::TraceRecorder(int rank, Clock::time_point origin, int64_t max_events)
    : enabled_(true), rank_(rank), origin_(origin), max_events_(max_events) {}

void TraceRecorder::span(const std::string& name, Clock::time_point begin, Clock::time_point end, Lane lane,
                         int64_t step) {
  if (!enabled_) return;
  if (count_ >= max_events_) {
    if (!truncated_) log_warn("trace: more than {} events on this rank; later spans are not recorded", max_events_);
    truncated_ = true;
    return;
  }
  const auto us = [&](Clock::time_point t) { return std::chrono::duration<double, std::micro>(t - origin_).count(); };
  std::string escaped;
  for (char c : name) {
    if (c == '"' || c == '\\') escaped += '\\';
    escaped += c;
  }
  char buf[160];
  std::snprintf(buf, sizeof buf, R"(,"ph":"X","pid":%d,"tid":%d,"ts":%.1f,"dur":%.1f)", rank_, static_cast<int>(lane),
                us(begin), std::max(0.0, us(end) - us(begin)));
  if (count_ > 0) events_ += ",\n";
  events_ += "{\"name\":\"" + escaped + "\",\"cat\":\"" + (lane == comm ? "comm" : "compute") + "\"" + buf;
  if (step >= 0) events_ += ",\"args\":{\"step\":" + std::to_string(step) + "}";
  events_ += "}";
  ++count_;
}

void TraceRecorder::write(Communicator& comm, const std::string& path) const {
  const std::vector<std::string> all = allgather_strings(comm, events_);
  if (comm.rank() != 0) return;
  std::string json = "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
  bool first = true;
  for (int r = 0; r < comm.size(); ++r) {
    json += std::string(first ? "" : ",\n") + R"({"name":"process_name","ph":"M","pid":)" + std::to_string(r) +
            R"(,"args":{"name":"rank )" + std::to_string(r) + "\"}},\n" + R"({"name":"thread_name","ph":"M","pid":)" +
            std::to_string(r) + R"(,"tid":0,"args":{"name":"compute"}},)" + "\n" +
            R"({"name":"thread_name","ph":"M","pid":)" + std::to_string(r) + R"(,"tid":1,"args":{"name":"comm"}})";
    first = false;
    if (!all[r].empty()) json += ",\n" + all[r];
  }
  json += "\n]}\n";
  write_file_atomic(path, json);
  log_info("trace: {} written ({} ranks; open in ui.perfetto.dev or chrome://tracing)", path, comm.size());
}

}  // namespace dtrain
