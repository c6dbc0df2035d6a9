// HttpClient over one reused libcurl easy handle.
#include "vessel/http_client.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <mutex>

#include "vessel_build_config.h"

namespace vessel {
namespace {

// The only owners of libcurl handles in the project.
struct EasyDeleter {
  void operator()(CURL* handle) const noexcept { curl_easy_cleanup(handle); }
};
using EasyHandle = std::unique_ptr<CURL, EasyDeleter>;

class HeaderList {
 public:
  HeaderList() = default;
  HeaderList(const HeaderList&) = delete;
  HeaderList& operator=(const HeaderList&) = delete;
  ~HeaderList() { curl_slist_free_all(list_); }

  /// curl_slist_append returns null (leaving the list intact) when out of memory.
  bool append(const std::string& line) noexcept {
    curl_slist* next = curl_slist_append(list_, line.c_str());
    if (!next) return false;
    list_ = next;
    return true;
  }
  curl_slist* get() const noexcept { return list_; }

 private:
  curl_slist* list_ = nullptr;
};

CURLcode globalInit() noexcept {
  static std::once_flag once;
  static CURLcode code = CURLE_OK;
  std::call_once(once, [] { code = curl_global_init(CURL_GLOBAL_DEFAULT); });
  return code;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool startsWithNoCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && lower(s.substr(0, prefix.size())) == prefix;
}

// RFC 9110 token characters (method and header names).
bool isToken(std::string_view s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return std::isalnum(u) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
}

bool hasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

}  // namespace

struct HttpClient::Impl {
  std::size_t max_response_bytes;
  EasyHandle easy;
  char error_buffer[CURL_ERROR_SIZE] = {};

  // Per-request state the callbacks fill.
  HttpResponse response;
  bool too_large = false;

  static size_t onBody(char* data, size_t size, size_t n, void* user) noexcept {
    auto* self = static_cast<Impl*>(user);
    const size_t len = size * n;
    if (self->response.body.size() + len > self->max_response_bytes) {
      self->too_large = true;
      return 0;  // a short count makes libcurl abort with CURLE_WRITE_ERROR
    }
    try {
      self->response.body.append(data, len);
    } catch (...) {
      return 0;
    }
    return len;
  }

  static size_t onHeader(char* data, size_t size, size_t n, void* user) noexcept {
    auto* self = static_cast<Impl*>(user);
    const size_t len = size * n;
    std::string_view line(data, len);
    try {
      auto& headers = self->response.headers;
      if (line.substr(0, 5) == "HTTP/") {
        headers.clear();  // a new response (after 100 Continue): keep only the final one
      } else if (!line.empty() && (line.front() == ' ' || line.front() == '\t')) {
        if (!headers.empty()) {  // obsolete line folding
          headers.back().second += ' ';
          headers.back().second += trim(line);
        }
      } else if (auto colon = line.find(':'); colon != std::string_view::npos) {
        headers.emplace_back(lower(trim(line.substr(0, colon))),
                             std::string(trim(line.substr(colon + 1))));
      }
    } catch (...) {
      return 0;
    }
    return len;
  }
};

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  const std::string want = lower(name);
  for (const auto& [k, v] : headers) {
    if (k == want) return v;
  }
  return std::nullopt;
}

std::string redactUrl(std::string_view url) {
  url = url.substr(0, url.find_first_of("?#"));
  auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return std::string(url);
  const std::size_t host_start = scheme + 3;
  const std::size_t host_end = std::min(url.find('/', host_start), url.size());
  auto at = url.substr(host_start, host_end - host_start).rfind('@');
  if (at == std::string_view::npos) return std::string(url);
  return std::string(url.substr(0, host_start)) + std::string(url.substr(host_start + at + 1));
}

HttpClient::HttpClient(std::size_t max_response_bytes) : impl_(std::make_unique<Impl>()) {
  impl_->max_response_bytes = max_response_bytes;
}
HttpClient::~HttpClient() = default;
HttpClient::HttpClient(HttpClient&&) noexcept = default;
HttpClient& HttpClient::operator=(HttpClient&&) noexcept = default;

