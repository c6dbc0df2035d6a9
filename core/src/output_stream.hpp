// A GOutputStream that writes into a storage ObjectWriter, so GStreamer sinks
// (hlssink2's giostreamsink) write through the storage plugin instead of files,
// and the pool that commits those writers off the streaming threads.
#pragma once

#include <gio/gio.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "vessel/storage.hpp"

namespace vessel::gst {

/// Called exactly once per stream: at close with the commit's result, or earlier
/// with the first write failure, or at destruction if it was never closed. With a
/// CommitPool it runs on a pool thread, when the commit has finished.
using StreamClosedFn =
    std::function<void(const std::string& key, std::uint64_t bytes, const Result<void>& result)>;

/// Decides, when a stream is released without close(), whether what it holds is
/// complete. hlssink2's giostreamsink never closes its streams: it drops each one
/// when the next fragment starts (after the sink has written every byte of it)
/// and the last one at teardown. The owner clears the flag when the job fails so
/// nothing partial is committed.
using CommitOnRelease = std::shared_ptr<std::atomic<bool>>;

/// A small bounded pool of threads that commit finished objects, so a slow
/// commit (an S3 PUT of a segment) overlaps with encoding the next segment
/// instead of stalling the streaming thread that finished it.
///
/// submit() blocks only while `max_queued` commits already wait for a thread:
/// memory stays bounded (each queued commit holds one object's writer) and a
/// store slower than the encoders slows the encoders down instead of piling up.
/// Threads start on demand, up to `threads`.
class CommitPool {
 public:
  CommitPool(std::size_t threads, std::size_t max_queued);
  /// Waits for every submitted commit, then joins the threads.
  ~CommitPool();
  CommitPool(const CommitPool&) = delete;
  CommitPool& operator=(const CommitPool&) = delete;

  /// Queues `commit`; it runs on a pool thread. Its failure (other than
  /// kCancelled: a discarded object) is what wait() returns first.
  void submit(std::function<Result<void>()> commit);

  /// Blocks until nothing is queued or running; returns the first failure of
  /// any commit so far (ok when none failed).
  Result<void> wait();

 private:
  void run();

  const std::size_t max_threads_;
  const std::size_t max_queued_;
  std::mutex mu_;
  std::condition_variable work_cv_;   // a task was queued, or stopping
  std::condition_variable space_cv_;  // the queue has room
  std::condition_variable idle_cv_;   // nothing queued or running
  std::deque<std::function<Result<void>()>> queue_;
  std::size_t running_ = 0;
  std::size_t idle_threads_ = 0;
  bool stopping_ = false;
  std::optional<Error> first_error_;
  std::vector<std::thread> threads_;
};

/// Returns a new GOutputStream (full reference, caller owns) that buffers writes
/// (64 KiB) into `writer`. close(), or release without close, commits only while
/// `*commit_on_release` is true, and aborts otherwise.
///
/// With `commits` (not owned; must outlive the stream's close or release), the
/// commit runs on that pool: close() returns once the buffered bytes are handed
/// to the writer, and the commit's result reaches `on_closed` (and
/// CommitPool::wait()) later. `*commit_on_release` is checked again right before
/// the commit runs, so an owner that clears it and then waits for the pool knows
/// that nothing it has not seen committed will be. Without a pool the commit
/// runs in the calling thread.
GOutputStream* newStorageOutputStream(std::unique_ptr<ObjectWriter> writer, std::string key,
                                      StreamClosedFn on_closed, CommitOnRelease commit_on_release,
                                      CommitPool* commits = nullptr);

}  // namespace vessel::gst
