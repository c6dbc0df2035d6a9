// The remote-worker endpoints (/internal/v1/jobs/…): `vessel worker --server`
// claims and reports here instead of in SQL. Every call needs the shared
// worker secret; progress/complete/fail also need the one-time job secret
// issued at claim time (only its SHA-256 is stored, in uploads.job_secret_hash).
// Both are compared in constant time. …/release gives an attempt back at shutdown. Status codes:
// 401 missing or wrong worker secret / missing job secret, 403 wrong job secret, 400 bad payload,
// 409 the job is not (or no longer) running under this attempt. A refused call changes nothing.
#include "app.hpp"
#include "signing.hpp"
#include "vessel/log.hpp"
#include "vessel/worker_protocol.hpp"

namespace vessel::server {

namespace {

std::optional<http::Response> checkWorkerSecret(const App& app, const http::Request& req) {
  if (app.settings.worker_secret.empty()) {
    return http::Response::error(404, "not_found", "remote workers are not enabled");
  }
  auto given = req.header(protocol::kWorkerSecretHeader);
  if (!given || !protocol::secretsEqual(protocol::sha256Hex(*given),
                                        protocol::sha256Hex(app.settings.worker_secret))) {
    return http::Response::error(401, "unauthenticated",
                                 given ? "wrong worker secret" : "x-worker-secret is required");
  }
  return std::nullopt;
}

http::Response badPayload(const Error& e) {
  return http::Response::error(400, "invalid_payload", e.message);
}

http::Response notHeld() {
  return http::Response::error(409, "job_not_held",
                               "the job is not running under this attempt (lease lost, "
                               "completed or cancelled)");
}

// The running job `id` at `attempt`, after both secrets check out.
std::variant<ClaimedJob, http::Response> heldJob(App& app, const http::Request& req,
                                                 std::int32_t attempt) {
  auto job_secret = req.header(protocol::kJobSecretHeader);
  if (!job_secret) return http::Response::error(401, "unauthenticated", "x-job-secret is required");
  auto id = parseUnsigned(req.param("id"));
  if (!id || *id > static_cast<std::uint64_t>(INT64_MAX)) return notHeld();
  auto store = app.store();
  if (!store.ok()) return http::errorResponse(store.error());
  auto running = store.value()->runningJob(static_cast<std::int64_t>(*id));
  if (!running.ok()) return http::errorResponse(running.error());
  if (!running.value() || running.value()->job.attempt != attempt) return notHeld();
  const RunningJob& rj = *running.value();
  if (rj.job_secret_hash.empty() ||
      !protocol::secretsEqual(protocol::sha256Hex(*job_secret), rj.job_secret_hash)) {
    return http::Response::error(403, "forbidden", "wrong job secret");
  }
  return rj.job;
}

template <typename Parsed>
std::variant<Parsed, http::Response> parsed(Result<Parsed> r) {
  if (!r.ok()) return badPayload(r.error());
  return std::move(r).value();
}

http::Response fromStore(const Result<void>& r) {
  if (r.ok()) return http::Response::empty(204);
  if (r.error().code == ErrorCode::kPermissionDenied || r.error().code == ErrorCode::kCancelled) {
    return notHeld();
  }
  return http::errorResponse(r.error());
}

}  // namespace

void addInternalRoutes(http::Server& server, App& app) {
  server.route("POST", "/internal/v1/jobs/claim", [&app](http::Request& req) {
    if (auto refused = checkWorkerSecret(app, req)) return std::move(*refused);
    auto body = parseObject(req.body.empty() ? std::string_view("{}") : req.body, {"worker"});
    if (auto* r = std::get_if<http::Response>(&body)) return std::move(*r);
    const nlohmann::json& j = std::get<nlohmann::json>(body);
    std::string worker = "remote";
    if (j.contains("worker")) {
      auto w = requireString(j, "worker", 200);
      if (auto* r = std::get_if<http::Response>(&w)) return std::move(*r);
      worker = std::get<std::string>(w);
    }
    auto store = app.store();
    if (!store.ok()) return http::errorResponse(store.error());
    const std::string owner = "remote:" + req.peer + ":" + worker;
    auto claimed = store.value()->claim(owner);
    if (!claimed.ok()) return http::errorResponse(claimed.error());
    if (!claimed.value()) return http::Response::empty(204);
    const ClaimedJob& job = *claimed.value();
    auto secret = protocol::newJobSecret();
    Result<void> stored =
        secret.ok() ? store.value()->setJobSecretHash(job, protocol::sha256Hex(secret.value()))
                    : Result<void>(secret.error());
    if (!stored.ok()) {
      (void)store.value()->release(job);  // hand it back: the worker never saw it
      return http::errorResponse(stored.error());
    }
    log::info("job claimed by remote worker", {{"job_id", static_cast<long long>(job.job_id)},
                                               {"attempt", static_cast<long long>(job.attempt)},
                                               {"upload_id", job.upload_id},
                                               {"worker", owner}});
    return http::Response::json(200,
                                protocol::toJson(protocol::ClaimResponse{job, secret.value()}));
  });

  server.route("POST", "/internal/v1/jobs/{id}/progress", [&app](http::Request& req) {
    if (auto refused = checkWorkerSecret(app, req)) return std::move(*refused);
    auto p = parsed(protocol::parseProgressRequest(req.body));
    if (auto* r = std::get_if<http::Response>(&p)) return std::move(*r);
    const auto& body = std::get<protocol::ProgressRequest>(p);
    auto job = heldJob(app, req, body.attempt);
    if (auto* r = std::get_if<http::Response>(&job)) return std::move(*r);
    auto store = app.store();
    if (!store.ok()) return http::errorResponse(store.error());
    return fromStore(store.value()->heartbeat(std::get<ClaimedJob>(job), body.progress));
  });

  server.route("POST", "/internal/v1/jobs/{id}/complete", [&app](http::Request& req) {
    if (auto refused = checkWorkerSecret(app, req)) return std::move(*refused);
    auto p = parsed(protocol::parseCompleteRequest(req.body));
    if (auto* r = std::get_if<http::Response>(&p)) return std::move(*r);
    const auto& body = std::get<protocol::CompleteRequest>(p);
    auto job = heldJob(app, req, body.attempt);
    if (auto* r = std::get_if<http::Response>(&job)) return std::move(*r);
    const ClaimedJob& held = std::get<ClaimedJob>(job);
    // The master playlist must be where the layout says, and really there.
    const std::string expected = uploadPrefix(held.user_id, held.upload_id) + "master.m3u8";
    if (body.outcome.master_key != expected) {
      return badPayload(
          makeError(ErrorCode::kInvalidArgument, "master_key must be '" + expected + "'"));
    }
    auto exists = app.storage->exists(expected);
    if (!exists.ok()) return http::errorResponse(exists.error());
    if (!exists.value()) {
      return http::Response::error(409, "outputs_missing",
                                   "master.m3u8 is not in storage; write the ladder first");
    }
    auto store = app.store();
    if (!store.ok()) return http::errorResponse(store.error());
    auto r = store.value()->complete(held, body.outcome);
    if (r.ok()) {
      log::info("job done (remote)",
                {{"job_id", static_cast<long long>(held.job_id)}, {"upload_id", held.upload_id}});
    }
    return fromStore(r);
  });

  server.route("POST", "/internal/v1/jobs/{id}/fail", [&app](http::Request& req) {
    if (auto refused = checkWorkerSecret(app, req)) return std::move(*refused);
    auto p = parsed(protocol::parseFailRequest(req.body));
    if (auto* r = std::get_if<http::Response>(&p)) return std::move(*r);
    const auto& body = std::get<protocol::FailRequest>(p);
    auto job = heldJob(app, req, body.attempt);
    if (auto* r = std::get_if<http::Response>(&job)) return std::move(*r);
    auto store = app.store();
    if (!store.ok()) return http::errorResponse(store.error());
    return fromStore(store.value()->fail(std::get<ClaimedJob>(job), body.error));
  });

  // A worker shutting down gives its attempt back (not counted) instead of
  // leaving the job to wait out its lease.
  server.route("POST", "/internal/v1/jobs/{id}/release", [&app](http::Request& req) {
    if (auto refused = checkWorkerSecret(app, req)) return std::move(*refused);
    auto p = parsed(protocol::parseReleaseRequest(req.body));
    if (auto* r = std::get_if<http::Response>(&p)) return std::move(*r);
    const auto& body = std::get<protocol::ReleaseRequest>(p);
    auto job = heldJob(app, req, body.attempt);
    if (auto* r = std::get_if<http::Response>(&job)) return std::move(*r);
    auto store = app.store();
    if (!store.ok()) return http::errorResponse(store.error());
    return fromStore(store.value()->release(std::get<ClaimedJob>(job)));
  });
}

}  // namespace vessel::server