Result<HttpResponse> HttpClient::request(
    std::string_view method, const std::string& url,
    const std::vector<std::pair<std::string, std::string>>& headers, std::string_view body,
    std::chrono::milliseconds timeout) noexcept {
  try {
    const std::string where = std::string(method) + " " + redactUrl(url);
    auto invalid = [&](const std::string& why) {
      return makeError(ErrorCode::kInvalidArgument, where + ": " + why);
    };
    if (!impl_) return makeError(ErrorCode::kInternal, where + ": moved-from HttpClient");
    if (!isToken(method)) return invalid("invalid method");
    if (!startsWithNoCase(url, "http://") && !startsWithNoCase(url, "https://")) {
      return invalid("only http:// and https:// URLs are supported");
    }
    if (hasControl(url) || url.find(' ') != std::string::npos) {
      return invalid("the URL contains spaces or control characters");
    }
    if (timeout.count() <= 0) return invalid("the timeout must be positive");

    bool has_content_type = false, has_expect = false;
    HeaderList list;
    for (const auto& [name, value] : headers) {
      // Refusing CR/LF here is what keeps a value from injecting headers.
      if (!isToken(name) || hasControl(value)) return invalid("invalid header '" + name + "'");
      const std::string n = lower(name);
      has_content_type |= n == "content-type";
      has_expect |= n == "expect";
      if (!list.append(name + ": " + value)) {
        return makeError(ErrorCode::kInternal, where + ": out of memory");
      }
    }
    // "Name:" with no value removes a header libcurl would add by itself: no
    // form-urlencoded content type we did not ask for, no 100-continue round trip.
    if ((!has_content_type && !list.append("Content-Type:")) ||
        (!has_expect && !list.append("Expect:"))) {
      return makeError(ErrorCode::kInternal, where + ": out of memory");
    }

    if (CURLcode g = globalInit(); g != CURLE_OK) {
      return makeError(ErrorCode::kInternal,
                       where + ": curl_global_init failed: " + curl_easy_strerror(g));
    }
    Impl& s = *impl_;
    if (!s.easy) {
      s.easy.reset(curl_easy_init());
      if (!s.easy) return makeError(ErrorCode::kInternal, where + ": curl_easy_init failed");
    } else {
      curl_easy_reset(s.easy.get());  // clears options; keeps the connection cache
    }
    CURL* h = s.easy.get();
    s.response = HttpResponse{};
    s.too_large = false;
    s.error_buffer[0] = '\0';

    const auto connect_timeout = std::min(timeout, kMaxConnectTimeout);
    const bool send_body = !body.empty() || method == "POST" || method == "PUT";
    CURLcode rc = CURLE_OK;
    auto set = [&](CURLoption option, auto value) {
      if (rc == CURLE_OK) rc = curl_easy_setopt(h, option, value);
    };
    set(CURLOPT_ERRORBUFFER, s.error_buffer);
    set(CURLOPT_URL, url.c_str());
#if LIBCURL_VERSION_NUM >= 0x075500  // 7.85: the string forms
    set(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    set(CURLOPT_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    set(CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for DNS timeouts
    set(CURLOPT_FOLLOWLOCATION, 0L);
    set(CURLOPT_SSL_VERIFYPEER, 1L);
    set(CURLOPT_SSL_VERIFYHOST, 2L);
    set(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect_timeout.count()));
    set(CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    set(CURLOPT_TCP_KEEPALIVE, 1L);
    set(CURLOPT_USERAGENT, "vessel/" VESSEL_VERSION);
    set(CURLOPT_HTTPHEADER, list.get());
    set(CURLOPT_WRITEFUNCTION, static_cast<curl_write_callback>(&Impl::onBody));
    set(CURLOPT_WRITEDATA, static_cast<void*>(&s));
    set(CURLOPT_HEADERFUNCTION, static_cast<curl_write_callback>(&Impl::onHeader));
    set(CURLOPT_HEADERDATA, static_cast<void*>(&s));
    const std::string method_str(method);
    if (method == "HEAD") {
      set(CURLOPT_NOBODY, 1L);
    } else if (send_body) {
      // POSTFIELDS must never be null: libcurl would read the body from stdin.
      set(CURLOPT_POST, 1L);
      set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
      set(CURLOPT_POSTFIELDS, body.empty() ? "" : body.data());
      if (method != "POST") set(CURLOPT_CUSTOMREQUEST, method_str.c_str());
    } else if (method == "GET") {
      set(CURLOPT_HTTPGET, 1L);
    } else {
      set(CURLOPT_CUSTOMREQUEST, method_str.c_str());
    }
    if (rc != CURLE_OK) {
      return makeError(ErrorCode::kInternal,
                       where + ": curl_easy_setopt failed: " + curl_easy_strerror(rc));
    }

    rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
      std::string detail = s.error_buffer[0] ? s.error_buffer : curl_easy_strerror(rc);
      ErrorCode code = ErrorCode::kUnavailable;
      if (rc == CURLE_OPERATION_TIMEDOUT) {
        code = ErrorCode::kTimeout;
      } else if (rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT) {
        code = ErrorCode::kInvalidArgument;
      } else if (rc == CURLE_WRITE_ERROR && s.too_large) {
        detail = "response body larger than " + std::to_string(s.max_response_bytes) + " bytes";
      }
      s.response = HttpResponse{};
      return makeError(code, where + ": " + detail);
    }
    long status = 0;
    if (CURLcode g = curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status); g != CURLE_OK) {
      return makeError(ErrorCode::kInternal, where + ": " + curl_easy_strerror(g));
    }
    HttpResponse out = std::move(s.response);
    s.response = HttpResponse{};
    out.status = status;
    return out;
  } catch (const std::exception& e) {
    return makeError(ErrorCode::kInternal, std::string("http request: ") + e.what());
  }
}

}  // namespace vessel
