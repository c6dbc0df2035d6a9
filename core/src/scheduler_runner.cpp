// SchedulerRunner: one thread, each scheduler due every interval.
#include <algorithm>

#include "vessel/log.hpp"
#include "vessel/scheduler.hpp"

namespace vessel {

SchedulerRunner::SchedulerRunner(
    std::vector<std::pair<std::string, std::shared_ptr<Scheduler>>> schedulers,
    SchedulerContext context)
    : schedulers_(std::move(schedulers)), context_(std::move(context)) {}

SchedulerRunner::~SchedulerRunner() { stop(); }

void SchedulerRunner::start() {
  if (schedulers_.empty()) return;
  thread_ = std::thread([this] { loop(); });
}

void SchedulerRunner::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void SchedulerRunner::loop() {
  using Clock = std::chrono::steady_clock;
  if (schedulers_.empty()) return;
  std::vector<Clock::time_point> due;
  for (const auto& [name, s] : schedulers_) due.push_back(Clock::now() + s->interval());
  std::unique_lock lock(mu_);
  while (!stopping_) {
    auto next = *std::min_element(due.begin(), due.end());
    if (cv_.wait_until(lock, next, [this] { return stopping_; })) break;
    for (std::size_t i = 0; i < schedulers_.size(); ++i) {
      if (Clock::now() < due[i]) continue;
      lock.unlock();
      auto r = schedulers_[i].second->runOnce(context_, false);
      if (!r.ok()) {
        log::warn("scheduler run failed",
                  {{"scheduler", schedulers_[i].first}, {"error", r.error().message}});
      }
      lock.lock();
      ++runs_[schedulers_[i].first];
      if (r.ok()) {
        last_summary_[schedulers_[i].first] = r.value();
      } else {
        ++failures_[schedulers_[i].first];
      }
      due[i] = Clock::now() + schedulers_[i].second->interval();
    }
  }
}

}  // namespace vessel

namespace vessel {

std::vector<SchedulerRunner::Stats> SchedulerRunner::stats() const {
  std::lock_guard lock(mu_);
  std::vector<Stats> out;
  for (const auto& [name, s] : schedulers_) {
    Stats st;
    st.name = name;
    if (auto it = runs_.find(name); it != runs_.end()) st.runs = it->second;
    if (auto it = failures_.find(name); it != failures_.end()) st.failures = it->second;
    if (auto it = last_summary_.find(name); it != last_summary_.end()) st.last_summary = it->second;
    out.push_back(std::move(st));
  }
  return out;
}

}  // namespace vessel
