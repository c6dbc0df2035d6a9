// `vessel worker --server URL --worker-secret-file FILE`: a worker without
// database credentials. It claims jobs and reports progress, completion and
// failure over HTTP (POST /internal/v1/jobs/claim, /{id}/progress,
// /{id}/complete, /{id}/fail; bodies in vessel/worker_protocol.hpp) and reads
// and writes storage itself, built from the same config as any worker (a
// shared filesystem through the local plugin, or an object store).
//
//   vessel worker --server https://vessel.example.net --workers 4
//                 --worker-secret-file /etc/vessel/worker-secret --config worker.toml
//
// Every call carries x-worker-secret; per-job calls also carry the one-time
// x-job-secret from the claim. 409 means the job is no longer ours: stop it,
// report nothing more, delete nothing. A job cancelled at shutdown is released back to the queue
// (or, if that call fails, returns when its lease expires).
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "cli.hpp"
#include "vessel/http_client.hpp"
#include "vessel/log.hpp"
#include "vessel/unique_fd.hpp"
#include "vessel/worker.hpp"
#include "vessel/worker_protocol.hpp"

namespace vessel::cli {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr milliseconds kIdlePoll{2000};         // after a 204 from claim, ± 20 %
constexpr milliseconds kClaimTimeout{15'000};   // one claim request
constexpr milliseconds kReportTimeout{30'000};  // one complete/fail request
constexpr seconds kReportBudget{120};           // retrying complete/fail, then the lease decides
constexpr std::size_t kMaxSecretBytes = 4096;
constexpr std::size_t kMaxFailMessageBytes = 4096;  // what parseFailRequest accepts
constexpr std::size_t kMaxProbeValueBytes = 1024;   // what parseCompleteRequest accepts

long long ll(std::int64_t v) { return static_cast<long long>(v); }

double jitter(double low, double high) {
  thread_local std::mt19937 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(low, high)(rng);
}

milliseconds scaled(milliseconds d, double factor) {
  return milliseconds(static_cast<milliseconds::rep>(static_cast<double>(d.count()) * factor));
}

// Exponential backoff with ±25 % jitter.
class Backoff {
 public:
  Backoff(milliseconds base, milliseconds max) : base_(base), max_(max), next_(base) {}
  milliseconds next() {
    milliseconds d = next_;
    next_ = std::min(max_, next_ * 2);
    return scaled(d, jitter(0.75, 1.25));
  }
  void reset() { next_ = base_; }

 private:
  milliseconds base_, max_, next_;
};

// Cuts at most `max` bytes without splitting a UTF-8 sequence.
std::string truncateUtf8(std::string s, std::size_t max) {
  if (s.size() <= max) return s;
  std::size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  s.resize(n);
  return s;
}

std::string dumpJson(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool hasControlOrSpace(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u <= 0x20 || u == 0x7f;
  });
}

// --server: http(s)://host[:port][/prefix], no credentials, query or fragment.
Result<std::string> serverBase(std::string url) {
  auto bad = [&](const std::string& why) {
    return makeError(ErrorCode::kInvalidArgument, "--server '" + redactUrl(url) + "': " + why);
  };
  const bool http = url.rfind("http://", 0) == 0, https = url.rfind("https://", 0) == 0;
  if (!http && !https) return bad("must start with http:// or https://");
  if (hasControlOrSpace(url)) return bad("contains spaces or control characters");
  if (url.find_first_of("?#") != std::string::npos) return bad("must not have a query or fragment");
  const std::size_t host_start = url.find("://") + 3;
  const std::string authority = url.substr(host_start, url.find('/', host_start) - host_start);
  if (authority.empty()) return bad("has no host");
  if (authority.find('@') != std::string::npos) {
    return bad("must not carry credentials (the secret goes in --worker-secret-file)");
  }
  while (url.size() > host_start && url.back() == '/') url.pop_back();
  return url;
}

bool isLoopback(const std::string& base) {
  const std::size_t host_start = base.find("://") + 3;
  std::string host = base.substr(host_start, base.find('/', host_start) - host_start);
  if (host.rfind("[::1]", 0) == 0) return true;
  host = host.substr(0, host.find(':'));
  return host == "localhost" || host.rfind("127.", 0) == 0;
}

// The whole file, less trailing line ends; never echoed anywhere.
Result<std::string> readSecretFile(const std::string& path) {
  auto bad = [&](const std::string& why) {
    return makeError(ErrorCode::kConfig, "worker secret file '" + path + "': " + why);
  };
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return bad(std::string("cannot open: ") + std::strerror(errno));
  std::string secret;
  char buf[1024];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return bad(std::string("cannot read: ") + std::strerror(errno));
    if (n == 0) break;
    secret.append(buf, static_cast<std::size_t>(n));
    if (secret.size() > kMaxSecretBytes) {
      return bad("larger than " + std::to_string(kMaxSecretBytes) + " bytes");
    }
  }
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.empty()) return bad("is empty");
  if (hasControlOrSpace(secret)) return bad("holds spaces or control characters");
  return secret;
}

