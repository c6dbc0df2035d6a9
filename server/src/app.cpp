// AppServer: assembles the database, storage, auth, workers, scheduler and the
// HTTP routes into one server; plus the helpers every API module shares.
#include "app.hpp"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "cache.hpp"
#include "events.hpp"
#include "json_text.hpp"
#include "signing.hpp"
#include "vessel/log.hpp"
#include "vessel/scheduler.hpp"
#include "vessel/server.hpp"
#include "vessel/user_directory.hpp"
#include "vessel/worker.hpp"

namespace vessel {

namespace fs = std::filesystem;

std::vector<ConfigField> serverConfigFields() {
  auto field = [](std::string key, ConfigType type, ConfigValue def, std::string doc) {
    ConfigField f;
    f.key = std::move(key);
    f.type = type;
    f.default_value = std::move(def);
    f.doc = std::move(doc);
    return f;
  };
  std::vector<ConfigField> f;
  f.push_back(field("server.listen", ConfigType::kString, std::string("127.0.0.1:8080"),
                    "address:port the HTTP server listens on (port 0 = any free port)"));
  f.push_back(field("server.handler_threads", ConfigType::kInt, std::int64_t{8},
                    "threads that run API handlers (database and storage calls)"));
  f.back().min_int = 1;
  f.back().max_int = 256;
  f.push_back(field("server.io_threads", ConfigType::kInt, std::int64_t{0},
                    "I/O loops sharing the listening port (SO_REUSEPORT); 0 = one per core, at "
                    "most 8"));
  f.back().min_int = 0;
  f.back().max_int = 64;
  f.push_back(field("server.max_upload_bytes", ConfigType::kInt, std::int64_t{2147483648},
                    "largest original accepted, in bytes (413 above it)"));
  f.back().min_int = 1;
  f.push_back(field("server.upload_url_ttl_s", ConfigType::kInt, std::int64_t{3600},
                    "lifetime of a signed upload URL, seconds"));
  f.back().min_int = 1;
  f.back().max_int = 7 * 24 * 3600;
  f.push_back(field(
      "server.content_types", ConfigType::kStringList,
      std::vector<std::string>{"audio/mpeg", "audio/mp3", "audio/wav", "audio/x-wav", "audio/wave",
                               "audio/vnd.wave", "audio/flac", "audio/x-flac", "audio/ogg",
                               "audio/opus", "audio/mp4", "audio/x-m4a", "audio/m4a", "audio/aac",
                               "audio/aiff", "audio/x-aiff", "audio/webm"},
      "content types accepted for uploads (415 otherwise)"));
  f.push_back(field("server.secret_key", ConfigType::kString, std::string(),
                    "HMAC key for signed URLs; empty = generated once into <data_dir>/secret.key "
                    "(set it explicitly when several servers share a database)"));
  f.back().secret = true;
  f.push_back(field("server.worker_secret", ConfigType::kString, std::string(),
                    "shared secret remote workers send as x-worker-secret; empty (and no "
                    "worker_secret_file) = the /internal endpoints are off"));
  f.back().secret = true;
  f.push_back(field("server.worker_secret_file", ConfigType::kString, std::string(),
                    "file holding the worker secret (instead of server.worker_secret)"));
  f.push_back(field("server.metrics_token", ConfigType::kString, std::string(),
                    "bearer token /metrics requires; empty = /metrics is open"));
  f.back().secret = true;
  f.push_back(field("server.allowed_origins", ConfigType::kStringList, std::vector<std::string>{},
                    "origins (scheme://host[:port]) besides the server's own whose pages may "
                    "make cookie-authenticated writes (CSRF) and call the API cross-origin "
                    "(CORS)"));
  f.push_back(field("server.rate_limit.auth_per_minute", ConfigType::kInt, std::int64_t{30},
                    "register + login requests per client address per minute (0 = no limit)"));
  f.back().min_int = 0;
  f.push_back(field("server.rate_limit.login_per_minute", ConfigType::kInt, std::int64_t{10},
                    "login attempts per account per minute (0 = no limit)"));
  f.back().min_int = 0;
  f.push_back(field("server.limits.header_timeout_s", ConfigType::kInt, std::int64_t{15},
                    "a request head must arrive within this (also the keep-alive idle limit)"));
  f.back().min_int = 1;
  f.push_back(field("server.limits.min_body_rate", ConfigType::kInt, std::int64_t{1024},
                    "bytes/s a request body must average after its first 10 s (slower: cut off)"));
  f.back().min_int = 0;
  f.push_back(field("server.limits.max_header_bytes", ConfigType::kInt, std::int64_t{16384},
                    "a request line plus headers over this is answered 431 (at most 65536: "
                    "libsoup's own limit)"));
  f.back().min_int = 1024;
  f.back().max_int = 65536;
  f.push_back(field("server.limits.request_timeout_s", ConfigType::kInt, std::int64_t{30},
                    "a request not answered within this gets 503 timeout (uploads and event "
                    "streams excepted)"));
  f.back().min_int = 1;
  f.push_back(field("server.limits.max_requests", ConfigType::kInt, std::int64_t{4096},
                    "requests in progress above this are answered 503 at once"));
  f.back().min_int = 1;
  f.push_back(field("server.session_cache_ms", ConfigType::kInt, std::int64_t{1000},
                    "reuse a valid session lookup for this long (a sign-out through another "
                    "server takes effect within it; 0 = ask the database every request)"));
  f.back().min_int = 0;
  f.back().max_int = 60000;
  f.push_back(field("server.library_cache_ms", ConfigType::kInt, std::int64_t{2000},
                    "keep library pages this long at most; every change to a library (from any "
                    "server or worker, via LISTEN) drops its pages at once (0 = no cache)"));
  f.back().min_int = 0;
  f.back().max_int = 60000;
  f.push_back(field("server.cookie_secure", ConfigType::kBool, false,
                    "mark the session cookie Secure (set when served over HTTPS)"));
  f.push_back(field("server.public_url", ConfigType::kString, std::string(),
                    "external base URL (e.g. https://vessel.example.com) for absolute links; "
                    "empty = taken from the request's Host header"));
  f.push_back(field("server.web_root", ConfigType::kString, std::string(),
                    "directory of the web app served at / (index.html, assets); empty = next to "
                    "the executable (build tree) or <datadir>/vessel/web (installed)"));
  return f;
}

namespace server {

// --- App ---------------------------------------------------------------------

Result<JobStore*> App::store() const {
  // One connection per (thread, app): handlers on the pool threads never share one.
  thread_local std::map<const App*, std::unique_ptr<JobStore>> stores;
  auto& slot = stores[this];
  if (!slot) {
    auto s = JobStore::connect(conninfo, queue);
    if (!s.ok()) {
      return makeError(ErrorCode::kUnavailable, "database unavailable: " + s.error().message);
    }
    slot = std::move(s).value();
  }
  return slot.get();
}

namespace {

std::string cookieValue(const http::Request& req, std::string_view name) {
  auto header = req.header("cookie");
  if (!header) return "";
  std::string_view h = *header;
  while (!h.empty()) {
    std::size_t semi = h.find(';');
    std::string_view part = h.substr(0, semi);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    if (part.size() > name.size() && part.substr(0, name.size()) == name &&
        part[name.size()] == '=') {
      return std::string(part.substr(name.size() + 1));
    }
    if (semi == std::string_view::npos) break;
    h.remove_prefix(semi + 1);
  }
  return "";
}

}  // namespace

std::string App::bearerToken(const http::Request& req) const {
  if (auto a = req.header("authorization")) {
    if (a->size() > 7 && (a->compare(0, 7, "Bearer ") == 0 || a->compare(0, 7, "bearer ") == 0)) {
      return a->substr(7);
    }
  }
  return "";
}

std::string App::cookieToken(const http::Request& req) const {
  return cookieValue(req, settings.cookie_name);
}

namespace {

bool csrfRefused(const App& app, const http::Request& req, const std::string& bearer,
                 const std::string& cookie) {
  // A browser attaches the cookie to cross-site requests by itself; a write
  // authenticated by it alone must come from a page of ours.
  const bool unsafe = req.method != "GET" && req.method != "HEAD" && req.method != "OPTIONS";
  return bearer.empty() && !cookie.empty() && unsafe &&
         !originAllowed(req, app.baseUrl(req), app.settings.allowed_origins);
}

}  // namespace

std::string App::sessionKey(const http::Request& req) const {
  if (std::string bearer = bearerToken(req); !bearer.empty()) return "b:" + bearer;
  if (std::string cookie = cookieToken(req); !cookie.empty()) return "c:" + cookie;
  return {};
}

Result<std::optional<AuthUser>> App::caller(const http::Request& req) const {
  const std::string bearer = bearerToken(req);
  const std::string cookie = cookieToken(req);
  if (csrfRefused(*this, req, bearer, cookie)) {
    return makeError(ErrorCode::kPermissionDenied,
                     "cross-site request refused: the Origin is not allowed for cookie sign-in");
  }
  const std::string key =
      !bearer.empty() ? "b:" + bearer : (!cookie.empty() ? "c:" + cookie : std::string());
  if (session_cache) {
    if (auto hit = session_cache->get(key, &req)) {
      log::Context::add("user_id", hit->id);
      return std::optional<AuthUser>(std::move(*hit));
    }
  }
  const std::uint64_t snapshot = session_cache ? session_cache->begin() : 0;
  AuthRequest ar;
  ar.bearer_token = bearer;
  ar.cookie_token = cookie;
  ar.peer_address = req.peer;
  ar.header = [&req](std::string_view name) { return req.header(name); };
  auto who = auth->authenticate(*users, ar);
  if (who.ok() && who.value()) {
    log::Context::add("user_id", who.value()->id);
    if (session_cache) session_cache->put(key, *who.value(), snapshot);
  }
  return who;
}

std::optional<AuthUser> App::cachedCaller(const http::Request& req) const {
  if (!session_cache) return std::nullopt;
  const std::string bearer = bearerToken(req);
  const std::string cookie = cookieToken(req);
  if (csrfRefused(*this, req, bearer, cookie)) return std::nullopt;
  const std::string key =
      !bearer.empty() ? "b:" + bearer : (!cookie.empty() ? "c:" + cookie : std::string());
  auto hit = session_cache->get(key, &req);
  if (hit) log::Context::add("user_id", hit->id);
  return hit;
}

void App::libraryChanged(const std::string& user_id) const {
  if (library_cache) library_cache->invalidate(user_id);
}

std::string App::baseUrl(const http::Request& req) const {
  if (!settings.public_url.empty()) {
    std::string u = settings.public_url;
    while (!u.empty() && u.back() == '/') u.pop_back();
    return u;
  }
  std::string host = req.header("host").value_or("localhost");
  // A Host header is client input: keep only what a host[:port] may contain.
  for (char c : host) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' ||
          c == '[' || c == ']')) {
      host = "localhost";
      break;
    }
  }
  return "http://" + host;
}

