#include "comm/watchdog.h"

#include <algorithm>

#include "core/clock.h"

namespace dtrain {

Watchdog::Watchdog(double timeout_s, Handler on_timeout) : timeout_s_(timeout_s), on_timeout_(std::move(on_timeout)) {
  DTRAIN_CHECK(timeout_s > 0, "comm.timeout must be positive, got ", timeout_s);
  thread_ = std::thread([this] { loop(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Watchdog::watch(const Work& work, std::string what) {
  std::lock_guard<std::mutex> lock(mu_);
  watched_.push_back(Entry{work, std::move(what), std::chrono::steady_clock::now()});
}

double Watchdog::wait(const Work& work, const std::string& what) {
  // Watched as well: a waiter that runs the collective itself (the mpi backend's at-once Works)
  // is inside MPI and cannot time out, so the watchdog thread must.
  if (!work.is_done()) watch(work, what);
  const auto start = Clock::now();
  if (!work.wait(timeout_s_)) fire(what, timeout_s_);
  return seconds_since(start);
}

void Watchdog::fire(const std::string& what, double waited_s) {
  if (fired_.exchange(true)) return;
  on_timeout_(what, waited_s);
}

void Watchdog::loop() {
  const auto period = std::chrono::duration<double>(std::clamp(timeout_s_ / 20, 0.05, 1.0));
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, period, [&] { return stop_; });
    const auto now = std::chrono::steady_clock::now();
    std::erase_if(watched_, [](const Entry& e) { return e.work.is_done(); });
    for (const Entry& e : watched_) {
      const double waited = std::chrono::duration<double>(now - e.since).count();
      if (waited > timeout_s_) {
        const Entry late = e;
        lock.unlock();
        fire(late.what, waited);
        lock.lock();
        break;
      }
    }
  }
}

}  // namespace dtrain
