// The durable job queue and upload metadata on PostgreSQL (libpqxx, prepared
// statements only). One JobStore per thread: it owns one connection.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vessel/result.hpp"

namespace vessel {

struct NewUpload {
  std::string user_id;  ///< uuid
  std::string filename;
  std::string content_type;
  std::int64_t size_bytes = 0;
};

struct UploadRecord {
  std::string id;
  std::string user_id;
  std::string storage_key;  ///< key of the original
  std::string filename;
  std::string content_type;
  std::int64_t size_bytes = 0;
  std::string status;  ///< uploading | queued | processing | ready | failed
  std::optional<double> duration_s;
  std::optional<std::string> error;
  std::optional<std::string> title, artist, album;
  double progress = 0;                 ///< of the live or last job
  std::string created_at, updated_at;  ///< ISO 8601
  std::string content_state;           ///< none | receiving | stored (the original's bytes)
  std::string sort_key;                ///< created_at at full precision, for keyset cursors
};

/// One page of a user's library, newest first.
struct LibraryQuery {
  std::string user_id;
  std::string q;       ///< case-insensitive substring of filename, title or artist; "" = all
  std::string status;  ///< "" = any
  int limit = 50;
  /// Keyset position: the sort_key and id of the last item of the previous page.
  std::string after_sort_key, after_id;
};
struct LibraryPage {
  std::vector<UploadRecord> items;
  bool more = false;  ///< another page follows the last item
};

struct ClaimedJob {
  std::int64_t job_id = 0;
  std::int32_t attempt = 0;  ///< 1-based
  std::int32_t max_attempts = 0;
  std::string upload_id;
  std::string user_id;
  std::string storage_key;  ///< the original
  std::string pipeline;
  std::string lease_owner;
};

/// A running job as the remote-worker endpoints see it.
struct RunningJob {
  ClaimedJob job;               ///< lease_owner and attempt as stored
  std::string job_secret_hash;  ///< "" when none was issued
};

/// What a finished transcode tells the store.
struct JobOutcome {
  double duration_s = 0;
  std::string master_key;
  std::map<std::string, std::string>
      probe;  ///< codec, sample_rate, channels, bit_rate, container, title, artist, album
};

struct QueueOptions {
  std::chrono::seconds lease{30};
  std::chrono::seconds backoff_base{5};  ///< attempt n waits base * 2^(n-1) ± 25 % jitter
  std::chrono::seconds backoff_max{600};
  std::int32_t max_attempts = 3;
};

/// Storage key layout shared by every component.
std::string originalKey(const std::string& user_id, const std::string& upload_id);
std::string uploadPrefix(const std::string& user_id, const std::string& upload_id);

class JobStore {
 public:
  static Result<std::unique_ptr<JobStore>> connect(const std::string& conninfo,
                                                   QueueOptions options = {}) noexcept;
  ~JobStore();

  // --- users (the auth plugin owns passwords; this is the minimum the queue needs)
  Result<std::string> createUser(const std::string& email,
                                 const std::string& password_hash) noexcept;
  Result<std::optional<std::string>> findUserByEmail(const std::string& email) noexcept;

  // --- uploads
  /// Inserts an upload in `uploading` and returns it (with its storage key).
  Result<UploadRecord> createUpload(const NewUpload& upload) noexcept;
  /// uploading → queued and a new job, in one transaction, then NOTIFY vessel_jobs.
  /// kInvalidArgument (409 upstream) when the upload is not in `uploading`.
  Result<std::int64_t> enqueue(const std::string& upload_id, const std::string& pipeline) noexcept;
  /// failed → queued with a fresh attempt budget (the retry endpoint).
  Result<std::int64_t> retry(const std::string& upload_id, const std::string& pipeline) noexcept;
  Result<std::optional<UploadRecord>> getUpload(const std::string& upload_id) noexcept;
  Result<void> deleteUpload(const std::string& upload_id) noexcept;
  /// The library listing (keyset-paginated). kInvalidArgument for a bad cursor.
  Result<LibraryPage> listUploads(const LibraryQuery& query) noexcept;
  /// Claims the right to receive the original's bytes: content_state none →
  /// receiving while the upload is `uploading`. kAlreadyExists when the bytes
  /// were already stored (a reused upload URL), kInvalidArgument when another
  /// request is receiving them now or the upload left `uploading`, kNotFound.
  Result<void> beginContent(const std::string& upload_id) noexcept;
  /// receiving → stored (`stored`) or back to none (failed or aborted PUT).
  Result<void> endContent(const std::string& upload_id, bool stored) noexcept;
  /// Cancels the upload's queued or running job (state cancelled, lease
  /// dropped): no one claims it again, and its worker's next heartbeat gets
  /// kCancelled and stops. Returns whether a job was live.
  Result<bool> cancelJobs(const std::string& upload_id) noexcept;

