// HttpClient: a small blocking HTTP/1.1 client over libcurl, for the remote
// worker's calls to the server and, later, an S3 storage plugin. The libcurl
// handles stay inside core/src/http_client.cpp (wrapped once, RAII).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vessel/result.hpp"

namespace vessel {

struct HttpResponse {
  long status = 0;  ///< the final response's status (no redirect is followed)
  std::string body;
  /// The final response's headers in arrival order; names lower-case, values trimmed.
  std::vector<std::pair<std::string, std::string>> headers;

  /// The first header with this name (case-insensitive), if any.
  std::optional<std::string> header(std::string_view name) const;
};

/// One libcurl easy handle, reused across requests so connections are kept
/// alive. Not thread-safe: one HttpClient per thread. Any status the server
/// answers is a response (the caller judges 4xx/5xx); only transport failures
/// are errors. TLS peers and host names are always verified.
class HttpClient {
 public:
  static constexpr std::size_t kDefaultMaxResponseBytes = 64 << 20;
  /// Never waits longer than this for a TCP/TLS connection, whatever the timeout.
  static constexpr std::chrono::milliseconds kMaxConnectTimeout{10'000};

  /// A response body larger than `max_response_bytes` fails the request.
  explicit HttpClient(std::size_t max_response_bytes = kDefaultMaxResponseBytes);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;
  HttpClient(HttpClient&&) noexcept;
  HttpClient& operator=(HttpClient&&) noexcept;

  /// Sends `method` to `url` (http:// or https:// only) with `headers` and
  /// `body` (sent when non-empty, and always for POST and PUT), and waits at
  /// most `timeout` for the whole exchange. Without a Content-Type header none
  /// is sent. Errors: kInvalidArgument (bad URL, method or header), kTimeout,
  /// kUnavailable (connection, TLS or protocol failure, oversized response);
  /// messages name the method and the URL without its query string.
  Result<HttpResponse> request(std::string_view method, const std::string& url,
                               const std::vector<std::pair<std::string, std::string>>& headers,
                               std::string_view body, std::chrono::milliseconds timeout) noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// `url` without userinfo, query string or fragment: safe to put in logs.
std::string redactUrl(std::string_view url);

}  // namespace vessel
