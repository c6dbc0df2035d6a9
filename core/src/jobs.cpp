// JobStore: uploads, users and the durable job queue on PostgreSQL (libpqxx 6.4).
//
// Every statement is prepared once per connection and every value is bound; no
// SQL is ever assembled from strings. Each public method is one transaction
// (or one statement), so any number of workers on any number of machines can
// share the database: the row lock taken with FOR UPDATE SKIP LOCKED hands a
// job to exactly one claimer, and every write a worker makes after the claim
// re-checks (id, state, owner, attempt) so a worker that lost its lease can
// never overwrite the work of the one that took over.
#include "vessel/jobs.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <exception>
#include <limits>
#include <optional>
#include <pqxx/pqxx>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vessel {

namespace {

constexpr const char* kChannel = "vessel_jobs";
// Session advisory lock held by whichever process runs storage cleanup; the
// migration lock (database.cpp) uses a different key. "vessel" + 0x0002.
constexpr std::int64_t kCleanupLockKey = 0x76657373656c0002;

// --- statements -------------------------------------------------------------

constexpr const char* kCreateUser = "create_user";
constexpr const char* kCreateUserSql =
    "INSERT INTO users (email, password_hash) VALUES ($1, $2) RETURNING id::text";

constexpr const char* kFindUser = "find_user";
constexpr const char* kFindUserSql = "SELECT id::text FROM users WHERE lower(email) = lower($1)";

// The storage key needs the generated id, so the id is drawn first and both
// columns are written by the one INSERT.
constexpr const char* kCreateUpload = "create_upload";
constexpr const char* kCreateUploadSql =
    "WITH n AS (SELECT gen_random_uuid() AS id) "
    "INSERT INTO uploads (id, user_id, storage_key, filename, content_type, size_bytes) "
    "SELECT n.id, $1::uuid, $1::uuid::text || '/' || n.id::text || '/original',"
    "       $2, $3, $4::bigint "
    "FROM n RETURNING id::text";

// Every upload query returns these columns in this order (readUpload).
#define VESSEL_UPLOAD_COLUMNS                                                                    \
  "u.id::text, u.user_id::text, u.storage_key, u.filename, u.content_type, "                     \
  "u.size_bytes, u.status, u.duration_s, u.error, u.title, u.artist, u.album, "                  \
  "coalesce((SELECT j.progress FROM jobs j WHERE j.upload_id = u.id "                            \
  "          ORDER BY j.id DESC LIMIT 1), 0), " /* Timestamps leave the database as ISO 8601 UTC \
                                                   strings. */                                   \
  "to_char(u.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"               \
  "to_char(u.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "              \
  "u.content_state, u.created_at::text "

constexpr const char* kGetUpload = "get_upload";
constexpr const char* kGetUploadSql =
    "SELECT " VESSEL_UPLOAD_COLUMNS "FROM uploads u WHERE u.id = $1::uuid";

// The library, newest first, keyset-paginated ($3/$4: the last row of the
// previous page). Two statements so that the search one can use the trigram
// index (uploads_search) and the plain one the (user, created_at) index.
constexpr const char* kListUploads = "list_uploads";
constexpr const char* kListUploadsSql =
    "SELECT " VESSEL_UPLOAD_COLUMNS
    "FROM uploads u WHERE u.user_id = $1::uuid AND ($2::text IS NULL OR u.status = $2)"
    "  AND ($3::timestamptz IS NULL OR (u.created_at, u.id) < ($3::timestamptz, $4::uuid)) "
    "ORDER BY u.created_at DESC, u.id DESC LIMIT $5::integer";
constexpr const char* kSearchUploads = "search_uploads";
constexpr const char* kSearchUploadsSql =
    "SELECT " VESSEL_UPLOAD_COLUMNS
    "FROM uploads u WHERE u.user_id = $1::uuid AND ($2::text IS NULL OR u.status = $2)"
    "  AND ($3::timestamptz IS NULL OR (u.created_at, u.id) < ($3::timestamptz, $4::uuid))"
    "  AND lower(u.filename || ' ' || coalesce(u.title, '') || ' ' || coalesce(u.artist, ''))"
    "      LIKE lower($6) "
    "ORDER BY u.created_at DESC, u.id DESC LIMIT $5::integer";

constexpr const char* kBeginContent = "begin_content";
constexpr const char* kBeginContentSql =
    "UPDATE uploads SET content_state = 'receiving', updated_at = now() "
    "WHERE id = $1::uuid AND status = 'uploading' AND content_state = 'none'";
constexpr const char* kContentState = "content_state";
constexpr const char* kContentStateSql =
    "SELECT status, content_state FROM uploads WHERE id = $1::uuid";
constexpr const char* kEndContent = "end_content";
constexpr const char* kEndContentSql =
    "UPDATE uploads SET content_state = $2, updated_at = now() "
    "WHERE id = $1::uuid AND content_state = 'receiving'";

constexpr const char* kCancelJobs = "cancel_jobs";
constexpr const char* kCancelJobsSql =
    "WITH j AS ("
    "  UPDATE jobs SET state = 'cancelled', lease_owner = NULL, lease_expires_at = NULL,"
    "         finished_at = now(), updated_at = now()"
    "  WHERE upload_id = $1::uuid AND state IN ('queued', 'running') RETURNING id, attempts"
    "), a AS ("
    "  UPDATE job_attempts a SET finished_at = now(), outcome = 'cancelled' FROM j"
    "  WHERE a.job_id = j.id AND a.attempt = j.attempts AND a.finished_at IS NULL"
    ") SELECT count(*) FROM j";

// Why a lease check failed: the job is gone or cancelled (the worker must stop
// and remove what it wrote) or someone else holds it now.
constexpr const char* kJobState = "job_state";
constexpr const char* kJobStateSql = "SELECT state FROM jobs WHERE id = $1";

constexpr const char* kRunningJob = "running_job";
constexpr const char* kRunningJobSql =
    "SELECT j.id, j.attempts, j.max_attempts, j.upload_id::text, u.user_id::text,"
    "       u.storage_key, j.pipeline, j.lease_owner, coalesce(u.job_secret_hash, '') "
    "FROM jobs j JOIN uploads u ON u.id = j.upload_id "
    "WHERE j.id = $1 AND j.state = 'running'";

constexpr const char* kEventsSince = "events_since";
constexpr const char* kEventsSinceSql =
    "SELECT id, upload_id::text FROM upload_events WHERE user_id = $1::uuid AND id > $2 "
    "ORDER BY id LIMIT $3";
constexpr const char* kLatestEvent = "latest_event";
constexpr const char* kLatestEventSql =
    "SELECT coalesce(max(id), 0) FROM upload_events WHERE user_id = $1::uuid";
constexpr const char* kPruneEvents = "prune_events";
constexpr const char* kPruneEventsSql =
    "DELETE FROM upload_events WHERE created_at < now() - $1::bigint * interval '1 second'";

constexpr const char* kPing = "ping";
constexpr const char* kPingSql = "SELECT 1";
constexpr const char* kJobsByState = "jobs_by_state";
constexpr const char* kJobsByStateSql = "SELECT state, count(*) FROM jobs GROUP BY state";
constexpr const char* kUploadsByStatus = "uploads_by_status";
constexpr const char* kUploadsByStatusSql = "SELECT status, count(*) FROM uploads GROUP BY status";
constexpr const char* kDueStats = "due_stats";
constexpr const char* kDueStatsSql =
    "SELECT count(*), coalesce(extract(epoch FROM now() - min(run_after)), 0)::double precision "
    "FROM jobs WHERE state = 'queued' AND run_after <= now()";
constexpr const char* kSpeedStats = "speed_stats";
constexpr const char* kSpeedStatsSql =
    "SELECT coalesce(sum(extract(epoch FROM j.finished_at - j.started_at)), 0)::double precision,"
    "       coalesce(sum(u.duration_s), 0)::double precision "
    "FROM jobs j JOIN uploads u ON u.id = j.upload_id "
    "WHERE j.state = 'succeeded' AND j.finished_at > now() - interval '1 hour'";

constexpr const char* kSetSecret = "set_job_secret";
constexpr const char* kSetSecretSql =
    "UPDATE uploads SET job_secret_hash = $4 FROM jobs j "
    "WHERE j.id = $1 AND j.state = 'running' AND j.lease_owner = $2 AND j.attempts = $3::integer"
    "  AND uploads.id = j.upload_id";

constexpr const char* kUploadStatus = "upload_status";
constexpr const char* kUploadStatusSql = "SELECT status FROM uploads WHERE id = $1::uuid";

// Jobs before the upload: every other writer locks a job row before its upload
// row, so deleting in the same order cannot deadlock with a claim or complete.
constexpr const char* kDeleteJobs = "delete_jobs";
constexpr const char* kDeleteJobsSql = "DELETE FROM jobs WHERE upload_id = $1::uuid";
constexpr const char* kDeleteUpload = "delete_upload";
constexpr const char* kDeleteUploadSql = "DELETE FROM uploads WHERE id = $1::uuid";

// uploading → queued (enqueue) or failed → queued (retry).
constexpr const char* kQueueUpload = "queue_upload";
constexpr const char* kQueueUploadSql =
    "UPDATE uploads SET status = 'queued', error = NULL, updated_at = now() "
    "WHERE id = $1::uuid AND status = $2";

constexpr const char* kInsertJob = "insert_job";
constexpr const char* kInsertJobSql =
    "INSERT INTO jobs (upload_id, pipeline, max_attempts) VALUES ($1::uuid, $2, $3::integer) "
    "RETURNING id";

// Delivered by PostgreSQL when the enclosing transaction commits, not before.
constexpr const char* kNotify = "notify";
constexpr const char* kNotifySql = "SELECT pg_notify('vessel_jobs', $1::text)";

// Expired leases with no attempts left can never be claimed again: fail them
// (and their uploads) before looking for work. SKIP LOCKED: a row some other
// session holds is being handled by it.
constexpr const char* kReapExpired = "reap_expired";
constexpr const char* kReapExpiredSql =
    "WITH dead AS ("
    "  UPDATE jobs SET state = 'failed', finished_at = now(), updated_at = now(),"
    "         last_error = coalesce(last_error || '; ', '') || 'lease expired after ' ||"
    "                      attempts || ' attempt(s) (last worker ' ||"
    "                      coalesce(lease_owner, '?') || ')',"
    "         lease_owner = NULL, lease_expires_at = NULL"
    "  WHERE id IN (SELECT id FROM jobs WHERE state = 'running' AND lease_expires_at < now()"
    "               AND attempts >= max_attempts FOR UPDATE SKIP LOCKED)"
    "  RETURNING id, upload_id, attempts"
    "), closed AS ("
    "  UPDATE job_attempts a SET finished_at = now(), outcome = 'lease_expired' FROM dead"
    "  WHERE a.job_id = dead.id AND a.attempt = dead.attempts AND a.finished_at IS NULL"
    ") "
    "UPDATE uploads u SET status = 'failed', updated_at = now(),"
    "       error = 'processing stopped: the worker lease expired after ' || dead.attempts ||"
    "               ' attempt(s)' "
    "FROM dead WHERE u.id = dead.upload_id";

// One statement: pick (skipping rows other claimers hold), lease, log the
// attempt, close the attempt whose lease expired, mark the upload processing.
// An expired lease is taken before queued work (it has waited longest). The
// two candidates are separate index scans under one LIMIT rather than one OR:
// the OR form sorts every due job on each claim (17 ms with a 20k backlog, vs
// 0.2 ms), and the second scan does not run, nor lock, when the first finds one.
constexpr const char* kClaim = "claim";
constexpr const char* kClaimSql =
    "WITH c AS ("
    "  SELECT * FROM (SELECT id, state AS prev_state, attempts AS prev_attempt FROM jobs"
    "                 WHERE state = 'running' AND lease_expires_at < now()"
    "                   AND attempts < max_attempts"
    "                 ORDER BY lease_expires_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) expired"
    "  UNION ALL"
    "  SELECT * FROM (SELECT id, state, attempts FROM jobs"
    "                 WHERE state = 'queued' AND run_after <= now()"
    "                 ORDER BY run_after, id LIMIT 1 FOR UPDATE SKIP LOCKED) due"
    "  LIMIT 1"
    "), j AS ("
    "  UPDATE jobs SET state = 'running', attempts = jobs.attempts + 1, lease_owner = $1::text,"
    "         lease_expires_at = now() + $2::integer * interval '1 second',"
    "         started_at = now(), updated_at = now(), progress = 0"
    "  FROM c WHERE jobs.id = c.id"
    "  RETURNING jobs.id, jobs.attempts, jobs.max_attempts, jobs.upload_id, jobs.pipeline,"
    "            c.prev_state, c.prev_attempt"
    "), closed AS ("
    "  UPDATE job_attempts a SET finished_at = now(), outcome = 'lease_expired' FROM j"
    "  WHERE j.prev_state = 'running' AND a.job_id = j.id AND a.attempt = j.prev_attempt"
    "    AND a.finished_at IS NULL"
    "), logged AS ("
    "  INSERT INTO job_attempts (job_id, attempt, worker) SELECT id, attempts, $1::text FROM j"
    "), u AS ("
    "  UPDATE uploads SET status = 'processing', updated_at = now() FROM j"
    "  WHERE uploads.id = j.upload_id RETURNING uploads.user_id, uploads.storage_key"
    ") "
    "SELECT j.id, j.attempts, j.max_attempts, j.upload_id::text, u.user_id::text,"
    "       u.storage_key, j.pipeline FROM j, u";

constexpr const char* kHeartbeat = "heartbeat";
constexpr const char* kHeartbeatSql =
    "UPDATE jobs SET lease_expires_at = now() + $4::integer * interval '1 second',"
    "       progress = $5::double precision, updated_at = now() "
    "WHERE id = $1 AND state = 'running' AND lease_owner = $2 AND attempts = $3::integer";

// The lease check every finishing write starts with; the row lock it takes
// keeps a concurrent claimer out until this transaction ends.
constexpr const char* kLockLease = "lock_lease";
constexpr const char* kLockLeaseSql =
    "SELECT upload_id::text, max_attempts FROM jobs "
    "WHERE id = $1 AND state = 'running' AND lease_owner = $2 AND attempts = $3::integer "
    "FOR UPDATE";

constexpr const char* kComplete = "complete";
constexpr const char* kCompleteSql =
    "WITH j AS ("
    "  UPDATE jobs SET state = 'succeeded', progress = 1, finished_at = now(), updated_at = now(),"
    "         lease_owner = NULL, lease_expires_at = NULL"
    "  WHERE id = $1 RETURNING id, upload_id"
    "), a AS ("
    "  UPDATE job_attempts SET finished_at = now(), outcome = 'succeeded'"
    "  WHERE job_id = $1 AND attempt = $2::integer"
    ") "
    "UPDATE uploads SET status = 'ready', duration_s = $3::double precision, error = NULL,"
    "       codec = $4, sample_rate = $5::integer, channels = $6::integer,"
    "       bit_rate = $7::bigint, container = $8, title = $9, artist = $10, album = $11,"
    "       job_secret_hash = NULL, updated_at = now() "
    "FROM j WHERE uploads.id = j.upload_id";

constexpr const char* kRequeue = "requeue";
constexpr const char* kRequeueSql =
    "WITH j AS ("
    "  UPDATE jobs SET state = 'queued', run_after = now() + $3::bigint * interval '1 millisecond',"
    "         lease_owner = NULL, lease_expires_at = NULL, progress = 0, last_error = $4,"
    "         updated_at = now()"
    "  WHERE id = $1 RETURNING upload_id"
    "), a AS ("
    "  UPDATE job_attempts SET finished_at = now(), outcome = 'retry'"
    "  WHERE job_id = $1 AND attempt = $2::integer"
    ") "
    "UPDATE uploads SET status = 'queued', updated_at = now() "
    "FROM j WHERE uploads.id = j.upload_id";

constexpr const char* kFailJob = "fail_job";
constexpr const char* kFailJobSql =
    "WITH j AS ("
    "  UPDATE jobs SET state = 'failed', finished_at = now(), updated_at = now(),"
    "         lease_owner = NULL, lease_expires_at = NULL, last_error = $3"
    "  WHERE id = $1 RETURNING upload_id"
    "), a AS ("
    "  UPDATE job_attempts SET finished_at = now(), outcome = 'failed'"
    "  WHERE job_id = $1 AND attempt = $2::integer"
    ") "
    "UPDATE uploads SET status = 'failed', error = $4, updated_at = now() "
    "FROM j WHERE uploads.id = j.upload_id";

// The attempt is given back, so its log row goes too: the next claim reuses
// the number (job_attempts is keyed by it).
constexpr const char* kRelease = "release";
constexpr const char* kReleaseSql =
    "WITH j AS ("
    "  UPDATE jobs SET state = 'queued', run_after = now(), attempts = attempts - 1,"
    "         lease_owner = NULL, lease_expires_at = NULL, progress = 0, updated_at = now()"
    "  WHERE id = $1 RETURNING upload_id"
    "), a AS ("
    "  DELETE FROM job_attempts WHERE job_id = $1 AND attempt = $2::integer"
    ") "
    "UPDATE uploads SET status = 'queued', updated_at = now() "
    "FROM j WHERE uploads.id = j.upload_id";

constexpr const char* kCleanup = "cleanup_candidates";
constexpr const char* kCleanupSql =
    "SELECT u.id::text, u.user_id::text, u.status FROM uploads u "
    "WHERE (u.status = 'failed'"
    "       OR (u.status IN ('uploading', 'queued', 'processing')"
    "           AND u.updated_at < now() - $1::bigint * interval '1 second'"
    "           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.upload_id = u.id"
    "                           AND j.state = 'running' AND j.lease_expires_at > now())))"
    "  AND ($3::uuid IS NULL OR u.id > $3::uuid) "
    "ORDER BY u.id LIMIT $2::bigint";

constexpr const char* kTryLock = "try_lock_cleanup";
constexpr const char* kTryLockSql = "SELECT pg_try_advisory_lock($1::bigint)";
constexpr const char* kUnlock = "unlock_cleanup";
constexpr const char* kUnlockSql = "SELECT pg_advisory_unlock($1::bigint)";

constexpr std::pair<const char*, const char*> kStatements[] = {
    {kCreateUser, kCreateUserSql},
    {kFindUser, kFindUserSql},
    {kCreateUpload, kCreateUploadSql},
    {kGetUpload, kGetUploadSql},
    {kListUploads, kListUploadsSql},
    {kSearchUploads, kSearchUploadsSql},
    {kBeginContent, kBeginContentSql},
    {kContentState, kContentStateSql},
    {kEndContent, kEndContentSql},
    {kCancelJobs, kCancelJobsSql},
    {kJobState, kJobStateSql},
    {kRunningJob, kRunningJobSql},
    {kSetSecret, kSetSecretSql},
    {kPing, kPingSql},
    {kJobsByState, kJobsByStateSql},
    {kUploadsByStatus, kUploadsByStatusSql},
    {kDueStats, kDueStatsSql},
    {kSpeedStats, kSpeedStatsSql},
    {kEventsSince, kEventsSinceSql},
    {kLatestEvent, kLatestEventSql},
    {kPruneEvents, kPruneEventsSql},
    {kUploadStatus, kUploadStatusSql},
    {kDeleteJobs, kDeleteJobsSql},
    {kDeleteUpload, kDeleteUploadSql},
    {kQueueUpload, kQueueUploadSql},
    {kInsertJob, kInsertJobSql},
    {kNotify, kNotifySql},
    {kReapExpired, kReapExpiredSql},
    {kClaim, kClaimSql},
    {kHeartbeat, kHeartbeatSql},
    {kLockLease, kLockLeaseSql},
    {kComplete, kCompleteSql},
    {kRequeue, kRequeueSql},
    {kFailJob, kFailJobSql},
    {kRelease, kReleaseSql},
    {kCleanup, kCleanupSql},
    {kTryLock, kTryLockSql},
    {kUnlock, kUnlockSql},
};

// --- helpers ----------------------------------------------------------------

// The canonical text form PostgreSQL prints (8-4-4-4-12 hex). Checked before a
// value reaches a ::uuid cast so that a malformed id from a URL is "not found"
// or "invalid argument", not an SQL error.
bool isUuid(std::string_view s) noexcept {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

Error invalid(std::string message) {
  return makeError(ErrorCode::kInvalidArgument, "jobs: " + std::move(message));
}

const std::string* probeValue(const JobOutcome& outcome, const char* key) {
  const auto it = outcome.probe.find(key);
  if (it == outcome.probe.end() || it->second.empty()) return nullptr;
  return &it->second;
}

// Text probe field → bound parameter (nullptr binds SQL NULL).
const char* textParam(const JobOutcome& outcome, const char* key) {
  const std::string* v = probeValue(outcome, key);
  return v ? v->c_str() : nullptr;
}

// Integer probe field → its decimal text, or NULL when absent or not an
// integer (a probe reporting "44.1 kHz" must not fail the whole job).
std::optional<std::string> integerParam(const JobOutcome& outcome, const char* key) {
  const std::string* v = probeValue(outcome, key);
  if (!v) return std::nullopt;
  std::int64_t n = 0;
  const char* end = v->data() + v->size();
  const auto [ptr, ec] = std::from_chars(v->data(), end, n);
  if (ec != std::errc{} || ptr != end || n < 0) return std::nullopt;
  if (key != std::string_view("bit_rate") && n > std::numeric_limits<std::int32_t>::max()) {
    return std::nullopt;
  }
  return std::to_string(n);
}

Error leaseLost(const char* what, const ClaimedJob& job) {
  return makeError(ErrorCode::kPermissionDenied,
                   std::string("jobs: ") + what + ": lease lost on job " +
                       std::to_string(job.job_id) + " attempt " + std::to_string(job.attempt) +
                       " (owner " + job.lease_owner + ")");
}

const char* cstr(const std::optional<std::string>& v) { return v ? v->c_str() : nullptr; }

std::optional<std::string> optText(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<std::string>();
}

// One row of VESSEL_UPLOAD_COLUMNS.
UploadRecord readUpload(const pqxx::row& row) {
  UploadRecord u;
  u.id = row[0].as<std::string>();
  u.user_id = row[1].as<std::string>();
  u.storage_key = row[2].as<std::string>();
  u.filename = row[3].as<std::string>();
  u.content_type = row[4].as<std::string>();
  u.size_bytes = row[5].as<std::int64_t>();
  u.status = row[6].as<std::string>();
  if (!row[7].is_null()) u.duration_s = row[7].as<double>();
  u.error = optText(row[8]);
  u.title = optText(row[9]);
  u.artist = optText(row[10]);
  u.album = optText(row[11]);
  u.progress = row[12].as<double>();
  u.created_at = row[13].as<std::string>();
  u.updated_at = row[14].as<std::string>();
  u.content_state = row[15].as<std::string>();
  u.sort_key = row[16].as<std::string>();
  return u;
}

// LIKE pattern for a substring (the SQL lowers it): the user's text is literal.
std::string likePattern(std::string_view q) {
  std::string out = "%";
  for (char c : q) {
    if (c == '%' || c == '_' || c == '\\') out += '\\';
    out += c;
  }
  out += '%';
  return out;
}

}  // namespace

std::string originalKey(const std::string& user_id, const std::string& upload_id) {
  return user_id + "/" + upload_id + "/original";
}

std::string uploadPrefix(const std::string& user_id, const std::string& upload_id) {
  return user_id + "/" + upload_id + "/";
}

// --- Impl -------------------------------------------------------------------

struct JobStore::Impl {
  // Sets a flag on NOTIFY vessel_jobs. Registering it issues the LISTEN, and
  // libpqxx re-issues it if it ever restores the session by itself.
  class WakeReceiver final : public pqxx::notification_receiver {
   public:
    WakeReceiver(pqxx::connection_base& c, bool& woken)
        : pqxx::notification_receiver(c, kChannel), woken_(woken) {}
    void operator()(const std::string& /*payload*/, int /*backend_pid*/) override { woken_ = true; }

