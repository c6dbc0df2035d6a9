// /api/v1/auth/register, login, logout and /api/v1/me. Policy (hashing, token
// format, which operations exist) belongs to the auth plugin; this module maps
// it to HTTP and sets the session cookie.
#include <algorithm>
#include <chrono>

#include "app.hpp"
#include "cache.hpp"
#include "vessel/log.hpp"

namespace vessel::server {

namespace {

// The plugin's message says which field was refused; the web app shows the
// error next to it.
http::Response authError(const Error& e) {
  http::Response r = http::errorResponse(e);
  if (e.code == ErrorCode::kInvalidArgument) {
    const char* field = e.message.rfind("password", 0) == 0 ? "password"
                        : e.message.rfind("email", 0) == 0  ? "email"
                                                            : nullptr;
    nlohmann::json body = {{"error", {{"code", "invalid_request"}, {"message", e.message}}}};
    if (field) {
      body["error"]["field"] = field;
      body["error"]["code"] =
          std::string(field) == "password" ? "invalid_password" : "invalid_email";
    }
    return http::Response::json(400, body);
  }
  if (e.code == ErrorCode::kAlreadyExists) {
    return http::Response::json(
        409, {{"error", {{"code", "email_taken"}, {"message", e.message}, {"field", "email"}}}});
  }
  if (e.code == ErrorCode::kUnauthenticated) {
    return http::Response::error(401, "invalid_credentials", "invalid email or password");
  }
  if (e.code == ErrorCode::kUnsupportedInput)
    return http::Response::error(404, "not_found", e.message);
  return r;
}

std::string sessionCookie(const Settings& s, std::string_view token, std::int64_t max_age) {
  std::string c = s.cookie_name + "=" + std::string(token) +
                  "; Path=/; HttpOnly; SameSite=Lax; Max-Age=" + std::to_string(max_age);
  if (s.cookie_secure) c += "; Secure";
  return c;
}

// 429 when `limiter` has no token left for `key`.
std::optional<http::Response> limited(App& app, RateLimiter& limiter, const std::string& key) {
  auto wait = limiter.take(key);
  if (!wait) return std::nullopt;
  ++app.metrics->rate_limited;
  return tooManyRequests(*wait);
}

nlohmann::json userJson(const AuthUser& u) { return {{"id", u.id}, {"email", u.email}}; }

// Email and password out of a {email, password} body; a Response on failure.
struct Credentials {
  std::string email, password;
};
std::variant<Credentials, http::Response> credentials(const http::Request& req) {
  auto body = parseObject(req.body, {"email", "password"});
  if (auto* r = std::get_if<http::Response>(&body)) return std::move(*r);
  const nlohmann::json& j = std::get<nlohmann::json>(body);
  Credentials c;
  for (const char* name : {"email", "password"}) {
    auto it = j.find(name);
    if (it == j.end() || !it->is_string()) {
      return http::Response::json(400,
                                  {{"error",
                                    {{"code", it == j.end() ? "missing_field" : "invalid_field"},
                                     {"message", std::string("'") + name + "' must be a string"},
                                     {"field", name}}}});
    }
    (std::string_view(name) == "email" ? c.email : c.password) = it->get<std::string>();
  }
  return c;
}

}  // namespace

void addAuthRoutes(http::Server& server, App& app) {
  server.route("POST", "/api/v1/auth/register", [&app](http::Request& req) {
    if (auto refused = limited(app, *app.auth_per_address, "addr:" + req.peer)) {
      return std::move(*refused);
    }
    auto c = credentials(req);
    if (auto* r = std::get_if<http::Response>(&c)) return std::move(*r);
    const Credentials& cred = std::get<Credentials>(c);
    auto user = app.auth->registerUser(*app.users, cred.email, cred.password);
    if (!user.ok()) return authError(user.error());
    log::info("user registered", {{"user_id", user.value().id}, {"request_id", req.request_id}});
    return http::Response::json(201, {{"user", userJson(user.value())}});
  });

  server.route("POST", "/api/v1/auth/login", [&app](http::Request& req) {
    if (auto refused = limited(app, *app.auth_per_address, "addr:" + req.peer)) {
      return std::move(*refused);
    }
    auto c = credentials(req);
    if (auto* r = std::get_if<http::Response>(&c)) return std::move(*r);
    const Credentials& cred = std::get<Credentials>(c);
    // Per account too: guessing one account's password from many addresses.
    std::string account = cred.email;
    std::transform(account.begin(), account.end(), account.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    if (auto refused = limited(app, *app.login_per_account, "acct:" + account)) {
      return std::move(*refused);
    }
    auto session = app.auth->login(*app.users, cred.email, cred.password);
    if (!session.ok()) return authError(session.error());
    const Session& s = session.value();
    const auto max_age = std::chrono::duration_cast<std::chrono::seconds>(
                             s.expires_at - std::chrono::system_clock::now())
                             .count();
    http::Response r = http::Response::json(
        200, {{"token", s.token},
              {"user", userJson(s.user)},
              {"expires_at",
               std::chrono::duration_cast<std::chrono::seconds>(s.expires_at.time_since_epoch())
                   .count()}});
    r.header("set-cookie",
             sessionCookie(app.settings, s.token, std::max<std::int64_t>(max_age, 0)));
    r.header("cache-control", "no-store");
    return r;
  });

  server.route("POST", "/api/v1/auth/logout", [&app](http::Request& req) {
    VESSEL_REQUIRE_CALLER(app, req, user);
    (void)user;
    // The session the caller authenticated with: the bearer token wins, as in caller().
    std::string token = app.bearerToken(req);
    if (token.empty()) token = app.cookieToken(req);
    const std::string key = app.sessionKey(req);
    auto out = app.auth->logout(*app.users, token);
    app.session_cache->revoke(key);  // also after a failure: ask the database next time
    if (!out.ok()) return authError(out.error());
    http::Response r = http::Response::empty(204);
    r.header("set-cookie", sessionCookie(app.settings, "", 0));
    return r;
  });

  server.route("GET", "/api/v1/me", [&app](http::Request& req) {
    VESSEL_REQUIRE_CALLER(app, req, user);
    http::Response r = http::Response::json(200, userJson(user));
    r.header("cache-control", "no-store");
    return r;
  });
}

}  // namespace vessel::server
