// The scheduler plugin interface: periodic maintenance (e.g. `cleanup`), and the
// runner that calls each enabled scheduler on its interval.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "vessel/result.hpp"
#include "vessel/storage.hpp"

namespace vessel {

/// What the host gives a scheduler run: where the database and storage are.
struct SchedulerContext {
  std::string conninfo;
  std::shared_ptr<Storage> storage;
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  /// Time between runs (the first run comes one interval after start).
  virtual std::chrono::seconds interval() const noexcept = 0;
  /// One run; `force_dry_run` makes it change nothing whatever its config says.
  /// Returns a one-line JSON summary.
  virtual Result<std::string> runOnce(const SchedulerContext& context,
                                      bool force_dry_run) noexcept = 0;
};

/// Runs schedulers on their intervals on one background thread until stopped.
class SchedulerRunner {
 public:
  SchedulerRunner(std::vector<std::pair<std::string, std::shared_ptr<Scheduler>>> schedulers,
                  SchedulerContext context);
  ~SchedulerRunner();
  void start();
  void stop();

  /// Per scheduler: runs so far, failed runs, the last run's JSON summary.
  struct Stats {
    std::string name;
    std::uint64_t runs = 0, failures = 0;
    std::string last_summary;
  };
  std::vector<Stats> stats() const;

 private:
  void loop();
  std::vector<std::pair<std::string, std::shared_ptr<Scheduler>>> schedulers_;
  SchedulerContext context_;
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::uint64_t> runs_, failures_;
  std::map<std::string, std::string> last_summary_;
  bool stopping_ = false;
};

}  // namespace vessel
