// JobStore against a real private PostgreSQL: one EmbeddedPostgres for the
// suite, emptied before each test. Covers the upload lifecycle, exclusive
// claims under concurrency, lease expiry and fencing, retries with backoff,
// LISTEN/NOTIFY wake-ups and the cleanup queries.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <latch>
#include <mutex>
#include <pqxx/pqxx>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "vessel/database.hpp"
#include "vessel/jobs.hpp"

namespace vessel {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class JobsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char pattern[] = "/tmp/vessel-jobs-XXXXXX";
    if (mkdtemp(pattern) == nullptr) {
      setup_error_ = "mkdtemp failed";
      return;
    }
    dir_ = new fs::path(pattern);
    // mkdtemp makes it 0700; as root the cluster runs as `vessel` and must enter it.
    fs::permissions(*dir_, fs::perms(0755));
    EmbeddedPostgres::Options options;
    options.data_dir = *dir_;
    auto pg = EmbeddedPostgres::start(options);
    if (!pg) {
      setup_error_ = "EmbeddedPostgres::start: " + pg.error().message;
      return;
    }
    pg_ = std::move(pg).value().release();
    auto migrated = migrateDatabase(pg_->connectionString());
    if (!migrated) setup_error_ = "migrateDatabase: " + migrated.error().message;
  }

  static void TearDownTestSuite() {
    delete pg_;
    pg_ = nullptr;
    if (dir_ != nullptr) {
      std::error_code ec;
      fs::remove_all(*dir_, ec);
      delete dir_;
      dir_ = nullptr;
    }
  }

  void SetUp() override {
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
    // Tests share the queue: start each from an empty one.
    sql("TRUNCATE users, uploads, jobs, job_attempts CASCADE");
  }

  static const std::string& conninfo() { return pg_->connectionString(); }

  static std::unique_ptr<JobStore> store(QueueOptions options = {}) {
    auto s = JobStore::connect(conninfo(), options);
    EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
    return s.ok() ? std::move(s).value() : nullptr;
  }

  // Direct SQL for setting up and inspecting what the API does not expose.
  static pqxx::result sql(const std::string& query) {
    pqxx::connection conn(conninfo());
    pqxx::nontransaction tx(conn);
    return tx.exec(query);
  }
  static std::string value(const std::string& query) {
    const pqxx::result r = sql(query);
    if (r.empty() || r[0][0].is_null()) return "<null>";
    return r[0][0].c_str();
  }
  static std::string jobField(std::int64_t job_id, const std::string& expr) {
    return value("SELECT " + expr + " FROM jobs WHERE id = " + std::to_string(job_id));
  }
  static std::string uploadField(const std::string& upload_id, const std::string& expr) {
    return value("SELECT " + expr + " FROM uploads WHERE id = '" + upload_id + "'");
  }

  std::string newUser(JobStore& s) {
    auto id = s.createUser("user" + std::to_string(++user_counter_) + "@example.com", "hash");
    EXPECT_TRUE(id.ok()) << (id.ok() ? "" : id.error().message);
    return id.ok() ? id.value() : "";
  }

  UploadRecord newUpload(JobStore& s, const std::string& user_id) {
    auto up = s.createUpload(NewUpload{user_id, "song.flac", "audio/flac", 1234});
    EXPECT_TRUE(up.ok()) << (up.ok() ? "" : up.error().message);
    return up.ok() ? up.value() : UploadRecord{};
  }

  // An upload with a queued job; returns the job id.
  std::int64_t queuedJob(JobStore& s, std::string* upload_id = nullptr) {
    const UploadRecord up = newUpload(s, newUser(s));
    auto job = s.enqueue(up.id, "default");
    EXPECT_TRUE(job.ok()) << (job.ok() ? "" : job.error().message);
    if (upload_id) *upload_id = up.id;
    return job.ok() ? job.value() : 0;
  }

  static ClaimedJob claimOne(JobStore& s, const std::string& owner) {
    auto c = s.claim(owner);
    EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
    EXPECT_TRUE(c.ok() && c.value().has_value()) << "nothing to claim for " << owner;
    return c.ok() && c.value() ? *c.value() : ClaimedJob{};
  }

  static bool claimsNothing(JobStore& s, const std::string& owner) {
    auto c = s.claim(owner);
    EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
    return c.ok() && !c.value().has_value();
  }

  static std::string status(JobStore& s, const std::string& upload_id) {
    auto u = s.getUpload(upload_id);
    if (!u.ok() || !u.value()) return "<missing>";
    return u.value()->status;
  }

  static inline EmbeddedPostgres* pg_ = nullptr;
  static inline fs::path* dir_ = nullptr;
  static inline std::string setup_error_;
  static inline int user_counter_ = 0;
};

TEST_F(JobsTest, UsersAreFoundByEmailCaseInsensitively) {
  auto s = store();
  ASSERT_TRUE(s);
  auto id = s->createUser("Alice@Example.COM", "h");
  ASSERT_TRUE(id.ok()) << id.error().message;
  auto found = s->findUserByEmail("alice@example.com");
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found.value().has_value());
  EXPECT_EQ(*found.value(), id.value());

  auto dup = s->createUser("ALICE@example.com", "h2");
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, ErrorCode::kAlreadyExists);

  auto missing = s->findUserByEmail("bob@example.com");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing.value().has_value());
}

