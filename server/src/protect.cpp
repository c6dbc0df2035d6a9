// Rate limiting and the CSRF origin check. See protect.hpp.
#include "protect.hpp"

#include <algorithm>
#include <cmath>

namespace vessel::server {

std::optional<int> RateLimiter::take(const std::string& key,
                                     std::chrono::steady_clock::time_point now) {
  if (per_minute_ <= 0) return std::nullopt;
  const double rate = per_minute_ / 60.0;  // tokens per second
  std::lock_guard lock(mu_);
  if (now - last_sweep_ > std::chrono::minutes(5)) {
    // A bucket idle for two minutes is full again: forgetting it changes nothing.
    std::erase_if(buckets_, [&](const auto& kv) {
      return now - kv.second.updated > std::chrono::minutes(2);
    });
    last_sweep_ = now;
  }
  auto [it, fresh] = buckets_.try_emplace(key);
  Bucket& b = it->second;
  if (fresh) {
    b.tokens = per_minute_;
  } else {
    const double elapsed = std::chrono::duration<double>(now - b.updated).count();
    b.tokens = std::min<double>(per_minute_, b.tokens + elapsed * rate);
  }
  b.updated = now;
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return std::nullopt;
  }
  return std::max(1, static_cast<int>(std::ceil((1 - b.tokens) / rate)));
}

http::Response tooManyRequests(int retry_after_s) {
  http::Response r = http::Response::error(
      429, "rate_limited",
      "too many attempts; try again in " + std::to_string(retry_after_s) + " s");
  r.header("retry-after", std::to_string(retry_after_s));
  return r;
}

namespace {

// "scheme://host[:port]" of a URL, lower-case scheme and host.
std::string originOf(std::string_view url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return "";
  const auto path = url.find('/', scheme_end + 3);
  std::string o(url.substr(0, path));
  std::transform(o.begin(), o.end(), o.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return o;
}

}  // namespace

bool originAllowed(const http::Request& req, const std::string& self_origin,
                   const std::vector<std::string>& allowed) {
  std::string origin;
  if (auto o = req.header("origin"); o && *o != "null") {
    origin = originOf(*o);
  } else if (auto r = req.header("referer")) {
    origin = originOf(*r);
  }
  if (origin.empty()) return false;
  if (origin == originOf(self_origin)) return true;
  return std::any_of(allowed.begin(), allowed.end(),
                     [&](const std::string& a) { return originOf(a) == origin; });
}

}  // namespace vessel::server