std::variant<nlohmann::json, http::Response> parseObject(
    std::string_view body, std::initializer_list<const char*> allowed) {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded()) {
    return http::Response::error(400, "invalid_json", "the request body is not valid JSON");
  }
  if (!j.is_object()) {
    return http::Response::error(400, "invalid_json", "the request body must be a JSON object");
  }
  for (const auto& [key, value] : j.items()) {
    bool known = false;
    for (const char* a : allowed) known = known || key == a;
    if (!known) {
      return http::Response::error(400, "unknown_field", "unknown field '" + key + "'");
    }
  }
  return j;
}

namespace {

bool validUtf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    if (c < 0x80) {
      n = 0;
    } else if ((c >> 5) == 6) {
      n = 1;
    } else if ((c >> 4) == 14) {
      n = 2;
    } else if ((c >> 3) == 30) {
      n = 3;
    } else {
      return false;
    }
    if (i + n >= s.size() && n > 0) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    }
    i += n + 1;
  }
  return true;
}

}  // namespace

std::variant<std::string, http::Response> requireString(const nlohmann::json& obj, const char* name,
                                                        std::size_t max_bytes) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) {
    return http::Response::error(400, "missing_field", std::string("'") + name + "' is required");
  }
  if (!it->is_string()) {
    return http::Response::error(400, "invalid_field",
                                 std::string("'") + name + "' must be a string");
  }
  std::string v = it->get<std::string>();
  if (v.empty() || v.size() > max_bytes) {
    return http::Response::error(
        400, "invalid_field",
        std::string("'") + name + "' must be 1.." + std::to_string(max_bytes) + " bytes");
  }
  if (!validUtf8(v)) {
    return http::Response::error(400, "invalid_field",
                                 std::string("'") + name + "' is not valid UTF-8");
  }
  for (char c : v) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return http::Response::error(400, "invalid_field",
                                   std::string("'") + name + "' contains control characters");
    }
  }
  return v;
}