TEST_F(JobsTest, CreateUploadIsUploadingUnderItsOriginalKey) {
  auto s = store();
  ASSERT_TRUE(s);
  const std::string user = newUser(*s);
  const UploadRecord up = newUpload(*s, user);
  EXPECT_EQ(up.status, "uploading");
  EXPECT_EQ(up.user_id, user);
  EXPECT_EQ(up.storage_key, user + "/" + up.id + "/original");
  EXPECT_EQ(up.storage_key, originalKey(user, up.id));
  EXPECT_EQ(uploadPrefix(user, up.id), user + "/" + up.id + "/");
  EXPECT_EQ(up.filename, "song.flac");
  EXPECT_EQ(up.content_type, "audio/flac");
  EXPECT_EQ(up.size_bytes, 1234);
  EXPECT_FALSE(up.duration_s.has_value());
  EXPECT_FALSE(up.error.has_value());
  EXPECT_EQ(up.progress, 0);
  const std::regex iso(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)");
  EXPECT_TRUE(std::regex_match(up.created_at, iso)) << up.created_at;
  EXPECT_TRUE(std::regex_match(up.updated_at, iso)) << up.updated_at;

  auto again = s->getUpload(up.id);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE(again.value().has_value());
  EXPECT_EQ(again.value()->storage_key, up.storage_key);
}

TEST_F(JobsTest, BadIdsAreNotFoundRatherThanErrors) {
  auto s = store();
  ASSERT_TRUE(s);
  auto got = s->getUpload("not-a-uuid'; DROP TABLE uploads; --");
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(got.value().has_value());
  auto none = s->getUpload("00000000-0000-0000-0000-000000000000");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none.value().has_value());

  auto enq = s->enqueue("00000000-0000-0000-0000-000000000000", "default");
  ASSERT_FALSE(enq.ok());
  EXPECT_EQ(enq.error().code, ErrorCode::kNotFound);

  auto up = s->createUpload(NewUpload{"00000000-0000-0000-0000-000000000000", "a", "b", 1});
  ASSERT_FALSE(up.ok());
  EXPECT_EQ(up.error().code, ErrorCode::kNotFound);
  auto bad = s->createUpload(NewUpload{"nope", "a", "b", 1});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(JobsTest, EnqueueQueuesOnceAndRefusesTwice) {
  auto s = store();
  ASSERT_TRUE(s);
  const UploadRecord up = newUpload(*s, newUser(*s));
  auto job = s->enqueue(up.id, "default");
  ASSERT_TRUE(job.ok()) << job.error().message;
  EXPECT_EQ(status(*s, up.id), "queued");
  EXPECT_EQ(jobField(job.value(), "state"), "queued");
  EXPECT_EQ(jobField(job.value(), "upload_id"), up.id);
  EXPECT_EQ(jobField(job.value(), "pipeline"), "default");
  EXPECT_EQ(jobField(job.value(), "attempts"), "0");
  EXPECT_EQ(jobField(job.value(), "max_attempts"), "3");

  auto twice = s->enqueue(up.id, "default");
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(twice.error().message.find("not in uploading"), std::string::npos)
      << twice.error().message;
  EXPECT_EQ(value("SELECT count(*) FROM jobs"), "1");
}

TEST_F(JobsTest, ClaimLeasesTheJobOnce) {
  auto s = store();
  ASSERT_TRUE(s);
  std::string upload_id;
  const std::int64_t job_id = queuedJob(*s, &upload_id);

  const ClaimedJob job = claimOne(*s, "worker-a");
  EXPECT_EQ(job.job_id, job_id);
  EXPECT_EQ(job.attempt, 1);
  EXPECT_EQ(job.max_attempts, 3);
  EXPECT_EQ(job.upload_id, upload_id);
  EXPECT_EQ(job.pipeline, "default");
  EXPECT_EQ(job.lease_owner, "worker-a");
  EXPECT_EQ(job.storage_key, originalKey(job.user_id, upload_id));
  EXPECT_EQ(status(*s, upload_id), "processing");
  EXPECT_EQ(jobField(job_id, "state"), "running");
  EXPECT_EQ(jobField(job_id, "lease_owner"), "worker-a");
  EXPECT_EQ(jobField(job_id, "lease_expires_at > now() + interval '25 seconds'"), "t");
  EXPECT_EQ(value("SELECT worker || ':' || attempt FROM job_attempts WHERE job_id = " +
                  std::to_string(job_id)),
            "worker-a:1");

  EXPECT_TRUE(claimsNothing(*s, "worker-b"));
}

TEST_F(JobsTest, ConcurrentClaimersNeverShareAJob) {
  constexpr int kJobs = 50;
  constexpr int kThreads = 8;
  std::set<std::int64_t> queued;
  {
    auto s = store();
    ASSERT_TRUE(s);
    for (int i = 0; i < kJobs; ++i) queued.insert(queuedJob(*s));
  }
  ASSERT_EQ(queued.size(), std::size_t(kJobs));

  std::mutex mu;
  std::vector<std::int64_t> claimed;
  std::vector<std::string> errors;
  std::latch ready(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto connected = JobStore::connect(conninfo());
      ready.arrive_and_wait();  // everyone connected, then all claim at once
      if (!connected) {
        std::lock_guard lock(mu);
        errors.push_back(connected.error().message);
        return;
      }
      JobStore& s = *connected.value();
      const std::string owner = "worker-" + std::to_string(t);
      for (;;) {
        auto c = s.claim(owner);
        std::lock_guard lock(mu);
        if (!c) {
          errors.push_back(c.error().message);
          return;
        }
        if (!c.value()) return;
        claimed.push_back(c.value()->job_id);
      }
    });
  }
  for (auto& t : threads) t.join();

  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_EQ(claimed.size(), std::size_t(kJobs)) << "a job was claimed twice or missed";
  EXPECT_EQ(std::set<std::int64_t>(claimed.begin(), claimed.end()), queued);
  EXPECT_EQ(value("SELECT count(*) FROM job_attempts WHERE attempt = 1"), std::to_string(kJobs));
  EXPECT_EQ(value("SELECT count(*) FROM uploads WHERE status = 'processing'"),
            std::to_string(kJobs));
}

