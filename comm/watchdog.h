#pragma once
// Watchdog: a thread that watches in-flight collectives and, when one is not done within
// `timeout_s`, calls the handler once with what it was and how long it has waited (the handler
// normally prints and aborts the job so no rank hangs). It asks each watched Work every
// timeout_s / 20 (0.05 s to 1 s): a failed NCCL peer shows within a second, not at the timeout.
// A Work waited for on the device (wait_on_device) has no host thread to throw its error: when it
// fails, the handler is called with the error. Joined in the destructor.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "comm/communicator.h"

namespace dtrain {

class Watchdog {
 public:
  // error: "" when `what` did not finish within the timeout, else why it failed.
  using Handler = std::function<void(const std::string& what, double waited_s, const std::string& error)>;
  Watchdog(double timeout_s, Handler on_timeout);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Starts watching `work` (described by `what`, e.g. "allreduce of gradient bucket 2/5").
  // on_device: no host thread waits for it, so an error it ends with calls the handler too.
  void watch(const Work& work, std::string what, bool on_device = false);
  // Waits for `work` (and watches it); past the timeout calls the handler. Returns the seconds
  // spent waiting.
  double wait(const Work& work, const std::string& what);
  // A Work on a device stream (Work::on_device): the compute stream waits for it, the host does
  // not, and the watchdog keeps watching it (on_device). Any other Work: wait().
  double wait_on_device(const Work& work, const std::string& what);
  double timeout_s() const { return timeout_s_; }

 private:
  struct Entry {
    Work work;
    std::string what;
    std::chrono::steady_clock::time_point since;
    bool on_device = false;
  };
  // What the handler is told: the Work's description, how long it was watched, its error (empty
  // for a timeout).
  struct Alarm {
    std::string what;
    double waited_s;
    std::string error;
  };
  void loop();
  // With mu_ held: drops the finished entries; the first failed on-device Work, else the first late
  // one, if any.
  std::optional<Alarm> check(std::chrono::steady_clock::time_point now);
  void fire(const std::string& what, double waited_s, const std::string& error = {});

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