   private:
    bool& woken_;
  };

  std::string conninfo;
  QueueOptions options;
  // `conn` is declared first so that `receiver`, which unregisters itself
  // from the connection in its destructor, is destroyed before it.
  std::unique_ptr<pqxx::connection> conn;
  std::unique_ptr<WakeReceiver> receiver;
  bool woken = false;
  bool broken = false;  // the last call lost the connection: reconnect first
  bool connected_before = false;
  std::mt19937_64 rng{std::random_device{}()};

  void open() {
    receiver.reset();
    conn.reset();
    auto c = std::make_unique<pqxx::connection>(conninfo);
    for (const auto& [name, sql] : kStatements) c->prepare(name, sql);
    receiver = std::make_unique<WakeReceiver>(*c, woken);
    conn = std::move(c);
    broken = false;
    // After a reconnect, NOTIFYs sent while we were away are lost: report
    // work once so the caller claims instead of sleeping through it.
    woken = connected_before;
    connected_before = true;
  }

  void ensureOpen() {
    if (broken || !conn || !conn->is_open()) open();
  }

  // Runs `body` against a live connection and turns every exception into an
  // Error, so that no exception leaves the store.
  template <typename F>
  auto guarded(const char* what, F&& body) noexcept -> decltype(body()) {
    const auto where = [what] { return std::string("jobs: ") + what + ": "; };
    try {
      ensureOpen();
      return body();
    } catch (const pqxx::broken_connection& e) {
      broken = true;
      return makeError(ErrorCode::kUnavailable,
                       where() + "database connection lost: " + trimmed(e.what()));
    } catch (const pqxx::in_doubt_error& e) {
      broken = true;
      return makeError(
          ErrorCode::kUnavailable,
          where() + "connection lost during commit, outcome unknown: " + trimmed(e.what()));
    } catch (const pqxx::transaction_rollback& e) {
      // Deadlock or serialization failure: retrying the call may succeed.
      return makeError(ErrorCode::kUnavailable, where() + trimmed(e.what()));
    } catch (const pqxx::sql_error& e) {
      const std::string& state = e.sqlstate();
      // Class 08 (connection exception), 57P01-03 (server shutting down).
      if (state.rfind("08", 0) == 0 || state == "57P01" || state == "57P02" || state == "57P03") {
        broken = true;
        return makeError(ErrorCode::kUnavailable,
                         where() + trimmed(e.what()) + " (SQLSTATE " + state + ")");
      }
      if (state == "40001" || state == "40P01" || state == "55P03") {
        return makeError(ErrorCode::kUnavailable,
                         where() + trimmed(e.what()) + " (SQLSTATE " + state + ")");
      }
      return makeError(ErrorCode::kInternal,
                       where() + trimmed(e.what()) + " (SQLSTATE " + state + ")");
    } catch (const std::exception& e) {
      return makeError(ErrorCode::kInternal, where() + trimmed(e.what()));
    } catch (...) {
      return makeError(ErrorCode::kInternal, where() + "unknown exception");
    }
  }