TEST_F(JobsTest, HeartbeatExtendsTheLeaseAndRecordsProgress) {
  QueueOptions options;
  options.lease = 1s;
  auto a = store(options);
  auto b = store(options);
  ASSERT_TRUE(a && b);
  std::string upload_id;
  queuedJob(*a, &upload_id);
  const ClaimedJob job = claimOne(*a, "a");

  std::this_thread::sleep_for(600ms);
  ASSERT_TRUE(a->heartbeat(job, 0.5).ok());
  std::this_thread::sleep_for(600ms);  // past the first lease, within the extended one
  EXPECT_TRUE(claimsNothing(*b, "b"));
  ASSERT_TRUE(a->heartbeat(job, 0.75).ok());

  EXPECT_EQ(jobField(job.job_id, "lease_owner"), "a");
  EXPECT_EQ(jobField(job.job_id, "lease_expires_at > now()"), "t");
  auto up = a->getUpload(upload_id);
  ASSERT_TRUE(up.ok() && up.value());
  EXPECT_DOUBLE_EQ(up.value()->progress, 0.75);
}

TEST_F(JobsTest, ExpiredLeaseIsReclaimedAndTheOldOwnerIsFencedOff) {
  QueueOptions options;
  options.lease = 1s;
  auto a = store(options);
  auto b = store(options);
  ASSERT_TRUE(a && b);
  std::string upload_id;
  queuedJob(*a, &upload_id);
  const ClaimedJob first = claimOne(*a, "a");
  ASSERT_EQ(first.attempt, 1);

  EXPECT_TRUE(claimsNothing(*b, "b"));  // lease still live
  std::this_thread::sleep_for(1200ms);  // a stopped heartbeating
  const ClaimedJob second = claimOne(*b, "b");
  EXPECT_EQ(second.job_id, first.job_id);
  EXPECT_EQ(second.attempt, 2);
  EXPECT_EQ(second.lease_owner, "b");

  auto hb = a->heartbeat(first, 0.9);
  ASSERT_FALSE(hb.ok());
  EXPECT_EQ(hb.error().code, ErrorCode::kPermissionDenied);
  JobOutcome outcome;
  outcome.duration_s = 10;
  auto done = a->complete(first, outcome);
  ASSERT_FALSE(done.ok());
  EXPECT_EQ(done.error().code, ErrorCode::kPermissionDenied);
  for (const auto& r :
       {a->fail(first, makeError(ErrorCode::kCorruptInput, "x")), a->release(first)}) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kPermissionDenied);
  }

  // Nothing the fenced-off owner did stuck.
  EXPECT_EQ(status(*a, upload_id), "processing");
  EXPECT_EQ(uploadField(upload_id, "duration_s"), "<null>");
  EXPECT_EQ(jobField(first.job_id, "state"), "running");
  EXPECT_EQ(jobField(first.job_id, "lease_owner"), "b");
  EXPECT_EQ(jobField(first.job_id, "attempts"), "2");
  EXPECT_EQ(jobField(first.job_id, "progress"), "0");
  EXPECT_EQ(value("SELECT string_agg(attempt || ':' || worker || ':' || coalesce(outcome, '-'),"
                  " ',' ORDER BY attempt) FROM job_attempts"),
            "1:a:lease_expired,2:b:-");

  ASSERT_TRUE(b->complete(second, outcome).ok());
  EXPECT_EQ(status(*a, upload_id), "ready");
}

TEST_F(JobsTest, CompleteMarksReadyWithDurationAndProbe) {
  auto s = store();
  ASSERT_TRUE(s);
  std::string upload_id;
  queuedJob(*s, &upload_id);
  sql("UPDATE uploads SET job_secret_hash = 'abc'");
  const ClaimedJob job = claimOne(*s, "w");
  ASSERT_TRUE(s->heartbeat(job, 0.4).ok());

  JobOutcome outcome;
  outcome.duration_s = 187.25;
  outcome.master_key = uploadPrefix(job.user_id, job.upload_id) + "master.m3u8";
  outcome.probe = {{"codec", "FLAC"},      {"sample_rate", "44100"}, {"channels", "2"},
                   {"bit_rate", "912345"}, {"container", "flac"},    {"title", "Song"},
                   {"artist", "Band"}};  // no album
  auto done = s->complete(job, outcome);
  ASSERT_TRUE(done.ok()) << done.error().message;

  auto up = s->getUpload(upload_id);
  ASSERT_TRUE(up.ok() && up.value());
  EXPECT_EQ(up.value()->status, "ready");
  ASSERT_TRUE(up.value()->duration_s.has_value());
  EXPECT_DOUBLE_EQ(*up.value()->duration_s, 187.25);
  EXPECT_FALSE(up.value()->error.has_value());
  EXPECT_EQ(up.value()->title, std::optional<std::string>("Song"));
  EXPECT_EQ(up.value()->artist, std::optional<std::string>("Band"));
  EXPECT_FALSE(up.value()->album.has_value());
  EXPECT_DOUBLE_EQ(up.value()->progress, 1.0);
  EXPECT_EQ(uploadField(upload_id,
                        "codec || '|' || sample_rate || '|' || channels || '|' || "
                        "bit_rate || '|' || container"),
            "FLAC|44100|2|912345|flac");
  EXPECT_EQ(uploadField(upload_id, "job_secret_hash"), "<null>");
  EXPECT_EQ(jobField(job.job_id,
                     "state || '|' || coalesce(lease_owner, '-') || '|' || "
                     "(finished_at IS NOT NULL)"),
            "succeeded|-|true");
  EXPECT_EQ(value("SELECT outcome FROM job_attempts"), "succeeded");

  // Once done, the lease is gone: a second report is refused.
  auto again = s->complete(job, outcome);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::kPermissionDenied);
}