  // --- queue
  /// Claims the next due job (queued and due, or running with an expired lease)
  /// with FOR UPDATE SKIP LOCKED; marks it running with a lease for `owner`,
  /// records the attempt, sets the upload to processing. Jobs whose lease
  /// expired with no attempts left are failed first. nullopt: nothing to do.
  Result<std::optional<ClaimedJob>> claim(const std::string& owner) noexcept;
  /// Extends the lease and records progress; kPermissionDenied if the lease is
  /// no longer ours (the caller must stop work and not complete), kCancelled if
  /// the job was cancelled or deleted (the caller stops and removes its outputs).
  Result<void> heartbeat(const ClaimedJob& job, double progress) noexcept;
  /// Marks succeeded + upload ready (duration, probe fields) in one transaction
  /// that first checks the lease is still ours (kPermissionDenied otherwise).
  Result<void> complete(const ClaimedJob& job, const JobOutcome& outcome) noexcept;
  /// A transient failure with attempts left re-queues with backoff + jitter;
  /// otherwise the job and upload end failed with `error`. Lease checked.
  Result<void> fail(const ClaimedJob& job, const Error& error) noexcept;
  /// Gives a claimed job back untouched (graceful shutdown): queued, due now,
  /// the attempt not counted.
  Result<void> release(const ClaimedJob& job) noexcept;

  // --- operations
  /// A round trip to the database (readiness probes).
  Result<void> ping() noexcept;
  struct QueueStats {
    std::map<std::string, std::int64_t> jobs_by_state;      ///< queued, running, ...
    std::map<std::string, std::int64_t> uploads_by_status;  ///< uploading, ready, ...
    std::int64_t due = 0;             ///< queued and due now (what workers should take)
    double oldest_due_age_s = 0;      ///< how long the oldest due job has waited
    double transcode_seconds_1h = 0;  ///< wall seconds of jobs finished in the last hour
    double audio_seconds_1h = 0;      ///< audio seconds those jobs transcoded
  };
  Result<QueueStats> queueStats() noexcept;

  // --- the change feed (upload_events; live status)
  struct UploadEvent {
    std::int64_t id = 0;
    std::string upload_id;
  };
  /// The user's events after `after_id`, oldest first, at most `limit`.
  Result<std::vector<UploadEvent>> eventsSince(const std::string& user_id, std::int64_t after_id,
                                               std::size_t limit) noexcept;
  /// The id of the user's newest event (0 if none).
  Result<std::int64_t> latestEventId(const std::string& user_id) noexcept;
  /// Deletes events older than `age`; returns how many.
  Result<std::uint64_t> pruneEvents(std::chrono::seconds age) noexcept;

  /// The running job `job_id` (any owner), or nullopt if it is not running.
  Result<std::optional<RunningJob>> runningJob(std::int64_t job_id) noexcept;
  /// Records the hash of the one-time secret handed to a remote worker for this
  /// attempt (lease-checked).
  Result<void> setJobSecretHash(const ClaimedJob& job, const std::string& hash) noexcept;

  /// Blocks until a NOTIFY on vessel_jobs arrives or `timeout` passes.
  Result<bool> waitForWork(std::chrono::milliseconds timeout) noexcept;

  // --- cleanup
  struct CleanupCandidate {
    std::string upload_id;
    std::string user_id;
    std::string status;
  };
  /// Uploads that are failed, or in uploading/queued/processing for longer than
  /// `stale_after` with no live lease; in id order (keyset: ids > `after`), at
  /// most `limit`.
  Result<std::vector<CleanupCandidate>> cleanupCandidates(std::chrono::seconds stale_after,
                                                          std::size_t limit,
                                                          const std::string& after) noexcept;
  /// Takes/releases the cluster-wide cleanup advisory lock (session level).
  Result<bool> tryLockCleanup() noexcept;
  Result<void> unlockCleanup() noexcept;

 private:
  struct Impl;
  explicit JobStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace vessel