  // A transient failure waits base * 2^(attempt-1), capped, then ±25 % so that
  // jobs failed together by one outage do not all come back at the same moment.
  std::int64_t backoffMillis(std::int32_t attempt) {
    const double base_ms = static_cast<double>(options.backoff_base.count()) * 1000.0;
    const double max_ms = static_cast<double>(options.backoff_max.count()) * 1000.0;
    const double exp = std::ldexp(1.0, std::clamp(attempt - 1, 0, 62));
    const double capped = std::min(base_ms * exp, max_ms);
    std::uniform_real_distribution<double> jitter(0.75, 1.25);
    return static_cast<std::int64_t>(std::llround(capped * jitter(rng)));
  }

  // Queues a new job for an upload in `from` state; enqueue and retry.
  Result<std::int64_t> queue(const char* what, const std::string& upload_id,
                             const std::string& pipeline, const char* from) noexcept {
    if (pipeline.empty()) return invalid(std::string(what) + ": empty pipeline name");
    if (!isUuid(upload_id)) {
      return makeError(ErrorCode::kNotFound,
                       std::string("jobs: ") + what + ": no upload " + upload_id);
    }
    return guarded(what, [&]() -> Result<std::int64_t> {
      pqxx::work txn(*conn);
      const pqxx::result moved = txn.exec_prepared(kQueueUpload, upload_id, from);
      if (moved.affected_rows() == 0) {
        const pqxx::result now = txn.exec_prepared(kUploadStatus, upload_id);
        if (now.empty()) {
          return makeError(ErrorCode::kNotFound,
                           std::string("jobs: ") + what + ": no upload " + upload_id);
        }
        return invalid(std::string(what) + ": upload " + upload_id + " is not in " + from +
                       " (it is " + now[0][0].as<std::string>() + ")");
      }
      std::int64_t job_id = 0;
      try {
        const pqxx::result job =
            txn.exec_prepared(kInsertJob, upload_id, pipeline, options.max_attempts);
        job_id = job[0][0].as<std::int64_t>();
      } catch (const pqxx::unique_violation&) {
        return invalid(std::string(what) + ": upload " + upload_id + " already has a live job");
      }
      txn.exec_prepared(kNotify, std::to_string(job_id));
      txn.commit();
      return job_id;
    });
  }

