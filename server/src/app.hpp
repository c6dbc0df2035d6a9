// What every API module shares: the runtime, storage, auth, the database and
// the server's settings, plus the per-thread job store and the caller lookup.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "http.hpp"
#include "protect.hpp"
#include "vessel/auth.hpp"
#include "vessel/jobs.hpp"
#include "vessel/runtime.hpp"
#include "vessel/scheduler.hpp"
#include "vessel/storage.hpp"

namespace vessel::server {

struct Settings {
  std::uint64_t max_upload_bytes = 2ULL << 30;
  std::chrono::seconds upload_url_ttl{3600};
  std::set<std::string, std::less<>> content_types;
  std::string secret_key;     ///< HMAC key for signed URLs (bytes)
  std::string worker_secret;  ///< "" = remote workers disabled
  std::string cookie_name = "vessel_session";
  bool cookie_secure = false;
  std::string public_url;  ///< base for absolute URLs; "" = from the Host header
  std::string pipeline;    ///< the ladder new uploads are transcoded with
  std::chrono::seconds session_ttl{30 * 24 * 3600};
  /// Media on local disk may be read on a loop thread when the session and
  /// the upload's readiness are cached (no database, no network).
  bool inline_media = false;
  std::string metrics_token;                 ///< "" = /metrics is open
  std::vector<std::string> allowed_origins;  ///< besides our own, for cookie writes (CSRF)
};

class EventHub;
class LibraryCache;
class SessionCache;

/// Counters the server keeps in memory for /metrics (ops.cpp).
struct Metrics {
  std::mutex mu;
  std::map<std::tuple<std::string, std::string, int>, std::uint64_t> requests;
  std::array<std::uint64_t, 12> latency_buckets{};
  double latency_sum = 0;
  std::uint64_t latency_count = 0;
  std::atomic<std::uint64_t> uploaded_bytes{0}, served_bytes{0}, rate_limited{0};
  void record(const http::Request& req, const http::Response& resp, double seconds);
};

struct App {
  Runtime* runtime = nullptr;
  EventHub* events = nullptr;  ///< live status (events.hpp)
  LibraryCache* library_cache = nullptr;
  SessionCache* session_cache = nullptr;  ///< library pages (cache.hpp); never null in a server
  Metrics* metrics = nullptr;
  RateLimiter* auth_per_address = nullptr;   ///< register + login, per client address
  RateLimiter* login_per_account = nullptr;  ///< login, per email
  SchedulerRunner* scheduler = nullptr;      ///< may be null
  std::shared_ptr<Storage> storage;
  std::shared_ptr<Auth> auth;
  std::shared_ptr<UserDirectory> users;
  std::string conninfo;
  QueueOptions queue;
  Settings settings;

  /// This thread's JobStore for this app (connected on first use; reconnects
  /// by itself after the database comes back). kUnavailable when it cannot connect.
  Result<JobStore*> store() const;

  /// The session token a request carries: `Authorization: Bearer …`, and the
  /// session cookie ("" when absent).
  std::string bearerToken(const http::Request& req) const;
  std::string cookieToken(const http::Request& req) const;

  /// The caller of a request, or nullopt. kUnavailable when the directory is down.
  Result<std::optional<AuthUser>> caller(const http::Request& req) const;
  /// The caller if the session cache knows it (never blocks); nullopt otherwise,
  /// also when the request would fail the CSRF check.
  std::optional<AuthUser> cachedCaller(const http::Request& req) const;
  /// The session cache's key for the token a request carries ("" = none).
  std::string sessionKey(const http::Request& req) const;

  /// Drops the cached library pages of `user_id` (call after a write to them).
  void libraryChanged(const std::string& user_id) const;

  /// The absolute base URL ("http://host:port") as the client addressed us.
  std::string baseUrl(const http::Request& req) const;
};

/// Responds 401/403/503 unless the request carries valid credentials (and, for a
/// cookie-authenticated write, comes from an allowed origin).
#define VESSEL_REQUIRE_CALLER(app, req, var)                                                      \
  auto var##_result = (app).caller(req);                                                          \
  if (!var##_result.ok()) {                                                                       \
    if (var##_result.error().code == ::vessel::ErrorCode::kPermissionDenied)                      \
      return ::vessel::http::Response::error(403, "csrf_rejected", var##_result.error().message); \
    return ::vessel::http::errorResponse(var##_result.error());                                   \
  }                                                                                               \
  if (!var##_result.value())                                                                      \
    return ::vessel::http::Response::error(401, "unauthenticated", "sign in first");              \
  const ::vessel::AuthUser& var = *var##_result.value()

// --- request body helpers (strict JSON objects) -------------------------------

/// Parses `body` as a JSON object whose keys are all in `allowed`.
/// On failure returns the 400 Response to send.
std::variant<nlohmann::json, http::Response> parseObject(
    std::string_view body, std::initializer_list<const char*> allowed);
/// A required string member (1..max_bytes, valid UTF-8, no control characters).
std::variant<std::string, http::Response> requireString(const nlohmann::json& obj, const char* name,
                                                        std::size_t max_bytes);

// --- registration of each module's routes --------------------------------------

void addAuthRoutes(http::Server& server, App& app);
void addUploadRoutes(http::Server& server, App& app);
void addMediaRoutes(http::Server& server, App& app);
void addInternalRoutes(http::Server& server, App& app);
void addOpsRoutes(http::Server& server, App& app);
/// GET / and /assets/…: the web app from server.web_root (or found next to the
/// executable). kConfig when a configured web root has no index.html.
Result<void> addWebRoutes(http::Server& server, App& app);

/// The JSON the API shows for an upload. With a publicly served store
/// (storage.s3.public_base_url) stream_url is the public master playlist.
nlohmann::json uploadJson(const UploadRecord& u, const Storage* storage = nullptr);
/// The same JSON object appended as text (the library page's fast path).
void appendUploadJson(std::string& out, const UploadRecord& u, const Storage* storage = nullptr);

}  // namespace vessel::server