// The change feed (upload_events + NOTIFY, what live status streams read) gets
// one event per visible change: each status transition, and each heartbeat that
// moves a running job's progress. A transition that also resets or finishes the
// job's progress is still one event: the feed's insert + NOTIFY is on the
// queue's hot path (bench/queue).
TEST_F(JobsTest, EachChangeIsOneFeedEvent) {
  auto s = store();
  ASSERT_TRUE(s);
  std::string upload_id;
  queuedJob(*s, &upload_id);
  auto events = [&] {
    return std::stoi(
        value("SELECT count(*) FROM upload_events WHERE upload_id = '" + upload_id + "'"));
  };
  const int created_and_queued = events();
  EXPECT_EQ(created_and_queued, 2);
  const ClaimedJob job = claimOne(*s, "w");
  EXPECT_EQ(events(), created_and_queued + 1);  // processing
  ASSERT_TRUE(s->heartbeat(job, 0.25).ok());
  EXPECT_EQ(events(), created_and_queued + 2);  // progress moved
  ASSERT_TRUE(s->heartbeat(job, 0.25).ok());
  EXPECT_EQ(events(), created_and_queued + 2);  // it did not
  JobOutcome outcome;
  outcome.duration_s = 10;
  outcome.master_key = uploadPrefix(job.user_id, job.upload_id) + "master.m3u8";
  ASSERT_TRUE(s->complete(job, outcome).ok());
  EXPECT_EQ(events(), created_and_queued + 3);  // ready (and progress 1): one event
}

TEST_F(JobsTest, UnparsableNumericProbeFieldsBecomeNull) {
  auto s = store();
  ASSERT_TRUE(s);
  std::string upload_id;
  queuedJob(*s, &upload_id);
  const ClaimedJob job = claimOne(*s, "w");
  JobOutcome outcome;
  outcome.duration_s = 1;
  outcome.probe = {{"sample_rate", "44.1 kHz"}, {"channels", "-2"}, {"codec", ""}};
  ASSERT_TRUE(s->complete(job, outcome).ok());
  EXPECT_EQ(uploadField(upload_id,
                        "coalesce(sample_rate::text, 'null') || "
                        "coalesce(channels::text, 'null') || coalesce(codec, 'null')"),
            "nullnullnull");
}

TEST_F(JobsTest, TransientFailureRequeuesWithBackoff) {
  QueueOptions options;
  options.backoff_base = 1s;
  auto s = store(options);
  ASSERT_TRUE(s);
  std::string upload_id;
  queuedJob(*s, &upload_id);
  const ClaimedJob job = claimOne(*s, "w");
  const auto failed_at = Clock::now();
  auto r = s->fail(job, makeError(ErrorCode::kUnavailable, "storage answered 503"));
  ASSERT_TRUE(r.ok()) << r.error().message;

  EXPECT_EQ(status(*s, upload_id), "queued");
  EXPECT_EQ(jobField(job.job_id, "state"), "queued");
  EXPECT_EQ(jobField(job.job_id, "lease_owner"), "<null>");
  EXPECT_NE(jobField(job.job_id, "last_error").find("storage answered 503"), std::string::npos);
  // 1 s ± 25 %.
  const double delay =
      std::stod(jobField(job.job_id, "extract(epoch FROM run_after - updated_at)"));
  EXPECT_GE(delay, 0.74);
  EXPECT_LE(delay, 1.26);
  EXPECT_EQ(value("SELECT outcome FROM job_attempts WHERE attempt = 1"), "retry");

  EXPECT_TRUE(claimsNothing(*s, "w"));  // not due yet
  std::optional<ClaimedJob> again;
  while (!again && Clock::now() - failed_at < 3s) {
    auto c = s->claim("w2");
    ASSERT_TRUE(c.ok());
    again = c.value();
    if (!again) std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(again.has_value());
  EXPECT_GE(Clock::now() - failed_at, 700ms);
  EXPECT_EQ(again->job_id, job.job_id);
  EXPECT_EQ(again->attempt, 2);
  EXPECT_EQ(status(*s, upload_id), "processing");
}

TEST_F(JobsTest, PermanentFailureFailsAtOnce) {
  auto s = store();
  ASSERT_TRUE(s);
  std::string upload_id;
  queuedJob(*s, &upload_id);
  const ClaimedJob job = claimOne(*s, "w");
  ASSERT_TRUE(s->fail(job, makeError(ErrorCode::kUnsupportedInput, "not an audio file")).ok());

  auto up = s->getUpload(upload_id);
  ASSERT_TRUE(up.ok() && up.value());
  EXPECT_EQ(up.value()->status, "failed");
  EXPECT_EQ(up.value()->error, std::optional<std::string>("not an audio file"));
  EXPECT_EQ(jobField(job.job_id, "state"), "failed");
  EXPECT_EQ(jobField(job.job_id, "last_error"), "unsupported_input: not an audio file");
  EXPECT_EQ(value("SELECT outcome FROM job_attempts"), "failed");
  EXPECT_TRUE(claimsNothing(*s, "w"));
}

TEST_F(JobsTest, TransientFailureWithoutAttemptsLeftFails) {
  QueueOptions options;
  options.max_attempts = 2;
  options.backoff_base = 0s;
  auto s = store(options);
  ASSERT_TRUE(s);
  std::string upload_id;
  queuedJob(*s, &upload_id);
  const ClaimedJob first = claimOne(*s, "w");
  ASSERT_TRUE(s->fail(first, makeError(ErrorCode::kTimeout, "stalled")).ok());
  EXPECT_EQ(status(*s, upload_id), "queued");
  const ClaimedJob second = claimOne(*s, "w");
  EXPECT_EQ(second.attempt, 2);
  EXPECT_EQ(second.max_attempts, 2);
  ASSERT_TRUE(s->fail(second, makeError(ErrorCode::kTimeout, "stalled again")).ok());

  auto up = s->getUpload(upload_id);
  ASSERT_TRUE(up.ok() && up.value());
  EXPECT_EQ(up.value()->status, "failed");
  EXPECT_EQ(up.value()->error, std::optional<std::string>("stalled again"));
  EXPECT_EQ(jobField(first.job_id, "state || ':' || attempts"), "failed:2");
  EXPECT_EQ(value("SELECT string_agg(outcome, ',' ORDER BY attempt) FROM job_attempts"),
            "retry,failed");
  EXPECT_TRUE(claimsNothing(*s, "w"));
}

TEST_F(JobsTest, ExpiredLeaseWithoutAttemptsLeftFailsAtTheNextClaim) {
  QueueOptions options;
  options.lease = 1s;
  options.max_attempts = 1;
  auto a = store(options);
  auto b = store(options);
  ASSERT_TRUE(a && b);
  std::string upload_id;
  queuedJob(*a, &upload_id);
  const ClaimedJob job = claimOne(*a, "a");
  std::this_thread::sleep_for(1200ms);

  EXPECT_TRUE(claimsNothing(*b, "b"));
  auto up = b->getUpload(upload_id);
  ASSERT_TRUE(up.ok() && up.value());
  EXPECT_EQ(up.value()->status, "failed");
  ASSERT_TRUE(up.value()->error.has_value());
  EXPECT_NE(up.value()->error->find("lease expired"), std::string::npos) << *up.value()->error;
  EXPECT_EQ(jobField(job.job_id, "state"), "failed");
  EXPECT_NE(jobField(job.job_id, "last_error").find("lease expired"), std::string::npos);
  EXPECT_EQ(value("SELECT outcome FROM job_attempts"), "lease_expired");

  auto late = a->complete(job, JobOutcome{});
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, ErrorCode::kPermissionDenied);
}

