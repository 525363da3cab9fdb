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

void Watchdog::watch(const Work& work, std::string what, bool on_device) {
  std::lock_guard<std::mutex> lock(mu_);
  watched_.push_back(Entry{work, std::move(what), std::chrono::steady_clock::now(), on_device});
}

double Watchdog::wait(const Work& work, const std::string& what) {
  // Watched as well: a waiter that runs the collective itself (the mpi backend's at-once Works)
  // is inside MPI and cannot time out, so the watchdog thread must.
  if (!work.is_done()) watch(work, what);
  const auto start = Clock::now();
  if (!work.wait(timeout_s_)) fire(what, timeout_s_);
  return seconds_since(start);
}

double Watchdog::wait_on_device(const Work& work, const std::string& what) {
  if (!work.on_device()) return wait(work, what);
  if (work.is_done()) {
    work.wait(0);  // throws its error
    return 0.0;
  }
  watch(work, what, /*on_device=*/true);
  work.wait_on_device();
  return 0.0;
}

void Watchdog::fire(const std::string& what, double waited_s, const std::string& error) {
  if (fired_.exchange(true)) return;
  on_timeout_(what, waited_s, error);
}

std::optional<Watchdog::Alarm> Watchdog::check(std::chrono::steady_clock::time_point now) {
  auto waited = [&](const Entry& e) { return std::chrono::duration<double>(now - e.since).count(); };
  std::optional<Alarm> failed;
  // is_done() asks the backend (an NCCL Work: its event and ncclCommGetAsyncError) on every poll.
  // A failed Work the host waits for reports its own error there; one on a device has no waiter.
  std::erase_if(watched_, [&](const Entry& e) {
    if (!e.work.is_done()) return false;
    if (e.on_device && !failed && !e.work.error().empty()) failed = Alarm{e.what, waited(e), e.work.error()};
    return true;
  });
  if (failed) return failed;
  for (const Entry& e : watched_)
    if (waited(e) > timeout_s_) return Alarm{e.what, waited(e), {}};
  return std::nullopt;
}

void Watchdog::loop() {
  const auto period = std::chrono::duration<double>(std::clamp(timeout_s_ / 20, 0.05, 1.0));
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, period, [&] { return stop_; });
    const auto now = std::chrono::steady_clock::now();
    if (std::optional<Alarm> alarm = check(now)) {
      lock.unlock();  // the list may change while the handler runs
      fire(alarm->what, alarm->waited_s, alarm->error);
      lock.lock();
    }
  }
}

}  // namespace dtrain