void appendUploadJson(std::string& out, const UploadRecord& u, const Storage* storage) {
  using namespace json_text;
  out += "{\"id\":";
  appendString(out, u.id);
  out += ",\"filename\":";
  appendString(out, u.filename);
  out += ",\"content_type\":";
  appendString(out, u.content_type);
  out += ",\"size\":";
  appendInteger(out, u.size_bytes);
  out += ",\"status\":";
  appendString(out, u.status);
  out += ",\"progress\":";
  appendNumber(out, u.status == "ready" ? 1.0 : u.progress);
  out += ",\"error\":";
  appendOptString(out, u.error);
  out += ",\"duration_s\":";
  appendOptNumber(out, u.duration_s);
  out += ",\"title\":";
  appendOptString(out, u.title);
  out += ",\"artist\":";
  appendOptString(out, u.artist);
  out += ",\"album\":";
  appendOptString(out, u.album);
  out += ",\"created_at\":";
  appendString(out, u.created_at);
  out += ",\"updated_at\":";
  appendString(out, u.updated_at);
  out += ",\"stream_url\":";
  if (u.status == "ready") {
    auto pub =
        storage ? storage->publicUrl(uploadPrefix(u.user_id, u.id) + "master.m3u8") : std::nullopt;
    appendString(out, pub ? *pub : "/media/" + u.user_id + "/" + u.id + "/master.m3u8");
  } else {
    out += "null";
  }
  out += '}';
}