TEST_F(JobsTest, ReleaseGivesTheJobBackWithoutCountingTheAttempt) {
  auto a = store();
  auto b = store();
  ASSERT_TRUE(a && b);
  std::string upload_id;
  queuedJob(*a, &upload_id);
  const ClaimedJob job = claimOne(*a, "a");
  ASSERT_TRUE(a->release(job).ok());
  EXPECT_EQ(status(*a, upload_id), "queued");
  EXPECT_EQ(jobField(job.job_id, "state || ':' || attempts || ':' || coalesce(lease_owner, '-')"),
            "queued:0:-");
  EXPECT_EQ(value("SELECT count(*) FROM job_attempts"), "0");

  const ClaimedJob again = claimOne(*b, "b");
  EXPECT_EQ(again.job_id, job.job_id);
  EXPECT_EQ(again.attempt, 1);
  // Same attempt number, different owner: the releaser is still fenced off.
  auto hb = a->heartbeat(job, 0.1);
  ASSERT_FALSE(hb.ok());
  EXPECT_EQ(hb.error().code, ErrorCode::kPermissionDenied);
}

TEST_F(JobsTest, RetryRequeuesAFailedUploadWithAFreshBudget) {
  QueueOptions options;
  options.max_attempts = 1;
  auto s = store(options);
  ASSERT_TRUE(s);
  std::string upload_id;
  const std::int64_t old_job = queuedJob(*s, &upload_id);
  const ClaimedJob job = claimOne(*s, "w");
  ASSERT_TRUE(s->fail(job, makeError(ErrorCode::kUnavailable, "down")).ok());
  ASSERT_EQ(status(*s, upload_id), "failed");  // transient, but no attempts left

  auto retried = s->retry(upload_id, "default");
  ASSERT_TRUE(retried.ok()) << retried.error().message;
  EXPECT_NE(retried.value(), old_job);
  auto up = s->getUpload(upload_id);
  ASSERT_TRUE(up.ok() && up.value());
  EXPECT_EQ(up.value()->status, "queued");
  EXPECT_FALSE(up.value()->error.has_value());
  EXPECT_EQ(up.value()->progress, 0);
  EXPECT_EQ(jobField(old_job, "state"), "failed");  // kept as history
  EXPECT_EQ(jobField(retried.value(), "state || ':' || attempts"), "queued:0");

  const ClaimedJob fresh = claimOne(*s, "w");
  EXPECT_EQ(fresh.job_id, retried.value());
  EXPECT_EQ(fresh.attempt, 1);
  ASSERT_TRUE(s->complete(fresh, JobOutcome{}).ok());

  auto ready = s->retry(upload_id, "default");
  ASSERT_FALSE(ready.ok());
  EXPECT_EQ(ready.error().code, ErrorCode::kInvalidArgument);
  const UploadRecord uploading = newUpload(*s, newUser(*s));
  auto early = s->retry(uploading.id, "default");
  ASSERT_FALSE(early.ok());
  EXPECT_EQ(early.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(JobsTest, WaitForWorkWakesOnEnqueueAndTimesOut) {
  auto waiter = store();
  auto producer = store();
  ASSERT_TRUE(waiter && producer);
  const UploadRecord up = newUpload(*producer, newUser(*producer));

  auto start = Clock::now();
  auto idle = waiter->waitForWork(300ms);
  ASSERT_TRUE(idle.ok()) << idle.error().message;
  EXPECT_FALSE(idle.value());
  EXPECT_GE(Clock::now() - start, 290ms);

  std::thread enqueuer([&] {
    std::this_thread::sleep_for(200ms);
    auto job = producer->enqueue(up.id, "default");
    EXPECT_TRUE(job.ok());
  });
  start = Clock::now();
  auto woken = waiter->waitForWork(5000ms);
  const auto waited = Clock::now() - start;
  enqueuer.join();
  ASSERT_TRUE(woken.ok()) << woken.error().message;
  EXPECT_TRUE(woken.value());
  EXPECT_LT(waited, 1s);

  // The notification was consumed; nothing new arrives.
  auto after = waiter->waitForWork(200ms);
  ASSERT_TRUE(after.ok());
  EXPECT_FALSE(after.value());
}

TEST_F(JobsTest, CleanupCandidatesAreFailedOrStaleWithoutALiveLease) {
  QueueOptions options;
  options.max_attempts = 1;
  auto s = store(options);
  ASSERT_TRUE(s);
  const std::string user = newUser(*s);
  auto make = [&] { return newUpload(*s, user).id; };

  const std::string failed = make();
  ASSERT_TRUE(s->enqueue(failed, "p").ok());
  ASSERT_TRUE(s->fail(claimOne(*s, "w"), makeError(ErrorCode::kCorruptInput, "bad")).ok());

  const std::string ready = make();
  ASSERT_TRUE(s->enqueue(ready, "p").ok());
  ASSERT_TRUE(s->complete(claimOne(*s, "w"), JobOutcome{}).ok());

  const std::string stale_uploading = make();
  const std::string fresh_uploading = make();

  const std::string stale_live = make();
  ASSERT_TRUE(s->enqueue(stale_live, "p").ok());
  const ClaimedJob live = claimOne(*s, "w");

  const std::string stale_dead = make();
  ASSERT_TRUE(s->enqueue(stale_dead, "p").ok());
  const ClaimedJob dead = claimOne(*s, "w");
  sql("UPDATE jobs SET lease_expires_at = now() - interval '1 minute' WHERE id = " +
      std::to_string(dead.job_id));

  const std::string stale_queued = make();
  ASSERT_TRUE(s->enqueue(stale_queued, "p").ok());

  for (const std::string& id : {ready, stale_uploading, stale_live, stale_dead, stale_queued}) {
    sql("UPDATE uploads SET updated_at = now() - interval '2 hours' WHERE id = '" + id + "'");
  }

  auto all = s->cleanupCandidates(1h, 100, "");
  ASSERT_TRUE(all.ok()) << all.error().message;
  std::set<std::string> expected = {failed, stale_uploading, stale_dead, stale_queued};
  std::vector<std::string> ids;
  for (const auto& c : all.value()) {
    ids.push_back(c.upload_id);
    EXPECT_EQ(c.user_id, user);
    if (c.upload_id == failed) {
      EXPECT_EQ(c.status, "failed");
    } else if (c.upload_id == stale_uploading) {
      EXPECT_EQ(c.status, "uploading");
    } else if (c.upload_id == stale_dead) {
      EXPECT_EQ(c.status, "processing");
    }
  }
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()), expected);
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(ids.size(), expected.size());

  // Keyset pagination with `after` walks the same list one by one.
  std::vector<std::string> paged;
  std::string cursor;
  for (int guard = 0; guard < 10; ++guard) {
    auto page = s->cleanupCandidates(1h, 1, cursor);
    ASSERT_TRUE(page.ok()) << page.error().message;
    if (page.value().empty()) break;
    ASSERT_EQ(page.value().size(), 1u);
    cursor = page.value()[0].upload_id;
    paged.push_back(cursor);
  }
  EXPECT_EQ(paged, ids);

  // The live lease is what protected stale_live.
  sql("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = " +
      std::to_string(live.job_id));
  auto more = s->cleanupCandidates(1h, 100, "");
  ASSERT_TRUE(more.ok());
  EXPECT_EQ(more.value().size(), expected.size() + 1);

  auto bad = s->cleanupCandidates(1h, 10, "not-a-uuid");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(JobsTest, CleanupLockIsExclusiveAcrossStores) {
  auto a = store();
  auto b = store();
  ASSERT_TRUE(a && b);
  auto got = a->tryLockCleanup();
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_TRUE(got.value());
  auto other = b->tryLockCleanup();
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other.value());
  ASSERT_TRUE(a->unlockCleanup().ok());
  auto now_b = b->tryLockCleanup();
  ASSERT_TRUE(now_b.ok());
  EXPECT_TRUE(now_b.value());
  ASSERT_TRUE(b->unlockCleanup().ok());
  auto not_held = b->unlockCleanup();
  ASSERT_FALSE(not_held.ok());
  EXPECT_EQ(not_held.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(JobsTest, DeleteUploadRemovesItsRows) {
  auto s = store();
  ASSERT_TRUE(s);
  std::string upload_id;
  const std::int64_t job_id = queuedJob(*s, &upload_id);
  claimOne(*s, "w");
  ASSERT_TRUE(s->deleteUpload(upload_id).ok());
  auto gone = s->getUpload(upload_id);
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone.value().has_value());
  EXPECT_EQ(jobField(job_id, "count(*)"), "0");
  EXPECT_EQ(value("SELECT count(*) FROM job_attempts"), "0");
  auto again = s->deleteUpload(upload_id);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::kNotFound);
}