  // The lease check that starts complete/fail/release: locks the job row in
  // `txn` if the lease is still `job`'s and returns max_attempts; otherwise
  // kPermissionDenied (the caller returns, `txn` aborts, nothing is written).
  Result<std::int32_t> lockLease(pqxx::work& txn, const ClaimedJob& job, const char* what) {
    const pqxx::result r = txn.exec_prepared(kLockLease, job.job_id, job.lease_owner, job.attempt);
    if (r.empty()) return lostOrCancelled(txn, what, job);
    return r[0][1].as<std::int32_t>();
  }

  // After a lease check found nothing: kCancelled if the job was cancelled or
  // deleted (its upload is being removed), else kPermissionDenied (taken over).
  Error lostOrCancelled(pqxx::transaction_base& txn, const char* what, const ClaimedJob& job) {
    const pqxx::result r = txn.exec_prepared(kJobState, job.job_id);
    if (r.empty() || r[0][0].as<std::string>() == "cancelled") {
      return makeError(ErrorCode::kCancelled, std::string("jobs: ") + what + ": job " +
                                                  std::to_string(job.job_id) +
                                                  " was cancelled (its upload is being deleted)");
    }
    return leaseLost(what, job);
  }
};

// --- JobStore ---------------------------------------------------------------

JobStore::JobStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
JobStore::~JobStore() = default;

Result<std::unique_ptr<JobStore>> JobStore::connect(const std::string& conninfo,
                                                    QueueOptions options) noexcept {
  if (options.lease.count() < 1) {
    return makeError(ErrorCode::kConfig, "jobs: lease must be at least 1 s");
  }
  if (options.max_attempts < 1) {
    return makeError(ErrorCode::kConfig, "jobs: max_attempts must be at least 1");
  }
  if (options.backoff_base.count() < 0 || options.backoff_max < options.backoff_base) {
    return makeError(ErrorCode::kConfig,
                     "jobs: backoff_base must be >= 0 and backoff_max >= backoff_base");
  }
  try {
    auto impl = std::make_unique<Impl>();
    impl->conninfo = conninfo;
    impl->options = options;
    Result<void> opened = impl->guarded("connect", [] { return Result<void>(); });
    if (!opened) return std::move(opened).error();
    return std::unique_ptr<JobStore>(new JobStore(std::move(impl)));
  } catch (const std::exception& e) {
    return makeError(ErrorCode::kInternal, std::string("jobs: connect: ") + e.what());
  }
}

Result<std::string> JobStore::createUser(const std::string& email,
                                         const std::string& password_hash) noexcept {
  if (email.empty()) return invalid("createUser: empty email");
  return impl_->guarded("createUser", [&]() -> Result<std::string> {
    pqxx::work txn(*impl_->conn);
    std::string id;
    try {
      id = txn.exec_prepared(kCreateUser, email, password_hash)[0][0].as<std::string>();
    } catch (const pqxx::unique_violation&) {
      return makeError(ErrorCode::kAlreadyExists,
                       "jobs: createUser: a user with email " + email + " already exists");
    }
    txn.commit();
    return id;
  });
}

Result<std::optional<std::string>> JobStore::findUserByEmail(const std::string& email) noexcept {
  return impl_->guarded("findUserByEmail", [&]() -> Result<std::optional<std::string>> {
    pqxx::nontransaction txn(*impl_->conn);
    const pqxx::result r = txn.exec_prepared(kFindUser, email);
    if (r.empty()) return std::optional<std::string>();
    return std::optional<std::string>(r[0][0].as<std::string>());
  });
}

Result<UploadRecord> JobStore::createUpload(const NewUpload& upload) noexcept {
  if (!isUuid(upload.user_id)) return invalid("createUpload: bad user id " + upload.user_id);
  if (upload.size_bytes < 0) return invalid("createUpload: negative size");
  Result<std::string> created = impl_->guarded("createUpload", [&]() -> Result<std::string> {
    pqxx::work txn(*impl_->conn);
    std::string id;
    try {
      id = txn.exec_prepared(kCreateUpload, upload.user_id, upload.filename, upload.content_type,
                             upload.size_bytes)[0][0]
               .as<std::string>();
    } catch (const pqxx::foreign_key_violation&) {
      return makeError(ErrorCode::kNotFound, "jobs: createUpload: no user " + upload.user_id);
    }
    txn.commit();
    return id;
  });
  if (!created) return std::move(created).error();
  Result<std::optional<UploadRecord>> record = getUpload(created.value());
  if (!record) return std::move(record).error();
  if (!record.value()) {
    // Only a concurrent deleteUpload between the two calls gets here.
    return makeError(ErrorCode::kNotFound,
                     "jobs: createUpload: upload " + created.value() + " vanished");
  }
  return std::move(*record.value());
}

Result<std::int64_t> JobStore::enqueue(const std::string& upload_id,
                                       const std::string& pipeline) noexcept {
  return impl_->queue("enqueue", upload_id, pipeline, "uploading");
}

Result<std::int64_t> JobStore::retry(const std::string& upload_id,
                                     const std::string& pipeline) noexcept {
  return impl_->queue("retry", upload_id, pipeline, "failed");
}

Result<std::optional<UploadRecord>> JobStore::getUpload(const std::string& upload_id) noexcept {
  if (!isUuid(upload_id)) return std::optional<UploadRecord>();
  return impl_->guarded("getUpload", [&]() -> Result<std::optional<UploadRecord>> {
    pqxx::nontransaction txn(*impl_->conn);
    const pqxx::result r = txn.exec_prepared(kGetUpload, upload_id);
    if (r.empty()) return std::optional<UploadRecord>();
    UploadRecord u = readUpload(r[0]);
    return std::optional<UploadRecord>(std::move(u));
  });
}

Result<void> JobStore::deleteUpload(const std::string& upload_id) noexcept {
  if (!isUuid(upload_id)) {
    return makeError(ErrorCode::kNotFound, "jobs: deleteUpload: no upload " + upload_id);
  }
  return impl_->guarded("deleteUpload", [&]() -> Result<void> {
    pqxx::work txn(*impl_->conn);
    txn.exec_prepared(kDeleteJobs, upload_id);
    if (txn.exec_prepared(kDeleteUpload, upload_id).affected_rows() == 0) {
      return makeError(ErrorCode::kNotFound, "jobs: deleteUpload: no upload " + upload_id);
    }
    txn.commit();
    return {};
  });
}

Result<LibraryPage> JobStore::listUploads(const LibraryQuery& query) noexcept {
  if (!isUuid(query.user_id)) return invalid("listUploads: bad user id");
  if (query.limit < 1 || query.limit > 1000) return invalid("listUploads: limit must be 1..1000");
  if (query.after_sort_key.empty() != query.after_id.empty() ||
      (!query.after_id.empty() && !isUuid(query.after_id))) {
    return invalid("listUploads: bad cursor");
  }
  return impl_->guarded("listUploads", [&]() -> Result<LibraryPage> {
    pqxx::nontransaction txn(*impl_->conn);
    const char* status = query.status.empty() ? nullptr : query.status.c_str();
    const char* after = query.after_sort_key.empty() ? nullptr : query.after_sort_key.c_str();
    const char* after_id = query.after_id.empty() ? nullptr : query.after_id.c_str();
    // One extra row tells whether another page follows.
    const int fetch = query.limit + 1;
    pqxx::result r;
    try {
      r = query.q.empty()
              ? txn.exec_prepared(kListUploads, query.user_id, status, after, after_id, fetch)
              : txn.exec_prepared(kSearchUploads, query.user_id, status, after, after_id, fetch,
                                  likePattern(query.q));
    } catch (const pqxx::data_exception&) {
      return invalid("listUploads: bad cursor");  // an unparseable timestamp
    }
    LibraryPage page;
    for (const pqxx::row& row : r) {
      if (static_cast<int>(page.items.size()) == query.limit) {
        page.more = true;
        break;
      }
      page.items.push_back(readUpload(row));
    }
    return page;
  });
}

Result<void> JobStore::beginContent(const std::string& upload_id) noexcept {
  if (!isUuid(upload_id)) return makeError(ErrorCode::kNotFound, "jobs: no upload " + upload_id);
  return impl_->guarded("beginContent", [&]() -> Result<void> {
    pqxx::work txn(*impl_->conn);
    if (txn.exec_prepared(kBeginContent, upload_id).affected_rows() == 1) {
      txn.commit();
      return {};
    }
    const pqxx::result r = txn.exec_prepared(kContentState, upload_id);
    if (r.empty()) return makeError(ErrorCode::kNotFound, "jobs: no upload " + upload_id);
    const std::string status = r[0][0].as<std::string>(), content = r[0][1].as<std::string>();
    if (content == "stored") {
      return makeError(ErrorCode::kAlreadyExists, "the upload's content was already received");
    }
    if (content == "receiving") {
      return invalid("another request is uploading this content right now");
    }
    return invalid("the upload is " + status + ", not uploading");
  });
}

Result<void> JobStore::endContent(const std::string& upload_id, bool stored) noexcept {
  if (!isUuid(upload_id)) return makeError(ErrorCode::kNotFound, "jobs: no upload " + upload_id);
  return impl_->guarded("endContent", [&]() -> Result<void> {
    pqxx::nontransaction txn(*impl_->conn);
    if (txn.exec_prepared(kEndContent, upload_id, stored ? "stored" : "none").affected_rows() ==
        0) {
      return makeError(ErrorCode::kNotFound,
                       "jobs: upload " + upload_id + " is no longer receiving content");
    }
    return {};
  });
}

Result<bool> JobStore::cancelJobs(const std::string& upload_id) noexcept {
  if (!isUuid(upload_id)) return false;
  return impl_->guarded("cancelJobs", [&]() -> Result<bool> {
    pqxx::work txn(*impl_->conn);
    const bool any = txn.exec_prepared(kCancelJobs, upload_id)[0][0].as<std::int64_t>() > 0;
    txn.commit();
    return any;
  });
}

Result<std::vector<JobStore::UploadEvent>> JobStore::eventsSince(const std::string& user_id,
                                                                 std::int64_t after_id,
                                                                 std::size_t limit) noexcept {
  if (!isUuid(user_id)) return invalid("eventsSince: bad user id");
  return impl_->guarded("eventsSince", [&]() -> Result<std::vector<UploadEvent>> {
    pqxx::nontransaction txn(*impl_->conn);
    std::vector<UploadEvent> out;
    for (const pqxx::row& row :
         txn.exec_prepared(kEventsSince, user_id, after_id,
                           static_cast<std::int64_t>(std::min<std::size_t>(limit, 100000)))) {
      out.push_back(UploadEvent{row[0].as<std::int64_t>(), row[1].as<std::string>()});
    }
    return out;
  });
}

Result<void> JobStore::ping() noexcept {
  return impl_->guarded("ping", [&]() -> Result<void> {
    pqxx::nontransaction txn(*impl_->conn);
    txn.exec_prepared(kPing);
    return {};
  });
}

Result<JobStore::QueueStats> JobStore::queueStats() noexcept {
  return impl_->guarded("queueStats", [&]() -> Result<QueueStats> {
    pqxx::nontransaction txn(*impl_->conn);
    QueueStats st;
    for (const pqxx::row& row : txn.exec_prepared(kJobsByState)) {
      st.jobs_by_state[row[0].as<std::string>()] = row[1].as<std::int64_t>();
    }
    for (const pqxx::row& row : txn.exec_prepared(kUploadsByStatus)) {
      st.uploads_by_status[row[0].as<std::string>()] = row[1].as<std::int64_t>();
    }
    const pqxx::row due = txn.exec_prepared(kDueStats)[0];
    st.due = due[0].as<std::int64_t>();
    st.oldest_due_age_s = due[1].as<double>();
    const pqxx::row speed = txn.exec_prepared(kSpeedStats)[0];
    st.transcode_seconds_1h = speed[0].as<double>();
    st.audio_seconds_1h = speed[1].as<double>();
    return st;
  });
}

Result<std::int64_t> JobStore::latestEventId(const std::string& user_id) noexcept {
  if (!isUuid(user_id)) return invalid("latestEventId: bad user id");
  return impl_->guarded("latestEventId", [&]() -> Result<std::int64_t> {
    pqxx::nontransaction txn(*impl_->conn);
    return txn.exec_prepared(kLatestEvent, user_id)[0][0].as<std::int64_t>();
  });
}

Result<std::uint64_t> JobStore::pruneEvents(std::chrono::seconds age) noexcept {
  return impl_->guarded("pruneEvents", [&]() -> Result<std::uint64_t> {
    pqxx::nontransaction txn(*impl_->conn);
    return static_cast<std::uint64_t>(
        txn.exec_prepared(kPruneEvents, static_cast<std::int64_t>(age.count())).affected_rows());
  });
}

Result<std::optional<RunningJob>> JobStore::runningJob(std::int64_t job_id) noexcept {
  return impl_->guarded("runningJob", [&]() -> Result<std::optional<RunningJob>> {
    pqxx::nontransaction txn(*impl_->conn);
    const pqxx::result r = txn.exec_prepared(kRunningJob, job_id);
    if (r.empty()) return std::optional<RunningJob>();
    const pqxx::row row = r[0];
    RunningJob rj;
    rj.job.job_id = row[0].as<std::int64_t>();
    rj.job.attempt = row[1].as<std::int32_t>();
    rj.job.max_attempts = row[2].as<std::int32_t>();
    rj.job.upload_id = row[3].as<std::string>();
    rj.job.user_id = row[4].as<std::string>();
    rj.job.storage_key = row[5].as<std::string>();
    rj.job.pipeline = row[6].as<std::string>();
    rj.job.lease_owner = row[7].is_null() ? std::string() : row[7].as<std::string>();
    rj.job_secret_hash = row[8].as<std::string>();
    return std::optional<RunningJob>(std::move(rj));
  });
}

Result<void> JobStore::setJobSecretHash(const ClaimedJob& job, const std::string& hash) noexcept {
  return impl_->guarded("setJobSecretHash", [&]() -> Result<void> {
    pqxx::nontransaction txn(*impl_->conn);
    if (txn.exec_prepared(kSetSecret, job.job_id, job.lease_owner, job.attempt, hash)
            .affected_rows() == 0) {
      return leaseLost("setJobSecretHash", job);
    }
    return {};
  });
}

Result<std::optional<ClaimedJob>> JobStore::claim(const std::string& owner) noexcept {
  if (owner.empty()) return invalid("claim: empty owner");
  return impl_->guarded("claim", [&]() -> Result<std::optional<ClaimedJob>> {
    pqxx::work txn(*impl_->conn);
    txn.exec_prepared(kReapExpired);
    const pqxx::result r =
        txn.exec_prepared(kClaim, owner, static_cast<std::int64_t>(impl_->options.lease.count()));
    if (r.empty()) {
      txn.commit();  // keep what the reaper failed
      return std::optional<ClaimedJob>();
    }
    const pqxx::row row = r[0];
    ClaimedJob job;
    job.job_id = row[0].as<std::int64_t>();
    job.attempt = row[1].as<std::int32_t>();
    job.max_attempts = row[2].as<std::int32_t>();
    job.upload_id = row[3].as<std::string>();
    job.user_id = row[4].as<std::string>();
    job.storage_key = row[5].as<std::string>();
    job.pipeline = row[6].as<std::string>();
    job.lease_owner = owner;
    txn.commit();
    return std::optional<ClaimedJob>(std::move(job));
  });
}

Result<void> JobStore::heartbeat(const ClaimedJob& job, double progress) noexcept {
  // The column is CHECKed to [0, 1]; a NaN from a bad duration becomes 0.
  const double p = std::isfinite(progress) ? std::clamp(progress, 0.0, 1.0) : 0.0;
  return impl_->guarded("heartbeat", [&]() -> Result<void> {
    pqxx::nontransaction txn(*impl_->conn);
    const pqxx::result r =
        txn.exec_prepared(kHeartbeat, job.job_id, job.lease_owner, job.attempt,
                          static_cast<std::int64_t>(impl_->options.lease.count()), p);
    if (r.affected_rows() == 0) return impl_->lostOrCancelled(txn, "heartbeat", job);
    return {};
  });
}

Result<void> JobStore::complete(const ClaimedJob& job, const JobOutcome& outcome) noexcept {
  return impl_->guarded("complete", [&]() -> Result<void> {
    const std::optional<std::string> sample_rate = integerParam(outcome, "sample_rate");
    const std::optional<std::string> channels = integerParam(outcome, "channels");
    const std::optional<std::string> bit_rate = integerParam(outcome, "bit_rate");
    const double duration = std::isfinite(outcome.duration_s) ? outcome.duration_s : 0.0;

    pqxx::work txn(*impl_->conn);
    Result<std::int32_t> locked = impl_->lockLease(txn, job, "complete");
    if (!locked) return std::move(locked).error();  // txn aborts: nothing written
    txn.exec_prepared(kComplete, job.job_id, job.attempt, duration, textParam(outcome, "codec"),
                      cstr(sample_rate), cstr(channels), cstr(bit_rate),
                      textParam(outcome, "container"), textParam(outcome, "title"),
                      textParam(outcome, "artist"), textParam(outcome, "album"));
    txn.commit();
    return {};
  });
}

Result<void> JobStore::fail(const ClaimedJob& job, const Error& error) noexcept {
  return impl_->guarded("fail", [&]() -> Result<void> {
    const std::string job_error = std::string(errorCodeName(error.code)) + ": " + error.message;
    pqxx::work txn(*impl_->conn);
    Result<std::int32_t> locked = impl_->lockLease(txn, job, "fail");
    if (!locked) return std::move(locked).error();
    const std::int32_t max_attempts = locked.value();
    if (isTransient(error.code) && job.attempt < max_attempts) {
      txn.exec_prepared(kRequeue, job.job_id, job.attempt, impl_->backoffMillis(job.attempt),
                        job_error);
    } else {
      txn.exec_prepared(kFailJob, job.job_id, job.attempt, job_error, error.message);
    }
    txn.commit();
    return {};
  });
}

Result<void> JobStore::release(const ClaimedJob& job) noexcept {
  return impl_->guarded("release", [&]() -> Result<void> {
    pqxx::work txn(*impl_->conn);
    Result<std::int32_t> locked = impl_->lockLease(txn, job, "release");
    if (!locked) return std::move(locked).error();
    txn.exec_prepared(kRelease, job.job_id, job.attempt);
    // Due now: wake an idle worker rather than wait for its poll.
    txn.exec_prepared(kNotify, std::to_string(job.job_id));
    txn.commit();
    return {};
  });
}

Result<bool> JobStore::waitForWork(std::chrono::milliseconds timeout) noexcept {
  return impl_->guarded("waitForWork", [&]() -> Result<bool> {
    using Clock = std::chrono::steady_clock;
    const Clock::time_point deadline = Clock::now() + std::max(timeout, decltype(timeout)::zero());
    // Notifications that arrived while other statements ran are already
    // buffered on the socket; get_notifs delivers them to the receiver.
    impl_->conn->get_notifs();
    while (!impl_->woken) {
      const auto left =
          std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now());
      if (left.count() <= 0) break;
      // May return early (e.g. on other socket activity); loop until the deadline.
      impl_->conn->await_notification(static_cast<long>(left.count() / 1000000),
                                      static_cast<long>(left.count() % 1000000));
    }
    const bool woken = impl_->woken;
    impl_->woken = false;
    return woken;
  });
}