// How a call ended, as far as the caller must act on it.
enum class Verdict {
  kOk,         ///< 2xx
  kGone,       ///< 409: the job is no longer ours
  kRefused,    ///< 401/403: a secret is wrong
  kNotFound,   ///< 404: no such endpoint (wrong --server) or no such job
  kRejected,   ///< any other 4xx: we sent something the server cannot take (a bug)
  kTransient,  ///< 5xx, 408, 429, connection failures, timeouts
};

struct Reply {
  Verdict verdict = Verdict::kTransient;
  long status = 0;  ///< 0 when no HTTP response came back
  std::string body;
  std::string detail;  ///< for logs: the transport error or the server's error object
};

// `{"error":{"code","message"}}` as "code: message", else a short excerpt.
std::string serverError(const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("error") && j["error"].is_object()) {
    const auto& e = j["error"];
    std::string code =
        e.contains("code") && e["code"].is_string() ? e["code"].get<std::string>() : "";
    std::string msg =
        e.contains("message") && e["message"].is_string() ? e["message"].get<std::string>() : "";
    return truncateUtf8(code + (code.empty() || msg.empty() ? "" : ": ") + msg, 500);
  }
  return truncateUtf8(body, 200);
}

// One thread's connection to the server (one HttpClient: kept alive).
class ServerApi {
 public:
  ServerApi(const std::string& base, const std::string& worker_secret)
      : base_(base), worker_secret_(worker_secret) {}

  Reply post(const std::string& path, const std::string& body, const std::string* job_secret,
             milliseconds timeout) {
    std::vector<std::pair<std::string, std::string>> headers = {
        {"content-type", "application/json"},
        {"accept", "application/json"},
        {std::string(protocol::kWorkerSecretHeader), worker_secret_}};
    if (job_secret) headers.emplace_back(std::string(protocol::kJobSecretHeader), *job_secret);
    Reply reply;
    auto r = http_.request("POST", base_ + path, headers, body, timeout);
    if (!r.ok()) {
      reply.detail = r.error().message;  // names the method and URL
      return reply;
    }
    reply.status = r.value().status;
    reply.body = std::move(r.value().body);
    const long s = reply.status;
    if (s >= 200 && s < 300) {
      reply.verdict = Verdict::kOk;
      return reply;
    }
    reply.detail = "HTTP " + std::to_string(s) + " from POST " + redactUrl(base_ + path) + ": " +
                   serverError(reply.body);
    if (s == 409) {
      reply.verdict = Verdict::kGone;
    } else if (s == 401 || s == 403) {
      reply.verdict = Verdict::kRefused;
    } else if (s == 404) {
      reply.verdict = Verdict::kNotFound;
    } else if (s == 408 || s == 429 || s >= 500) {
      reply.verdict = Verdict::kTransient;
    } else {
      reply.verdict = Verdict::kRejected;
    }
    return reply;
  }

 private:
  HttpClient http_;
  const std::string& base_;
  const std::string& worker_secret_;
};

// State every worker thread shares with the main thread.
struct Shared {
  std::string base;
  std::string secret;
  std::string name_prefix;  ///< hostname:pid
  Runtime* runtime = nullptr;
  std::shared_ptr<Storage> storage;
  seconds heartbeat{5};
  seconds stall_timeout{60};
  std::string scratch_dir = "/tmp";

  std::atomic<bool> stopping{false};  ///< no new claims
  std::atomic<bool> cancel{false};    ///< running jobs stop now
  std::atomic<std::uint64_t> done{0}, failed{0}, abandoned{0};

  std::mutex mu;
  std::condition_variable cv;        ///< wakes sleepers on stop/cancel, the main thread on exits
  int live_threads = 0;              ///< guarded by mu
  std::optional<std::string> fatal;  ///< guarded by mu: why this process must exit

  /// Sleeps `d` unless `flag` becomes true first; returns whether the full time passed.
  bool sleepUnless(milliseconds d, const std::atomic<bool>& flag) {
    std::unique_lock lock(mu);
    return !cv.wait_for(lock, d, [&] { return flag.load(); });
  }
  void set(std::atomic<bool>& flag) {
    {
      std::lock_guard lock(mu);
      flag.store(true);
    }
    cv.notify_all();
  }
  void setFatal(std::string why) {
    {
      std::lock_guard lock(mu);
      if (!fatal) fatal = std::move(why);
      stopping.store(true);
      cancel.store(true);
    }
    cv.notify_all();
  }
  bool hasFatal() {
    std::lock_guard lock(mu);
    return fatal.has_value();
  }
};