TEST_F(JobsTest, ALostConnectionIsReportedThenRestored) {
  auto s = store();
  ASSERT_TRUE(s);
  const UploadRecord up = newUpload(*s, newUser(*s));
  sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
      "WHERE datname = current_database() AND pid <> pg_backend_pid()");

  auto first = s->getUpload(up.id);
  if (!first.ok()) {
    EXPECT_EQ(first.error().code, ErrorCode::kUnavailable) << first.error().message;
  }
  auto second = s->getUpload(up.id);
  ASSERT_TRUE(second.ok()) << second.error().message;
  ASSERT_TRUE(second.value().has_value());
  EXPECT_EQ(second.value()->id, up.id);
  // LISTEN is back too, and the reconnect reported possible missed work.
  auto woken = s->waitForWork(0ms);
  ASSERT_TRUE(woken.ok());
  auto job = s->enqueue(up.id, "default");
  ASSERT_TRUE(job.ok()) << job.error().message;
  auto notified = s->waitForWork(1000ms);
  ASSERT_TRUE(notified.ok());
  EXPECT_TRUE(notified.value());
}

TEST_F(JobsTest, LibraryListsNewestFirstInKeysetPagesPerUser) {
  auto s = store();
  ASSERT_TRUE(s);
  const std::string a = newUser(*s), b = newUser(*s);
  std::vector<std::string> ids;
  for (const char* name :
       {"Alpha.mp3", "beta.wav", "GAMMA 100%.flac", "delta_x.mp3", "ünïcode.wav"}) {
    auto up = s->createUpload(NewUpload{a, name, "audio/mpeg", 10});
    ASSERT_TRUE(up.ok()) << up.error().message;
    ids.push_back(up.value().id);
  }
  ASSERT_TRUE(s->createUpload(NewUpload{b, "alpha-of-b.mp3", "audio/mpeg", 10}).ok());
  sql("UPDATE uploads SET title = 'Night Drive', artist = 'The Testers' WHERE id = '" + ids[1] +
      "'");
  // All of a's, newest first, two at a time.
  std::vector<std::string> seen;
  LibraryQuery q;
  q.user_id = a;
  q.limit = 2;
  for (int page = 0; page < 10; ++page) {
    auto r = s->listUploads(q);
    ASSERT_TRUE(r.ok()) << r.error().message;
    for (const auto& u : r.value().items) {
      EXPECT_EQ(u.user_id, a);
      seen.push_back(u.id);
    }
    if (!r.value().more) break;
    q.after_sort_key = r.value().items.back().sort_key;
    q.after_id = r.value().items.back().id;
  }
  EXPECT_EQ(seen, std::vector<std::string>(ids.rbegin(), ids.rend()));
  // Search: case-insensitive substring of filename, title or artist; % and _ are literal.
  const auto search = [&](const std::string& text) {
    LibraryQuery sq;
    sq.user_id = a;
    sq.q = text;
    auto r = s->listUploads(sq);
    EXPECT_TRUE(r.ok());
    std::set<std::string> names;
    if (r.ok()) {
      for (const auto& u : r.value().items) names.insert(u.filename);
    }
    return names;
  };
  EXPECT_EQ(search("ALPHA"), std::set<std::string>{"Alpha.mp3"});  // b's alpha not shown
  EXPECT_EQ(search("night"), std::set<std::string>{"beta.wav"});
  EXPECT_EQ(search("testers"), std::set<std::string>{"beta.wav"});
  EXPECT_EQ(search("100%"), std::set<std::string>{"GAMMA 100%.flac"});
  EXPECT_EQ(search("a_x"), std::set<std::string>{"delta_x.mp3"});
  EXPECT_EQ(search("a%x"), std::set<std::string>{});
  EXPECT_EQ(search("ÜNÏ").size(), 1u);
  // Status filter and bad cursors.
  LibraryQuery st;
  st.user_id = a;
  st.status = "ready";
  EXPECT_TRUE(s->listUploads(st).value().items.empty());
  LibraryQuery bad;
  bad.user_id = a;
  bad.after_sort_key = "not a time";
  bad.after_id = ids[0];
  auto r = s->listUploads(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  bad.after_sort_key = "2026-01-01 00:00:00+00";
  bad.after_id = "nope";
  EXPECT_EQ(s->listUploads(bad).error().code, ErrorCode::kInvalidArgument);
}

TEST_F(JobsTest, LibraryQueriesUseIndexesAt100kRows) {
  auto s = store();
  ASSERT_TRUE(s);
  const std::string a = newUser(*s), b = newUser(*s);
  // 100k uploads split over two users, with distinct names.
  sql("INSERT INTO uploads (user_id, storage_key, filename, content_type, size_bytes) "
      "SELECT CASE WHEN g % 2 = 0 THEN '" +
      a + "'::uuid ELSE '" + b +
      "'::uuid END, 'k' || g, "
      "'track number ' || g || '.mp3', 'audio/mpeg', 1 FROM generate_series(1, 100000) g");
  sql("ANALYZE uploads");
  const auto plan = [&](const std::string& where) {
    std::string text;
    for (const auto& row :
         sql("EXPLAIN SELECT id FROM uploads u WHERE u.user_id = '" + a + "'::uuid " + where +
             " ORDER BY u.created_at DESC, u.id DESC LIMIT 21")) {
      text += row[0].c_str();
      text += "\n";
    }
    return text;
  };
  const auto search = [&](const std::string& term) {
    return plan(
        "AND lower(u.filename || ' ' || coalesce(u.title, '') || ' ' || coalesce(u.artist, '')) "
        "LIKE lower('%" +
        term + "%')");
  };
  const std::string listing = plan("");
  const std::string searching = search("number 4242");
  EXPECT_EQ(listing.find("Seq Scan"), std::string::npos) << listing;
  EXPECT_EQ(searching.find("Seq Scan"), std::string::npos) << searching;
  EXPECT_NE(searching.find("uploads_search"), std::string::npos) << searching;
  // The planner's worst case: a rare term that its statistics sample holds (one
  // histogram entry of the search expression contains it). With 100 entries
  // that made it expect 1 % of the library to match and walk the library index
  // filtering every row; with the 1,000 of migration 0007 the trigram index
  // still wins.
  const auto hist =
      sql("SELECT array_length(h, 1), h[array_length(h, 1) / 2] FROM "
          "(SELECT histogram_bounds::text::text[] AS h FROM pg_stats "
          "WHERE tablename = 'uploads_search') s");
  ASSERT_EQ(hist.size(), 1u) << "no statistics for the search expression";
  EXPECT_GE(hist[0][0].as<int>(), 1000);
  const std::string sampled = hist[0][1].c_str();  // "track number N.mp3  "
  const std::size_t from = sampled.find("number "), to = sampled.find(".mp3");
  ASSERT_TRUE(from != std::string::npos && to != std::string::npos) << sampled;
  const std::string rare = sampled.substr(from, to + 1 - from);  // "number N."
  const std::string sampled_plan = search(rare);
  EXPECT_NE(sampled_plan.find("uploads_search"), std::string::npos) << rare << "\n" << sampled_plan;
  // And the real statements answer correctly at that size.
  LibraryQuery q;
  q.user_id = a;
  q.q = "NUMBER 4242.";
  auto r = s->listUploads(q);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r.value().items.size(), 1u);
  EXPECT_EQ(r.value().items[0].filename, "track number 4242.mp3");
}