nlohmann::json uploadJson(const UploadRecord& u, const Storage* storage) {
  std::string text;
  appendUploadJson(text, u, storage);
  return nlohmann::json::parse(text);
}

}  // namespace server

// --- AppServer -----------------------------------------------------------------

namespace {

Result<std::string> readSecretFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return makeError(ErrorCode::kConfig, "cannot read '" + path.string() + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  if (s.empty()) return makeError(ErrorCode::kConfig, "'" + path.string() + "' is empty");
  return s;
}

// The signing key: configured, or 32 random bytes generated once per data dir.
Result<std::string> signingKey(const Config& c, const fs::path& data_dir) {
  if (!c.getString("server.secret_key").empty()) return c.getString("server.secret_key");
  const fs::path path = data_dir / "secret.key";
  std::error_code ec;
  if (fs::exists(path, ec)) return readSecretFile(path);
  fs::create_directories(data_dir, ec);
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1) return makeError(ErrorCode::kInternal, "RAND_bytes failed");
  static const char* hex = "0123456789abcdef";
  std::string key;
  for (unsigned char b : raw) {
    key += hex[b >> 4];
    key += hex[b & 15];
  }
  const fs::path tmp = data_dir / ".secret.key.tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return makeError(ErrorCode::kConfig, "cannot create '" + path.string() + "'");
  }
  const std::string line = key + "\n";
  const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) &&
                  ::fsync(fd) == 0;
  ::close(fd);
  // link() refuses to replace: if another process won the race, use its key.
  if (!ok || (::link(tmp.c_str(), path.c_str()) != 0 && errno != EEXIST)) {
    ::unlink(tmp.c_str());
    return makeError(ErrorCode::kConfig, "cannot write '" + path.string() + "'");
  }
  ::unlink(tmp.c_str());
  return readSecretFile(path);
}

bool splitListen(const std::string& listen, std::string& host, std::uint16_t& port) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  auto p = server::parseUnsigned(std::string_view(listen).substr(colon + 1));
  if (!p || *p > 65535) return false;
  port = static_cast<std::uint16_t>(*p);
  return true;
}

}  // namespace

struct AppServer::Impl {
  Runtime* runtime = nullptr;
  Runtime::DatabaseHandle db;
  server::App app;
  std::unique_ptr<http::Server> http;
  std::unique_ptr<server::EventHub> events;
  server::Metrics metrics;
  std::unique_ptr<server::RateLimiter> auth_per_address, login_per_account;
  std::unique_ptr<server::LibraryCache> library_cache;
  std::unique_ptr<server::SessionCache> session_cache;
  std::unique_ptr<WorkerPool> workers;
  std::unique_ptr<SchedulerRunner> scheduler;
  std::string host;
  std::mutex stop_mu;
  bool stopped = false;
};

