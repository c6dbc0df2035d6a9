// Abuse protection: a token-bucket rate limiter for the auth endpoints (per
// client address and per account) and the CSRF check for cookie-authenticated
// writes. See docs/api.md "Protection".
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "http.hpp"

namespace vessel::server {

/// `per_minute` requests per key per minute, with bursts up to that many.
/// Keys idle for long are forgotten, so memory stays bounded by active keys.
class RateLimiter {
 public:
  explicit RateLimiter(int per_minute) : per_minute_(per_minute) {}
  /// nullopt: allowed (one token taken). Otherwise: seconds until a token frees up.
  std::optional<int> take(const std::string& key, std::chrono::steady_clock::time_point now =
                                                      std::chrono::steady_clock::now());

 private:
  struct Bucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point updated;
  };
  int per_minute_;
  std::mutex mu_;
  std::map<std::string, Bucket> buckets_;
  std::chrono::steady_clock::time_point last_sweep_{};
};

/// 429 with Retry-After.
http::Response tooManyRequests(int retry_after_s);

/// Whether a cookie-authenticated write may proceed: the Origin (or, lacking
/// it, the Referer) must be this server's own origin as the client addressed
/// it (`self_origin`) or one of `allowed`. Bearer-token requests need no check
/// (a browser never attaches them by itself).
bool originAllowed(const http::Request& req, const std::string& self_origin,
                   const std::vector<std::string>& allowed);

}  // namespace vessel::server
