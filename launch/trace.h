#pragma once
// A Chrome-trace recorder (chrome://tracing, ui.perfetto.dev): complete ("X") events with
// microsecond timestamps relative to an origin taken right after a barrier, one process per rank,
// thread 0 for compute (forward, backward, optimizer, data wait), thread 1 for communication.
#include <cstdint>
#include <string>
#include <vector>

#include "core/clock.h"

namespace dtrain {

class Communicator;

class TraceRecorder {
 public:
  enum Lane : int { compute = 0, comm = 1 };

  TraceRecorder() = default;  // disabled: span() does nothing
  TraceRecorder(int rank, Clock::time_point origin, int64_t max_events = 1'000'000);
  bool enabled() const { return enabled_; }
  void span(const std::string& name, Clock::time_point begin, Clock::time_point end, Lane lane = compute,
            int64_t step = -1);
  int64_t size() const { return count_; }

  // Collective: gathers every rank's events to rank 0, which writes the JSON file `path`
  // (atomically: path.tmp, then rename). Throws naming the path on failure.
  void write(Communicator& comm, const std::string& path) const;

 private:
  bool enabled_ = false;
  int rank_ = 0;
  Clock::time_point origin_{};
  int64_t max_events_ = 0;
  bool truncated_ = false;
  std::string events_;  // comma-separated JSON objects
  int64_t count_ = 0;
};

}  // namespace dtrain