AppServer::AppServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

AppServer::~AppServer() { stop(); }

std::uint16_t AppServer::port() const { return impl_->http ? impl_->http->port() : 0; }

std::string AppServer::url() const {
  const std::string& h = impl_->host;
  return "http://" + (h.find(':') != std::string::npos ? "[" + h + "]" : h) + ":" +
         std::to_string(port());
}

Result<std::unique_ptr<AppServer>> AppServer::start(Runtime& runtime, const ServeOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->runtime = &runtime;
  const Config& c = runtime.config();

  std::uint16_t port = 0;
  const std::string listen = options.listen.empty() ? c.getString("server.listen") : options.listen;
  if (!splitListen(listen, impl->host, port)) {
    return makeError(ErrorCode::kConfig, "listen address '" + listen + "' is not host:port");
  }

  server::App& app = impl->app;
  app.runtime = &runtime;
  server::Settings& s = app.settings;
  s.max_upload_bytes = static_cast<std::uint64_t>(c.getInt("server.max_upload_bytes"));
  s.upload_url_ttl = std::chrono::seconds(c.getInt("server.upload_url_ttl_s"));
  for (const auto& t : c.getStringList("server.content_types")) s.content_types.insert(t);
  s.cookie_secure = c.getBool("server.cookie_secure");
  s.public_url = c.getString("server.public_url");
  s.pipeline = c.getString("transcode.pipeline");
  if (auto ladder = runtime.ladder(s.pipeline); !ladder.ok()) return std::move(ladder).error();
  s.metrics_token = c.getString("server.metrics_token");
  s.allowed_origins = c.getStringList("server.allowed_origins");
  s.worker_secret = c.getString("server.worker_secret");
  if (s.worker_secret.empty() && !c.getString("server.worker_secret_file").empty()) {
    auto secret = readSecretFile(c.getString("server.worker_secret_file"));
    if (!secret.ok()) {
      return makeError(ErrorCode::kConfig, "server.worker_secret_file: " + secret.error().message);
    }
    s.worker_secret = secret.value();
  }

  auto db = runtime.openDatabase(options.data_dir, options.database_url);
  if (!db.ok()) return std::move(db).error();
  impl->db = std::move(db).value();
  app.conninfo = impl->db.conninfo;
  app.queue.lease = std::chrono::seconds(c.getInt("workers.lease_s"));
  app.queue.backoff_base = std::chrono::seconds(c.getInt("workers.backoff_base_s"));
  app.queue.max_attempts = static_cast<std::int32_t>(c.getInt("workers.max_attempts"));

  auto key = signingKey(c, options.data_dir);
  if (!key.ok()) return std::move(key).error();
  s.secret_key = key.value();

  auto storage = runtime.storageFor(options.data_dir);
  if (!storage.ok()) return std::move(storage).error();
  app.storage = storage.value();
  s.inline_media = c.getString("storage.plugin") == "local";

  auto auth = runtime.plugins().createAuth(c.getString("auth.plugin"), c);
  if (!auth.ok()) return std::move(auth).error();
  app.auth = auth.value();
  auto users = PgUserDirectory::connect(app.conninfo);
  if (!users.ok()) return std::move(users).error();
  app.users = std::shared_ptr<UserDirectory>(std::move(users).value());
  impl->session_cache = std::make_unique<server::SessionCache>(
      std::chrono::milliseconds(c.getInt("server.session_cache_ms")));
  app.session_cache = impl->session_cache.get();
  impl->library_cache = std::make_unique<server::LibraryCache>(
      std::chrono::milliseconds(c.getInt("server.library_cache_ms")));
  app.library_cache = impl->library_cache.get();

  http::ServerOptions ho;
  ho.host = impl->host;
  ho.port = port;
  ho.handler_threads = static_cast<int>(c.getInt("server.handler_threads"));
  ho.io_threads = static_cast<int>(c.getInt("server.io_threads"));
  ho.cors_origins = s.allowed_origins;
  ho.header_timeout_s = static_cast<int>(c.getInt("server.limits.header_timeout_s"));
  ho.min_body_rate = static_cast<std::uint64_t>(c.getInt("server.limits.min_body_rate"));
  ho.max_requests = static_cast<std::size_t>(c.getInt("server.limits.max_requests"));
  ho.max_header_bytes = static_cast<std::size_t>(c.getInt("server.limits.max_header_bytes"));
  ho.request_timeout_s = static_cast<int>(c.getInt("server.limits.request_timeout_s"));
  impl->auth_per_address = std::make_unique<server::RateLimiter>(
      static_cast<int>(c.getInt("server.rate_limit.auth_per_minute")));
  impl->login_per_account = std::make_unique<server::RateLimiter>(
      static_cast<int>(c.getInt("server.rate_limit.login_per_minute")));
  app.auth_per_address = impl->auth_per_address.get();
  app.login_per_account = impl->login_per_account.get();
  impl->http = std::make_unique<http::Server>(ho);
  server::addAuthRoutes(*impl->http, app);
  server::addUploadRoutes(*impl->http, app);
  server::addMediaRoutes(*impl->http, app);
  server::addInternalRoutes(*impl->http, app);
  impl->events = std::make_unique<server::EventHub>(app);
  app.events = impl->events.get();
  server::addEventRoutes(*impl->http, app);
  if (auto r = server::addWebRoutes(*impl->http, app); !r.ok()) return std::move(r).error();
  server::addOpsRoutes(*impl->http, app);
  app.metrics = &impl->metrics;
  impl->http->onComplete([&app](const http::Request& req, const http::Response& resp, double secs) {
    app.metrics->record(req, resp, secs);
    log::debug("request", {{"request_id", req.request_id},
                           {"method", req.method},
                           {"path", req.path},
                           {"status", static_cast<long long>(resp.status)},
                           {"seconds", secs}});
  });
  impl->events->start();
  if (auto r = impl->http->start(); !r.ok()) return std::move(r).error();

  // In-process workers and the scheduler, exactly as `vessel worker` runs them.
  int workers = options.workers.value_or(static_cast<int>(c.getInt("workers.concurrency")));
  if (!options.workers && workers == 0) {
    workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  if (workers > 0) {
    WorkerOptions wo;
    wo.concurrency = workers;
    wo.conninfo = app.conninfo;
    wo.queue = app.queue;
    wo.heartbeat = std::chrono::seconds(c.getInt("workers.heartbeat_s"));
    wo.shutdown_grace = std::chrono::seconds(c.getInt("workers.shutdown_grace_s"));
    wo.stall_timeout = std::chrono::seconds(c.getInt("transcode.stall_timeout_s"));
    impl->workers = std::make_unique<WorkerPool>(runtime, app.storage, wo);
    impl->workers->start();
  }
  std::vector<std::pair<std::string, std::shared_ptr<Scheduler>>> schedulers;
  for (const auto& name : c.getStringList("scheduler.enabled")) {
    auto sch = runtime.plugins().createScheduler(name, c);
    if (!sch.ok()) return std::move(sch).error();
    schedulers.emplace_back(name, sch.value());
  }
  impl->scheduler = std::make_unique<SchedulerRunner>(std::move(schedulers),
                                                      SchedulerContext{app.conninfo, app.storage});
  impl->scheduler->start();
  app.scheduler = impl->scheduler.get();

  auto server = std::unique_ptr<AppServer>(new AppServer(std::move(impl)));
  log::info("listening", {{"url", server->url()},
                          {"workers", static_cast<long long>(workers)},
                          {"embedded_db", server->impl_->db.embedded != nullptr},
                          {"remote_workers", !app.settings.worker_secret.empty()}});
  return server;
}

void AppServer::stop() {
  std::lock_guard lock(impl_->stop_mu);
  if (impl_->stopped) return;
  impl_->stopped = true;
  // Stop claiming first so that the grace periods of requests and jobs overlap.
  if (impl_->workers) impl_->workers->requestStop();
  if (impl_->scheduler) impl_->scheduler->stop();
  if (impl_->events) impl_->events->stop();  // ends the event streams
  if (impl_->http) impl_->http->stop(10.0);
  if (impl_->workers) impl_->workers->join();
  log::info("server stopped");
}

}  // namespace vessel