TEST_F(JobsTest, ContentIsReceivedOnceAndAnAbortedPutCanBeRepeated) {
  auto s = store();
  ASSERT_TRUE(s);
  const UploadRecord up = newUpload(*s, newUser(*s));
  EXPECT_EQ(up.content_state, "none");
  ASSERT_TRUE(s->beginContent(up.id).ok());
  auto second = s->beginContent(up.id);  // a concurrent PUT
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, ErrorCode::kInvalidArgument);
  ASSERT_TRUE(s->endContent(up.id, false).ok());  // the client went away
  ASSERT_TRUE(s->beginContent(up.id).ok());       // so the same URL may try again
  ASSERT_TRUE(s->endContent(up.id, true).ok());
  EXPECT_EQ(uploadField(up.id, "content_state"), "stored");
  auto reused = s->beginContent(up.id);
  ASSERT_FALSE(reused.ok());
  EXPECT_EQ(reused.error().code, ErrorCode::kAlreadyExists);
  EXPECT_FALSE(s->endContent(up.id, true).ok());  // nothing is receiving
  EXPECT_EQ(s->beginContent("00000000-0000-0000-0000-000000000000").error().code,
            ErrorCode::kNotFound);
  ASSERT_TRUE(s->enqueue(up.id, "default").ok());
  // A queued upload takes no bytes even if its state were reset.
  sql("UPDATE uploads SET content_state = 'none' WHERE id = '" + up.id + "'");
  EXPECT_EQ(s->beginContent(up.id).error().code, ErrorCode::kInvalidArgument);
}

