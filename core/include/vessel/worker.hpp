// Workers: threads that claim jobs from PostgreSQL, transcode, and report back.
// Stateless: any number of processes on any machines can share one database
// and one storage.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "vessel/jobs.hpp"
#include "vessel/runtime.hpp"
#include "vessel/storage.hpp"

namespace vessel {

struct WorkerOptions {
  int concurrency = 1;
  std::string conninfo;
  QueueOptions queue;
  std::chrono::seconds heartbeat{5};
  std::chrono::milliseconds idle_poll{2000};  ///< NOTIFY wakes us sooner; polling covers a lost one
  std::chrono::seconds shutdown_grace{20};    ///< after stop(), running jobs get this long
  std::chrono::seconds stall_timeout{60};
  std::string scratch_dir = "/tmp";  ///< where non-local originals are downloaded
};

/// Runs one job end to end (exposed for tests and the remote-worker path):
/// fetch the original, probe, clear partial outputs of an earlier attempt,
/// transcode under the upload's prefix with master.m3u8 last, heartbeat.
/// Returns the outcome or the error to report; `lease_lost` is set when a
/// heartbeat found the lease gone (the caller must not report anything then).
struct JobRunContext {
  Runtime* runtime = nullptr;
  std::shared_ptr<Storage> storage;
  std::chrono::seconds stall_timeout{60};
  std::chrono::seconds heartbeat{5};
  std::string scratch_dir = "/tmp";
  /// Called with progress 0..1 at most every `heartbeat`; return false if the
  /// lease is gone (the run then stops without deleting what it wrote).
  std::function<bool(double)> on_heartbeat;
  const std::atomic<bool>* cancel = nullptr;
};
Result<JobOutcome> runJob(const ClaimedJob& job, const JobRunContext& ctx,
                          bool& lease_lost) noexcept;

class WorkerPool {
 public:
  WorkerPool(Runtime& runtime, std::shared_ptr<Storage> storage, WorkerOptions options);
  ~WorkerPool();

  void start();
  /// Stops claiming at once; running jobs finish, or after shutdown_grace are
  /// cancelled and released back to the queue. Returns immediately.
  void requestStop();
  /// Waits for every thread (call after requestStop()).
  void join();

  std::uint64_t jobsDone() const { return done_.load(); }
  std::uint64_t jobsFailed() const { return failed_.load(); }

 private:
  void threadMain(int index);

  Runtime& runtime_;
  std::shared_ptr<Storage> storage_;
  WorkerOptions options_;
  std::string owner_base_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> cancel_{false};
  std::atomic<std::uint64_t> done_{0}, failed_{0};
  std::thread deadline_thread_;
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
};

}  // namespace vessel
