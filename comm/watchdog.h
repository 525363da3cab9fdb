#pragma once
// Watchdog: a thread that watches in-flight collectives and, when one is not done within
// `timeout_s`, calls the handler once with what it was and how long it has waited (the handler
// normally prints and aborts the job so no rank hangs). Joined in the destructor.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "comm/communicator.h"

namespace dtrain {

class Watchdog {
 public:
  using Handler = std::function<void(const std::string& what, double waited_s)>;
  Watchdog(double timeout_s, Handler on_timeout);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Starts watching `work` (described by `what`, e.g. "allreduce of gradient bucket 2/5").
  void watch(const Work& work, std::string what);
  // Waits for `work` (and watches it); past the timeout calls the handler. Returns the seconds
  // spent waiting.
  double wait(const Work& work, const std::string& what);
  double timeout_s() const { return timeout_s_; }

 private:
  struct Entry {
    Work work;
    std::string what;
    std::chrono::steady_clock::time_point since;
  };
  void loop();
  void fire(const std::string& what, double waited_s);

  double timeout_s_;
  Handler on_timeout_;
  std::atomic<bool> fired_{false};
  std::mutex mu_;  // guards watched_ and stop_
  std::condition_variable cv_;
  std::vector<Entry> watched_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace dtrain