Result<std::vector<JobStore::CleanupCandidate>> JobStore::cleanupCandidates(
    std::chrono::seconds stale_after, std::size_t limit, const std::string& after) noexcept {
  if (!after.empty() && !isUuid(after)) return invalid("cleanupCandidates: bad cursor " + after);
  if (limit == 0) return std::vector<CleanupCandidate>();
  return impl_->guarded("cleanupCandidates", [&]() -> Result<std::vector<CleanupCandidate>> {
    pqxx::nontransaction txn(*impl_->conn);
    const std::int64_t bounded = static_cast<std::int64_t>(
        std::min<std::size_t>(limit, std::numeric_limits<std::int64_t>::max()));
    const pqxx::result r =
        txn.exec_prepared(kCleanup, static_cast<std::int64_t>(stale_after.count()), bounded,
                          after.empty() ? nullptr : after.c_str());
    std::vector<CleanupCandidate> out;
    out.reserve(r.size());
    for (const pqxx::row& row : r) {
      out.push_back(CleanupCandidate{row[0].as<std::string>(), row[1].as<std::string>(),
                                     row[2].as<std::string>()});
    }
    return out;
  });
}

Result<bool> JobStore::tryLockCleanup() noexcept {
  return impl_->guarded("tryLockCleanup", [&]() -> Result<bool> {
    pqxx::nontransaction txn(*impl_->conn);
    return txn.exec_prepared(kTryLock, kCleanupLockKey)[0][0].as<bool>();
  });
}

Result<void> JobStore::unlockCleanup() noexcept {
  return impl_->guarded("unlockCleanup", [&]() -> Result<void> {
    pqxx::nontransaction txn(*impl_->conn);
    if (!txn.exec_prepared(kUnlock, kCleanupLockKey)[0][0].as<bool>()) {
      return invalid("unlockCleanup: this session does not hold the cleanup lock");
    }
    return {};
  });
}

}  // namespace vessel