protocol::FailRequest failRequest(const ClaimedJob& job, const Error& err) {
  protocol::FailRequest f;
  f.attempt = job.attempt;
  f.error = err;
  // The protocol names codes up to kInternal; a credentials failure of the
  // storage is, for the job, a permission problem.
  if (f.error.code == ErrorCode::kUnauthenticated) f.error.code = ErrorCode::kPermissionDenied;
  f.error.message = truncateUtf8(f.error.message, kMaxFailMessageBytes);
  return f;
}

protocol::CompleteRequest completeRequest(const ClaimedJob& job, JobOutcome outcome) {
  for (auto& [k, v] : outcome.probe) v = truncateUtf8(std::move(v), kMaxProbeValueBytes);
  return protocol::CompleteRequest{job.attempt, std::move(outcome)};
}

// POSTs a complete/fail report, retrying transient failures with backoff for
// up to kReportBudget (or until shutdown cancels). Returns whether it was taken.
bool report(Shared& sh, ServerApi& api, const std::string& what, const std::string& path,
            const std::string& body, const protocol::ClaimResponse& claim,
            const std::string& worker) {
  const auto deadline = Clock::now() + kReportBudget;
  Backoff backoff(milliseconds(1000), milliseconds(15'000));
  for (int attempt = 1;; ++attempt) {
    auto remaining = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    Reply r = api.post(path, body, &claim.job_secret,
                       std::clamp(remaining, milliseconds(1000), kReportTimeout));
    auto fields = [&](std::string_view msg, log::Level level) {
      log::write(level, msg,
                 {{"worker", worker},
                  {"job_id", ll(claim.job.job_id)},
                  {"report", what},
                  {"status", static_cast<long long>(r.status)},
                  {"error", r.detail}});
    };
    switch (r.verdict) {
      case Verdict::kOk:
        return true;
      case Verdict::kGone:
        fields("the job is no longer ours (409); report dropped, nothing deleted",
               log::Level::kWarn);
        return false;
      case Verdict::kRefused:
        fields("the server refused the secrets for this job; report dropped", log::Level::kError);
        return false;
      case Verdict::kNotFound:
      case Verdict::kRejected:
        fields("the server refused the report (a bug in worker or server); report dropped",
               log::Level::kError);
        return false;
      case Verdict::kTransient:
        break;
    }
    milliseconds wait = backoff.next();
    if (Clock::now() + wait >= deadline || sh.cancel.load()) {
      fields(
          "giving up on the report; the job returns to the queue when its lease "
          "expires",
          log::Level::kError);
      return false;
    }
    log::warn("report failed; retrying", {{"worker", worker},
                                          {"job_id", ll(claim.job.job_id)},
                                          {"report", what},
                                          {"try", static_cast<long long>(attempt)},
                                          {"retry_in_ms", static_cast<long long>(wait.count())},
                                          {"error", r.detail}});
    if (!sh.sleepUnless(wait, sh.cancel)) {
      fields("shutting down; report not delivered, the lease expiry gives the job back",
             log::Level::kWarn);
      return false;
    }
  }
}

void runClaimed(Shared& sh, ServerApi& api, const std::string& worker,
                const protocol::ClaimResponse& claim) {
  const ClaimedJob& job = claim.job;
  log::Context log_ctx({{"job_id", static_cast<long long>(job.job_id)},
                        {"upload_id", job.upload_id},
                        {"user_id", job.user_id}});
  const std::string job_path = "/internal/v1/jobs/" + std::to_string(job.job_id);
  log::info("job claimed", {{"worker", worker},
                            {"job_id", ll(job.job_id)},
                            {"attempt", ll(job.attempt)},
                            {"upload_id", job.upload_id},
                            {"user_id", job.user_id}});
  JobRunContext ctx;
  ctx.runtime = sh.runtime;
  ctx.storage = sh.storage;
  ctx.stall_timeout = sh.stall_timeout;
  ctx.heartbeat = sh.heartbeat;
  ctx.scratch_dir = sh.scratch_dir;
  ctx.cancel = &sh.cancel;
  const milliseconds progress_timeout =
      std::clamp<milliseconds>(sh.heartbeat, seconds(2), seconds(10));
  ctx.on_heartbeat = [&](double p) {
    const std::string body = dumpJson(protocol::toJson(protocol::ProgressRequest{job.attempt, p}));
    Reply r = api.post(job_path + "/progress", body, &claim.job_secret, progress_timeout);
    auto note = [&](log::Level level, std::string_view msg) {
      log::write(level, msg,
                 {{"worker", worker},
                  {"job_id", ll(job.job_id)},
                  {"status", static_cast<long long>(r.status)},
                  {"error", r.detail}});
    };
    switch (r.verdict) {
      case Verdict::kOk:
        return true;
      case Verdict::kGone:
        note(log::Level::kWarn, "the job is no longer ours (409): stopping it");
        return false;
      case Verdict::kRefused:
        note(log::Level::kError, "the server refused the secrets for this job: stopping it");
        return false;
      case Verdict::kNotFound:
      case Verdict::kRejected:
        note(log::Level::kError, "progress report refused (a bug in worker or server)");
        return true;
      case Verdict::kTransient:
        note(log::Level::kWarn, "progress report failed; trying again at the next heartbeat");
        return true;
    }
    return true;
  };
  const auto started = Clock::now();
  bool lease_lost = false;
  auto outcome = runJob(job, ctx, lease_lost);
  const double secs = std::chrono::duration<double>(Clock::now() - started).count();
  if (lease_lost) {
    sh.abandoned++;
    log::warn("job stopped; reporting nothing more",
              {{"worker", worker}, {"job_id", ll(job.job_id)}});
    return;
  }
  if (outcome.ok()) {
    const double audio_s = outcome.value().duration_s;
    const std::string body =
        dumpJson(protocol::toJson(completeRequest(job, std::move(outcome).value())));
    if (report(sh, api, "complete", job_path + "/complete", body, claim, worker)) {
      sh.done++;
      log::info("job done", {{"worker", worker},
                             {"job_id", ll(job.job_id)},
                             {"upload_id", job.upload_id},
                             {"seconds", secs},
                             {"audio_seconds", audio_s}});
    }
    return;
  }
  const Error& err = outcome.error();
  if (err.code == ErrorCode::kCancelled) {
    // Shutdown: give the attempt back so the job is claimable at once and the
    // attempt is not counted. If that call fails the lease expiry returns it.
    sh.abandoned++;
    const std::string body = dumpJson(protocol::toJson(protocol::ReleaseRequest{job.attempt}));
    Reply r = api.post(job_path + "/release", body, &claim.job_secret, milliseconds(5000));
    log::info("job released at shutdown", {{"worker", worker},
                                           {"job_id", ll(job.job_id)},
                                           {"released", r.status == 204},
                                           {"detail", r.status == 204 ? std::string() : r.detail}});
    return;
  }
  sh.failed++;
  const std::string body = dumpJson(protocol::toJson(failRequest(job, err)));
  bool recorded = report(sh, api, "fail", job_path + "/fail", body, claim, worker);
  log::warn("job failed", {{"worker", worker},
                           {"job_id", ll(job.job_id)},
                           {"upload_id", job.upload_id},
                           {"error", err.message},
                           {"code", errorCodeName(err.code)},
                           {"retryable", isTransient(err.code)},
                           {"recorded", recorded}});
}

void workerThread(Shared& sh, int index) {
  const std::string worker = sh.name_prefix + ":" + std::to_string(index);
  ServerApi api(sh.base, sh.secret);
  const std::string claim_body = dumpJson({{"worker", worker}});
  Backoff backoff(milliseconds(500), milliseconds(30'000));
  while (!sh.stopping.load()) {
    Reply r = api.post("/internal/v1/jobs/claim", claim_body, nullptr, kClaimTimeout);
    if (r.verdict == Verdict::kOk && r.status == 204) {
      backoff.reset();
      sh.sleepUnless(scaled(kIdlePoll, jitter(0.8, 1.2)), sh.stopping);
      continue;
    }
    if (r.verdict == Verdict::kRefused) {
      log::error("the server refused the worker secret", {{"worker", worker}, {"error", r.detail}});
      sh.setFatal("the server refused the worker secret (HTTP " + std::to_string(r.status) +
                  "): check --worker-secret-file against the server's worker secret");
      return;
    }
    if (r.verdict == Verdict::kNotFound) {
      log::error("the server has no remote-worker endpoint",
                 {{"worker", worker}, {"error", r.detail}});
      sh.setFatal("no remote-worker endpoint at '" + redactUrl(sh.base) +
                  "/internal/v1/jobs/claim' (HTTP 404: " + serverError(r.body) +
                  "): check --server, and that the server has a worker secret");
      return;
    }
    std::optional<protocol::ClaimResponse> claim;
    if (r.verdict == Verdict::kOk && r.status == 200) {
      auto parsed = protocol::parseClaimResponse(r.body);
      if (parsed.ok()) {
        claim = std::move(parsed).value();
      } else {
        r.detail = "claim response not understood: " + parsed.error().message;
      }
    } else if (r.verdict == Verdict::kOk) {
      r.detail = "unexpected HTTP " + std::to_string(r.status) + " from claim";
    }
    if (!claim) {
      milliseconds wait = backoff.next();
      log::write(r.verdict == Verdict::kTransient ? log::Level::kWarn : log::Level::kError,
                 "claim failed; retrying",
                 {{"worker", worker},
                  {"status", static_cast<long long>(r.status)},
                  {"retry_in_ms", static_cast<long long>(wait.count())},
                  {"error", r.detail}});
      sh.sleepUnless(wait, sh.stopping);
      continue;
    }
    backoff.reset();
    runClaimed(sh, api, worker, *claim);
  }
}

}  // namespace

int cmdRemoteWorker(const Flags& flags) {
  if (!flags.has("--worker-secret-file")) {
    return fail(kExitUsage, "--server needs --worker-secret-file FILE (the shared worker secret)");
  }
  if (flags.has("--database-url")) {
    return fail(kExitUsage,
                "--database-url does not go with --server: remote workers use no database");
  }
  auto base = serverBase(flags.get("--server"));
  if (!base.ok()) return fail(kExitUsage, base.error().message);
  auto secret = readSecretFile(flags.get("--worker-secret-file"));
  if (!secret.ok()) return fail(kExitConfig, secret.error().message);

  // Before any thread starts: then only this thread receives them (sigwait).
  const sigset_t stop_signals = blockStopSignals();

  Env env;
  if (auto code = openEnv(flags, env, {.storage = true, .database = false})) return *code;
  const Config& c = env.runtime->config();
  int concurrency = 0;
  if (auto code = workerCount(flags, c, concurrency)) return *code;
  if (concurrency < 1) return fail(kExitUsage, "--workers must be 1..256 with --server");

  Shared sh;
  sh.base = std::move(base).value();
  sh.secret = std::move(secret).value();
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  // The server keeps worker names short (200 bytes); a long host name is cut.
  sh.name_prefix = std::string(host).substr(0, 120) + ":" + std::to_string(::getpid());
  sh.runtime = env.runtime.get();
  sh.storage = env.storage;
  sh.heartbeat = seconds(c.getInt("workers.heartbeat_s"));
  sh.stall_timeout = seconds(c.getInt("transcode.stall_timeout_s"));
  const seconds grace(c.getInt("workers.shutdown_grace_s"));
  if (sh.base.rfind("http://", 0) == 0 && !isLoopback(sh.base)) {
    log::warn(
        "the server URL is plain http: the worker and job secrets cross the network "
        "unencrypted; use https://",
        {{"server", sh.base}});
  }

  std::vector<std::thread> threads;
  sh.live_threads = concurrency;
  for (int i = 0; i < concurrency; ++i) {
    threads.emplace_back([&sh, i] {
      workerThread(sh, i);
      {
        std::lock_guard lock(sh.mu);
        sh.live_threads--;
      }
      sh.cv.notify_all();
    });
  }
  log::info("remote worker started",
            {{"server", sh.base}, {"workers", static_cast<long long>(concurrency)}});

  // Until a stop signal, or a thread found a reason to end the process.
  const timespec tick{0, 200'000'000};
  int sig = 0;
  while (sig <= 0 && !sh.hasFatal()) sig = sigtimedwait(&stop_signals, nullptr, &tick);
  if (sig > 0) {
    log::info("stopping: no new claims; running jobs get workers.shutdown_grace_s",
              {{"signal", static_cast<long long>(sig)}});
  }
  sh.set(sh.stopping);
  {
    std::unique_lock lock(sh.mu);
    sh.cv.wait_for(lock, grace, [&] { return sh.live_threads == 0 || sh.cancel.load(); });
  }
  sh.set(sh.cancel);  // grace over: what still runs is cancelled and left to its lease
  for (auto& t : threads) t.join();
  log::info("remote worker stopped", {{"done", static_cast<long long>(sh.done.load())},
                                      {"failed", static_cast<long long>(sh.failed.load())},
                                      {"abandoned", static_cast<long long>(sh.abandoned.load())}});
  std::optional<std::string> fatal;
  {
    std::lock_guard lock(sh.mu);
    fatal = sh.fatal;
  }
  if (fatal) return fail(kExitConfig, *fatal);
  return kExitOk;
}

}  // namespace vessel::cli