TEST_F(JobsTest, CancelledJobStopsItsWorkerAndIsNeverClaimed) {
  auto s = store();
  ASSERT_TRUE(s);
  std::string upload_id;
  const std::int64_t job_id = queuedJob(*s, &upload_id);
  const ClaimedJob job = claimOne(*s, "w1");
  auto cancelled = s->cancelJobs(upload_id);
  ASSERT_TRUE(cancelled.ok());
  EXPECT_TRUE(cancelled.value());
  EXPECT_EQ(jobField(job_id, "state"), "cancelled");
  auto beat = s->heartbeat(job, 0.5);
  ASSERT_FALSE(beat.ok());
  EXPECT_EQ(beat.error().code, ErrorCode::kCancelled);
  auto done = s->complete(job, JobOutcome{});
  ASSERT_FALSE(done.ok());
  EXPECT_EQ(done.error().code, ErrorCode::kCancelled);
  EXPECT_TRUE(claimsNothing(*s, "w2"));
  EXPECT_FALSE(s->cancelJobs(upload_id).value());  // nothing live any more
  // Deleted outright: the same answer, so the worker sweeps its outputs.
  ASSERT_TRUE(s->deleteUpload(upload_id).ok());
  EXPECT_EQ(s->heartbeat(job, 0.5).error().code, ErrorCode::kCancelled);
}

TEST_F(JobsTest, RunningJobAndItsSecretHashAreLeaseChecked) {
  auto s = store();
  ASSERT_TRUE(s);
  std::string upload_id;
  const std::int64_t job_id = queuedJob(*s, &upload_id);
  auto none = s->runningJob(job_id);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none.value().has_value());  // queued, not running
  const ClaimedJob job = claimOne(*s, "remote:a");
  ASSERT_TRUE(s->setJobSecretHash(job, std::string(64, 'a')).ok());
  auto rj = s->runningJob(job_id);
  ASSERT_TRUE(rj.ok() && rj.value());
  EXPECT_EQ(rj.value()->job.lease_owner, "remote:a");
  EXPECT_EQ(rj.value()->job.attempt, 1);
  EXPECT_EQ(rj.value()->job.upload_id, upload_id);
  EXPECT_EQ(rj.value()->job_secret_hash, std::string(64, 'a'));
  ClaimedJob stale = job;
  stale.attempt = 2;
  EXPECT_EQ(s->setJobSecretHash(stale, std::string(64, 'b')).error().code,
            ErrorCode::kPermissionDenied);
  EXPECT_EQ(uploadField(upload_id, "job_secret_hash"), std::string(64, 'a'));
  ASSERT_TRUE(s->complete(job, JobOutcome{}).ok());
  EXPECT_EQ(uploadField(upload_id, "job_secret_hash"), "<null>");
}

}  // namespace
}  // namespace vessel
