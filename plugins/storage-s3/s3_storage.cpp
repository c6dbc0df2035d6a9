// S3Storage: requests, retries, multipart writers and ranged readers; see s3_storage.hpp.
#include "s3_storage.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <exception>
#include <future>
#include <map>
#include <mutex>
#include <new>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "s3_xml.hpp"
#include "sigv4.hpp"
#include "vessel/http_client.hpp"
#include "vessel/log.hpp"

namespace vessel::plugins {

namespace s3 {

namespace {

constexpr std::size_t kMinPartBytes = std::size_t{5} << 20;
constexpr std::uint64_t kMaxPartBytes = std::uint64_t{5} << 30;
constexpr std::uint64_t kMaxSinglePutBytes = std::uint64_t{5} << 30;
constexpr int kMaxParts = 10'000;
constexpr std::size_t kListPageMax = 1000;
constexpr std::size_t kMaxIdleHandles = 32;
constexpr std::size_t kMinResponseBytes = std::size_t{16} << 20;

// ---------------------------------------------------------------------------
// Messages

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      out += escaped;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

/// "s3 storage: put 'a/b.ts'"
std::string describe(std::string_view op, std::string_view key) {
  std::string out = "s3 storage: ";
  out += op;
  out += " '";
  out += printable(key);
  out += '\'';
  return out;
}

Error detailError(ErrorCode code, std::string_view op, std::string_view key,
                  std::string_view detail) {
  std::string message = describe(op, key);
  message += ": ";
  message += detail;
  return makeError(code, std::move(message));
}

template <typename T, typename Fn>
Result<T> guarded(std::string_view op, std::string_view key, Fn&& fn) noexcept {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    return detailError(ErrorCode::kInternal, op, key, "out of memory");
  } catch (const std::exception& e) {
    return detailError(ErrorCode::kInternal, op, key, e.what());
  } catch (...) {
    return detailError(ErrorCode::kInternal, op, key, "unknown exception");
  }
}

bool hasControl(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte < 0x20 || byte == 0x7f;
  });
}

Result<void> validateKey(std::string_view op, std::string_view key) {
  if (!isValidKey(key)) {
    return detailError(ErrorCode::kInvalidArgument, op, key,
                       "invalid key (must be 1-1024 bytes, relative, '/'-separated, without "
                       "empty, '.' or '..' components, NUL or backslash)");
  }
  // S3 listings are XML 1.0, which cannot carry most control characters.
  if (hasControl(key)) {
    return detailError(ErrorCode::kInvalidArgument, op, key,
                       "control characters are not allowed in S3 keys");
  }
  return {};
}

/// A prefix is valid when some valid key could start with it (as for local storage).
bool isValidPrefix(std::string_view prefix) noexcept {
  if (prefix.empty()) return true;
  if (prefix.size() > 1024 || hasControl(prefix)) return false;
  const std::size_t slash = prefix.rfind('/');
  std::string_view tail = prefix;
  if (slash != std::string_view::npos) {
    if (!isValidKey(prefix.substr(0, slash))) return false;
    tail = prefix.substr(slash + 1);
  }
  return tail.find('\0') == std::string_view::npos && tail.find('\\') == std::string_view::npos;
}

// ---------------------------------------------------------------------------
// Parsing

template <typename Int>
std::optional<Int> parseInt(std::string_view text) {
  Int value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

/// "2009-10-12T17:50:30.000Z" → unix ms (0 if malformed).
std::int64_t parseIsoTimeMs(std::string_view text) {
  std::tm tm{};
  int ms = 0;
  const std::string copy(text);
  int year = 0, month = 0, day = 0, hour = 0, minute = 0;
  double second = 0;
  if (std::sscanf(copy.c_str(), "%d-%d-%dT%d:%d:%lf", &year, &month, &day, &hour, &minute,
                  &second) != 6) {
    return 0;
  }
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = static_cast<int>(second);
  ms = static_cast<int>((second - tm.tm_sec) * 1000.0 + 0.5);
  return static_cast<std::int64_t>(timegm(&tm)) * 1000 + ms;
}

/// "Wed, 21 Oct 2015 07:28:00 GMT" → unix ms (0 if malformed).
std::int64_t parseHttpDateMs(std::string_view text) {
  std::tm tm{};
  const std::string copy(text);
  const char* end = strptime(copy.c_str(), "%a, %d %b %Y %H:%M:%S", &tm);
  if (end == nullptr) return 0;
  return static_cast<std::int64_t>(timegm(&tm)) * 1000;
}

/// "bytes 0-9/100" or "bytes */100" → 100.
std::optional<std::uint64_t> totalFromContentRange(std::string_view value) {
  const std::size_t slash = value.rfind('/');
  if (slash == std::string_view::npos) return std::nullopt;
  return parseInt<std::uint64_t>(value.substr(slash + 1));
}

struct StoreError {
  std::string code;
  std::string message;
  std::string request_id;
};

StoreError parseStoreError(const HttpResponse& response) {
  StoreError out;
  const std::string_view body = response.body;
  out.code = xmlText(body, "Code").value_or("");
  out.message = xmlText(body, "Message").value_or("");
  out.request_id =
      xmlText(body, "RequestId").value_or(response.header("x-amz-request-id").value_or(""));
  if (out.message.size() > 300) out.message.resize(300);
  return out;
}

ErrorCode codeForStatus(long status, std::string_view store_code) {
  if (store_code == "SlowDown" || status == 429 || status >= 500) return ErrorCode::kUnavailable;
  if (store_code == "RequestTimeout") return ErrorCode::kTimeout;
  if (store_code == "NoSuchKey" || store_code == "NoSuchBucket" || store_code == "NoSuchUpload" ||
      status == 404) {
    return ErrorCode::kNotFound;
  }
  if (status == 401) return ErrorCode::kUnauthenticated;
  if (status == 403) return ErrorCode::kPermissionDenied;
  if (status == 409) return ErrorCode::kAlreadyExists;
  if (store_code == "EntityTooLarge") return ErrorCode::kNoSpace;
  if (status >= 400) return ErrorCode::kInvalidArgument;
  return ErrorCode::kInternal;
}

bool retryableStatus(long status, std::string_view store_code) {
  return status >= 500 || status == 429 || store_code == "SlowDown" ||
         store_code == "RequestTimeout";
}

struct Endpoint {
  std::string scheme;     ///< "http" | "https"
  std::string authority;  ///< host[:port], default ports dropped
};

Result<Endpoint> parseEndpoint(std::string_view url) {
  auto bad = [&](std::string_view why) {
    return makeError(ErrorCode::kConfig,
                     "storage.s3.endpoint: '" + printable(url) + "': " + std::string(why));
  };
  Endpoint out;
  std::string_view rest;
  if (url.starts_with("https://")) {
    out.scheme = "https";
    rest = url.substr(8);
  } else if (url.starts_with("http://")) {
    out.scheme = "http";
    rest = url.substr(7);
  } else {
    return bad("must start with https:// (or http:// for a local test server)");
  }
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.empty()) return bad("no host");
  if (rest.find_first_of("/?#@ ") != std::string_view::npos || hasControl(rest)) {
    return bad("must be scheme://host[:port] only (no path, query or user info)");
  }
  std::string authority(rest);
  for (auto& c : authority) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const std::string default_port = out.scheme == "https" ? ":443" : ":80";
  if (authority.ends_with(default_port) && authority.find(']') == std::string::npos) {
    authority.resize(authority.size() - default_port.size());
  }
  out.authority = std::move(authority);
  return out;
}

/// S3's bucket naming rule (3-63 of a-z 0-9 . -, starting and ending alphanumeric).
bool isValidBucket(std::string_view name) {
  if (name.size() < 3 || name.size() > 63) return false;
  if (!std::isalnum(static_cast<unsigned char>(name.front())) ||
      !std::isalnum(static_cast<unsigned char>(name.back()))) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
  });
}

}  // namespace

// ---------------------------------------------------------------------------
// Client: URLs, signing, the handle pool and the retry loop

struct Request {
  std::string_view method;
  std::string_view key;  ///< object key; empty = the bucket itself
  Pairs query;           ///< decoded
  Pairs headers;         ///< extra headers, all signed
  std::string_view body;
};

class Client {
 public:
  Client(S3Options options, Endpoint endpoint)
      : options_(std::move(options)),
        endpoint_(std::move(endpoint)),
        signer_(options_.access_key_id, options_.secret_access_key, options_.region),
        max_response_bytes_(std::max(options_.part_size_bytes + (1 << 20), kMinResponseBytes)) {
    if (options_.path_style) {
      host_ = endpoint_.authority;
      bucket_path_ = "/" + options_.bucket;
    } else {
      host_ = options_.bucket + "." + endpoint_.authority;
      bucket_path_.clear();
    }
  }

  const S3Options& options() const noexcept { return options_; }

  /// The encoded path of a key ("/bucket/a%20b" or "/a%20b"); of the bucket when empty.
  std::string pathFor(std::string_view key) const {
    if (key.empty()) return bucket_path_.empty() ? "/" : bucket_path_;
    return bucket_path_ + "/" + uriEncode(key, true);
  }

  std::string urlFor(std::string_view path, std::string_view query) const {
    std::string url = endpoint_.scheme + "://" + host_ + std::string(path);
    if (!query.empty()) {
      url.push_back('?');
      url += query;
    }
    return url;
  }

  /// Sends `request`, retrying transient failures. 2xx and `accepted` statuses are
  /// responses; anything else is an Error naming op, key and the store's code.
  Result<HttpResponse> send(std::string_view op, std::string_view key, const Request& request,
                            std::initializer_list<long> accepted = {}) {
    const std::string payload_hash = sha256Hex(request.body);
    const std::string path = pathFor(request.key);
    const std::string url = urlFor(path, canonicalQuery(request.query));
    const int max_attempts = std::max(1, options_.max_attempts);
    for (int attempt = 1;; ++attempt) {
      const std::string date = amzDate(std::chrono::system_clock::now());
      CanonicalInput input{std::string(request.method), path, request.query, request.headers,
                           payload_hash};
      input.headers.emplace_back("host", host_);
      input.headers.emplace_back("x-amz-date", date);
      // Set by us, always: libcurl's own SigV4 leaves it out for streamed bodies and
      // the signature then fails (the pitfall measured in issue 6).
      input.headers.emplace_back("x-amz-content-sha256", payload_hash);
      Pairs headers = input.headers;
      headers.emplace_back("Authorization", signer_.authorization(input, date));

      std::unique_ptr<HttpClient> http = acquire();
      auto response =
          http->request(request.method, url, headers, request.body, options_.request_timeout);
      release(std::move(http));

      Error error;
      bool retry = false;
      std::chrono::milliseconds retry_after{0};
      if (!response.ok()) {
        const ErrorCode code = response.error().code;
        retry = code == ErrorCode::kTimeout || code == ErrorCode::kUnavailable;
        error = makeError(code, describe(op, key) + ": " + response.error().message);
      } else {
        const long status = response.value().status;
        if ((status >= 200 && status < 300) ||
            std::find(accepted.begin(), accepted.end(), status) != accepted.end()) {
          return std::move(response).value();
        }
        const StoreError store = parseStoreError(response.value());
        retry = retryableStatus(status, store.code);
        std::string detail = "HTTP " + std::to_string(status);
        if (!store.code.empty()) detail += " " + store.code;
        if (!store.message.empty()) detail += ": " + store.message;
        if (!store.request_id.empty()) detail += " (request id " + store.request_id + ")";
        error = detailError(codeForStatus(status, store.code), op, key, detail);
        if (auto after = response.value().header("retry-after")) {
          if (auto seconds = parseInt<int>(*after)) retry_after = std::chrono::seconds(*seconds);
        }
      }
      if (!retry || attempt >= max_attempts) {
        if (attempt > 1) {
          error.message += " (gave up after " + std::to_string(attempt) + " attempts)";
        }
        return error;
      }
      const auto delay = backoff(attempt, retry_after);
      log::warn("s3 storage: retrying", {{"op", std::string(op)},
                                         {"key", printable(key)},
                                         {"attempt", static_cast<long long>(attempt)},
                                         {"delay_ms", static_cast<long long>(delay.count())},
                                         {"error", error.message}});
      std::this_thread::sleep_for(delay);
    }
  }

  /// Exponential backoff with "equal jitter": half the step fixed, half random, so
  /// clients that failed together spread out but none retries immediately.
  std::chrono::milliseconds backoff(int attempt, std::chrono::milliseconds retry_after) {
    const auto base = std::max<std::int64_t>(1, options_.retry_base_delay.count());
    const auto cap = std::max<std::int64_t>(base, options_.retry_max_delay.count());
    std::int64_t step = base;
    for (int i = 1; i < attempt && step < cap; ++i) step *= 2;
    step = std::min(step, cap);
    thread_local std::mt19937_64 rng{std::random_device{}()};
    std::uniform_int_distribution<std::int64_t> jitter(0, step / 2);
    std::int64_t delay = step - step / 2 + jitter(rng);
    if (retry_after.count() > 0)
      delay = std::max<std::int64_t>(delay, std::min(retry_after.count(), cap));
    return std::chrono::milliseconds(delay);
  }

  /// A presigned URL for `method` on `key` with `signed_headers` (besides host).
  PresignedRequest presign(std::string_view method, std::string_view key, Pairs signed_headers,
                           std::int64_t ttl_s) const {
    const auto now = std::chrono::system_clock::now();
    const std::string date = amzDate(now);
    const std::string path = pathFor(key);
    CanonicalInput input{std::string(method), path, {}, signed_headers, ""};
    input.headers.emplace_back("host", host_);
    PresignedRequest out;
    out.method = std::string(method);
    out.url = urlFor(path, signer_.presignQuery(std::move(input), date, ttl_s));
    out.headers = std::move(signed_headers);
    out.expires_unix =
        std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count() + ttl_s;
    return out;
  }

 private:
  std::unique_ptr<HttpClient> acquire() {
    {
      const std::lock_guard lock(pool_mutex_);
      if (!idle_.empty()) {
        auto client = std::move(idle_.back());
        idle_.pop_back();
        return client;
      }
    }
    return std::make_unique<HttpClient>(max_response_bytes_);
  }

  void release(std::unique_ptr<HttpClient> client) {
    const std::lock_guard lock(pool_mutex_);
    if (idle_.size() < kMaxIdleHandles) idle_.push_back(std::move(client));
  }

  S3Options options_;
  Endpoint endpoint_;
  Signer signer_;
  std::size_t max_response_bytes_;
  std::string host_;
  std::string bucket_path_;
  std::mutex pool_mutex_;
  /// Idle easy handles, each with its own connection cache (keep-alive).
  std::vector<std::unique_ptr<HttpClient>> idle_;
};

namespace {

// ---------------------------------------------------------------------------
// Single operations shared by the store, writers and readers

Pairs contentTypeHeader(std::string_view content_type) {
  Pairs headers;
  if (!content_type.empty()) headers.emplace_back("content-type", std::string(content_type));
  return headers;
}

Result<void> putObject(Client& client, std::string_view op, std::string_view key,
                       std::string_view body, std::string_view content_type) {
  Request request{"PUT", key, {}, contentTypeHeader(content_type), body};
  auto response = client.send(op, key, request);
  if (!response) return std::move(response).error();
  return {};
}

Result<void> abortUpload(Client& client, std::string_view op, std::string_view key,
                         const std::string& upload_id) {
  Request request{"DELETE", key, {{"uploadId", upload_id}}, {}, {}};
  auto response = client.send(op, key, request, {404});  // already gone: fine
  if (!response) return std::move(response).error();
  return {};
}

struct Listing {
  std::vector<ObjectInfo> objects;
  std::string next_token;
};

Result<Listing> listOnce(Client& client, std::string_view op, std::string_view prefix,
                         std::string_view token, std::size_t max_keys) {
  Pairs query = {{"list-type", "2"}, {"max-keys", std::to_string(max_keys)}};
  if (!prefix.empty()) query.emplace_back("prefix", std::string(prefix));
  if (!token.empty()) query.emplace_back("continuation-token", std::string(token));
  Request request{"GET", "", std::move(query), {}, {}};
  auto response = client.send(op, prefix, request);
  if (!response) return std::move(response).error();
  const std::string_view body = response.value().body;
  if (xmlElements(body, "ListBucketResult").empty()) {
    return detailError(ErrorCode::kUnavailable, op, prefix,
                       "the store's answer is not a ListBucketResult");
  }
  Listing out;
  for (const std::string_view contents : xmlElements(body, "Contents")) {
    ObjectInfo info;
    info.key = xmlText(contents, "Key").value_or("");
    info.size_bytes = parseInt<std::uint64_t>(xmlText(contents, "Size").value_or("")).value_or(0);
    info.modified_unix_ms = parseIsoTimeMs(xmlText(contents, "LastModified").value_or(""));
    if (!info.key.empty()) out.objects.push_back(std::move(info));
  }
  if (xmlText(body, "IsTruncated").value_or("false") == "true") {
    out.next_token = xmlText(body, "NextContinuationToken").value_or("");
    if (out.next_token.empty()) {
      return detailError(ErrorCode::kUnavailable, op, prefix,
                         "a truncated listing came without a continuation token");
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Writer: one buffered part; multipart with parallel part uploads past part_size

class S3ObjectWriter final : public ObjectWriter {
 public:
  S3ObjectWriter(std::shared_ptr<Client> client, std::string key, std::string content_type)
      : client_(std::move(client)), key_(std::move(key)), content_type_(std::move(content_type)) {
    part_size_ = client_->options().part_size_bytes;
    concurrency_ = std::max<std::size_t>(1, client_->options().upload_concurrency);
  }

  ~S3ObjectWriter() override {
    abort();
    stopWorkers();  // after a commit they are idle
  }

  Result<void> write(std::span<const std::byte> data) noexcept override {
    return guarded<void>("write", key_, [&]() -> Result<void> {
      if (state_ != State::kOpen) return finishedError("write");
      const char* bytes = reinterpret_cast<const char*>(data.data());
      std::size_t left = data.size();
      while (left > 0) {
        if (buffer_.capacity() < part_size_) buffer_.reserve(part_size_);
        const std::size_t n = std::min(left, part_size_ - buffer_.size());
        buffer_.append(bytes, n);
        bytes += n;
        left -= n;
        written_ += n;
        if (buffer_.size() == part_size_) {
          if (auto queued = queuePart(); !queued) return fail(std::move(queued).error());
        }
      }
      return {};
    });
  }

  Result<void> commit() noexcept override {
    return guarded<void>("commit", key_, [&]() -> Result<void> {
      if (state_ != State::kOpen) return finishedError("commit");
      if (upload_id_.empty()) {  // small object: one PUT
        auto done = putObject(*client_, "commit", key_, buffer_, content_type_);
        if (!done) return fail(std::move(done).error());
        state_ = State::kCommitted;
        releaseBuffer();
        return {};
      }
      if (!buffer_.empty()) {
        if (auto queued = queuePart(); !queued) return fail(std::move(queued).error());
      }
      if (auto drained = drain(); !drained) return fail(std::move(drained).error());
      if (auto completed = complete(); !completed) return fail(std::move(completed).error());
      state_ = State::kCommitted;
      stopWorkers();
      upload_id_.clear();
      return {};
    });
  }

  void abort() noexcept override {
    if (state_ == State::kCommitted || state_ == State::kAborted) return;
    state_ = State::kAborted;
    try {
      stopWorkers();
      releaseBuffer();
      abortUploadNow("abort");
    } catch (...) {
    }
  }

  std::uint64_t bytesWritten() const noexcept override { return written_; }

 private:
  enum class State { kOpen, kCommitted, kAborted, kFailed };

  struct Part {
    int number = 0;
    std::string data;
  };

  Error finishedError(std::string_view op) const {
    return detailError(ErrorCode::kInvalidArgument, op, key_,
                       state_ == State::kCommitted ? "the writer was already committed"
                                                   : "the writer was aborted or has failed");
  }

  /// Marks the writer failed and aborts its multipart upload; returns `error`.
  Error fail(Error error) {
    state_ = State::kFailed;
    stopWorkers();
    releaseBuffer();
    abortUploadNow("abort after failure");
    return error;
  }

  void releaseBuffer() { std::string().swap(buffer_); }

  void abortUploadNow(std::string_view why) {
    if (upload_id_.empty()) return;
    auto aborted = abortUpload(*client_, why, key_, upload_id_);
    if (!aborted) {
      // Left for removePrefix (which sweeps uploads under its prefix) or a bucket
      // lifecycle rule; nothing of it is visible as an object.
      log::warn("s3 storage: could not abort a multipart upload",
                {{"key", printable(key_)}, {"error", aborted.error().message}});
    }
    upload_id_.clear();
  }

  Result<void> startUpload() {
    Request request{"POST", key_, {{"uploads", ""}}, contentTypeHeader(content_type_), {}};
    auto response = client_->send("write", key_, request);
    if (!response) return std::move(response).error();
    auto id = xmlText(response.value().body, "UploadId");
    if (!id || id->empty()) {
      return detailError(ErrorCode::kUnavailable, "write", key_,
                         "CreateMultipartUpload answered without an UploadId");
    }
    upload_id_ = std::move(*id);
    return {};
  }

  /// Hands the full buffer to the upload workers; blocks while `concurrency_`
  /// parts are already queued or in flight (bounds memory to about
  /// (concurrency + 1) × part size).
  Result<void> queuePart() {
    if (upload_id_.empty()) {
      if (auto started = startUpload(); !started) return started;
    }
    if (next_part_ > kMaxParts) {
      return detailError(ErrorCode::kInvalidArgument, "write", key_,
                         "more than 10000 parts; raise storage.s3.part_size_bytes");
    }
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return in_flight_ < concurrency_ || failure_.has_value(); });
    if (failure_) return *failure_;
    queue_.push_back(Part{next_part_++, std::move(buffer_)});
    buffer_ = std::string();
    ++in_flight_;
    if (workers_.size() < concurrency_ && workers_.size() < in_flight_) {
      workers_.emplace_back([this] { workerLoop(); });
    }
    cv_.notify_all();
    return {};
  }

  void workerLoop() {
    std::unique_lock lock(mutex_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      Part part = std::move(queue_.front());
      queue_.pop_front();
      const std::string upload_id = upload_id_;
      lock.unlock();
      Request request{"PUT",
                      key_,
                      {{"partNumber", std::to_string(part.number)}, {"uploadId", upload_id}},
                      {},
                      part.data};
      auto response = client_->send("write", key_, request);
      std::string etag;
      std::optional<Error> error;
      if (!response) {
        error = std::move(response).error();
        error->message += " (part " + std::to_string(part.number) + ")";
      } else if (auto header = response.value().header("etag"); header && !header->empty()) {
        etag = std::move(*header);
      } else {
        error =
            detailError(ErrorCode::kUnavailable, "write", key_,
                        "UploadPart " + std::to_string(part.number) + " answered without an ETag");
      }
      part.data = std::string();
      lock.lock();
      if (error) {
        if (!failure_) failure_ = std::move(*error);
        queue_.clear();  // queued parts were counted in flight; they will never run
        in_flight_ = 0;
      } else {
        etags_[part.number] = std::move(etag);
        if (in_flight_ > 0) --in_flight_;
      }
      cv_.notify_all();
    }
  }

  Result<void> drain() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return in_flight_ == 0 || failure_.has_value(); });
    if (failure_) return *failure_;
    return {};
  }

  void stopWorkers() {
    {
      const std::lock_guard lock(mutex_);
      stop_ = true;
      queue_.clear();
    }
    cv_.notify_all();
    for (auto& worker : workers_) {
      if (worker.joinable()) worker.join();
    }
    workers_.clear();
  }

  Result<void> complete() {
    std::string body = "<CompleteMultipartUpload>";
    for (const auto& [number, etag] : etags_) {
      body += "<Part><PartNumber>" + std::to_string(number) + "</PartNumber><ETag>" +
              xmlEscape(etag) + "</ETag></Part>";
    }
    body += "</CompleteMultipartUpload>";
    Request request{
        "POST", key_, {{"uploadId", upload_id_}}, {{"content-type", "application/xml"}}, body};
    auto response = client_->send("commit", key_, request, {404});
    if (!response) return std::move(response).error();
    if (response.value().status == 404) {
      // A retried Complete whose first try succeeded unseen finds no upload: the
      // object is there if it has exactly our size.
      auto head = client_->send("commit", key_, Request{"HEAD", key_, {}, {}, {}}, {404});
      if (head && head.value().status == 200 &&
          parseInt<std::uint64_t>(head.value().header("content-length").value_or("")) == written_) {
        return {};
      }
      return detailError(
          ErrorCode::kNotFound, "commit", key_,
          "HTTP 404 NoSuchUpload: the multipart upload is gone (aborted elsewhere?)");
    }
    // S3 may answer 200 and still fail the completion in the body.
    const std::string_view answer = response.value().body;
    if (xmlElements(answer, "CompleteMultipartUploadResult").empty() &&
        !xmlElements(answer, "Error").empty()) {
      const std::string code = xmlText(answer, "Code").value_or("");
      return detailError(
          retryableStatus(500, code) ? ErrorCode::kUnavailable : codeForStatus(400, code), "commit",
          key_,
          "CompleteMultipartUpload failed: " + code + ": " +
              xmlText(answer, "Message").value_or(""));
    }
    return {};
  }

  std::shared_ptr<Client> client_;
  std::string key_;
  std::string content_type_;
  std::size_t part_size_ = 0;
  std::size_t concurrency_ = 1;
  State state_ = State::kOpen;
  std::string buffer_;
  std::uint64_t written_ = 0;
  std::string upload_id_;
  int next_part_ = 1;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Part> queue_;
  std::size_t in_flight_ = 0;  ///< queued + uploading
  std::map<int, std::string> etags_;
  std::optional<Error> failure_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

// ---------------------------------------------------------------------------
// Reader: ranged GETs, one prefetched ahead

struct Chunk {
  std::string data;
  std::uint64_t total_size = 0;
  std::string etag;
};

/// GET bytes [first, last] of `key`. 416 comes back as a response (not an error).
Result<std::pair<long, Chunk>> getRange(Client& client, std::string_view op, std::string_view key,
                                        std::uint64_t first, std::uint64_t last,
                                        const std::string& if_match) {
  Pairs headers = {{"range", "bytes=" + std::to_string(first) + "-" + std::to_string(last)}};
  if (!if_match.empty()) headers.emplace_back("if-match", if_match);
  Request request{"GET", key, {}, std::move(headers), {}};
  auto response = client.send(op, key, request, {416});
  if (!response) {
    Error error = std::move(response).error();
    if (error.message.find("PreconditionFailed") != std::string::npos ||
        error.message.find("HTTP 412") != std::string::npos) {
      error.code = ErrorCode::kUnavailable;
      error.message += " (the object changed while it was being read)";
    }
    return error;
  }
  HttpResponse& r = response.value();
  Chunk chunk;
  chunk.etag = r.header("etag").value_or("");
  if (r.status == 416) return std::pair<long, Chunk>(416, std::move(chunk));
  if (r.status == 206) {
    auto total = totalFromContentRange(r.header("content-range").value_or(""));
    if (!total) {
      return detailError(ErrorCode::kUnavailable, op, key, "206 without a valid Content-Range");
    }
    chunk.total_size = *total;
  } else {  // 200: the store ignored the range and sent the whole object
    chunk.total_size = r.body.size();
    if (first >= r.body.size()) {
      r.body.clear();
    } else {
      r.body = r.body.substr(first, last - first + 1);
    }
  }
  chunk.data = std::move(r.body);
  return std::pair<long, Chunk>(r.status, std::move(chunk));
}

class S3ObjectReader final : public ObjectReader {
 public:
  S3ObjectReader(std::shared_ptr<Client> client, std::string key, std::uint64_t next_offset,
                 std::uint64_t end, std::uint64_t size, std::string etag, std::string first)
      : client_(std::move(client)),
        key_(std::move(key)),
        next_offset_(next_offset),
        end_(end),
        size_(size),
        etag_(std::move(etag)),
        chunk_(std::move(first)) {
    prefetch();
  }

  ~S3ObjectReader() override {
    if (pending_.valid()) pending_.wait();
  }

  Result<std::size_t> read(std::span<std::byte> buffer) noexcept override {
    return guarded<std::size_t>("read", key_, [&]() -> Result<std::size_t> {
      if (failed_) return *failed_;
      if (position_ == chunk_.size()) {
        if (!pending_.valid()) return std::size_t{0};
        auto next = pending_.get();
        if (!next) {
          failed_ = next.error();
          return std::move(next).error();
        }
        chunk_ = std::move(next).value();
        position_ = 0;
        if (chunk_.empty()) {
          failed_ = detailError(ErrorCode::kUnavailable, "read", key_,
                                "the object shrank while it was being read");
          return *failed_;
        }
        prefetch();
      }
      const std::size_t n = std::min(buffer.size(), chunk_.size() - position_);
      std::copy_n(reinterpret_cast<const std::byte*>(chunk_.data()) + position_, n, buffer.data());
      position_ += n;
      return n;
    });
  }

  std::uint64_t sizeBytes() const noexcept override { return size_; }

 private:
  void prefetch() {
    if (next_offset_ >= end_) return;
    const std::uint64_t first = next_offset_;
    const std::uint64_t last =
        std::min<std::uint64_t>(end_, first + client_->options().part_size_bytes) - 1;
    next_offset_ = last + 1;
    pending_ = std::async(
        std::launch::async,
        [client = client_, key = key_, etag = etag_, first, last]() -> Result<std::string> {
          auto got = getRange(*client, "read", key, first, last, etag);
          if (!got) return std::move(got).error();
          if (got.value().first == 416) return std::string();
          return std::move(got.value().second.data);
        });
  }

  std::shared_ptr<Client> client_;
  std::string key_;
  std::uint64_t next_offset_;  ///< where the next range starts
  std::uint64_t end_;          ///< one past the last byte to read
  std::uint64_t size_;
  std::string etag_;
  std::string chunk_;
  std::size_t position_ = 0;
  std::future<Result<std::string>> pending_;
  std::optional<Error> failed_;
};

}  // namespace

}  // namespace s3

// ---------------------------------------------------------------------------
// S3Storage

using s3::Client;
using s3::detailError;
using s3::Request;

S3Storage::S3Storage(std::shared_ptr<Client> client) noexcept : client_(std::move(client)) {}
S3Storage::~S3Storage() = default;

Result<std::unique_ptr<S3Storage>> S3Storage::open(S3Options options) noexcept {
  try {
    auto config = [](std::string_view key, const std::string& why) {
      return makeError(ErrorCode::kConfig, "storage.s3." + std::string(key) + ": " + why);
    };
    auto endpoint = s3::parseEndpoint(options.endpoint);
    if (!endpoint) return std::move(endpoint).error();
    if (!s3::isValidBucket(options.bucket)) {
      return config("bucket", "'" + s3::printable(options.bucket) +
                                  "' is not a valid bucket name (3-63 of a-z, 0-9, '.', '-')");
    }
    if (!options.path_style && options.bucket.find('.') != std::string::npos &&
        endpoint.value().scheme == "https") {
      return config("path_style",
                    "a bucket name with '.' breaks TLS host names in virtual-host style; set "
                    "path_style = true");
    }
    if (options.region.empty() || s3::hasControl(options.region) ||
        options.region.find_first_of("/ ") != std::string::npos) {
      return config("region", "must be a region name such as 'auto' (R2) or 'us-east-1'");
    }
    if (options.access_key_id.empty() || s3::hasControl(options.access_key_id) ||
        options.access_key_id.find('/') != std::string::npos) {
      return config("access_key_id", "must be set (no '/' or control characters)");
    }
    if (options.secret_access_key.empty()) {
      return config("secret_access_key", "must be set (or secret_access_key_file)");
    }
    if (!options.public_base_url.empty() && !options.public_base_url.starts_with("https://") &&
        !options.public_base_url.starts_with("http://")) {
      return config("public_base_url", "must be an http(s):// URL");
    }
    while (options.public_base_url.ends_with('/')) options.public_base_url.pop_back();
    if (options.part_size_bytes < s3::kMinPartBytes ||
        options.part_size_bytes > s3::kMaxPartBytes) {
      return config("part_size_bytes", "must be between 5 MiB and 5 GiB");
    }
    if (options.upload_concurrency < 1 || options.upload_concurrency > 64) {
      return config("upload_concurrency", "must be between 1 and 64");
    }
    if (options.max_attempts < 1) return config("max_attempts", "must be at least 1");
    if (options.request_timeout.count() <= 0) {
      return config("request_timeout_ms", "must be positive");
    }
    auto client = std::make_shared<Client>(std::move(options), std::move(endpoint).value());
    return std::unique_ptr<S3Storage>(new S3Storage(std::move(client)));
  } catch (const std::exception& e) {
    return makeError(ErrorCode::kInternal, std::string("s3 storage: open: ") + e.what());
  }
}

Result<void> S3Storage::put(std::string_view key, std::span<const std::byte> data,
                            std::string_view content_type) noexcept {
  return s3::guarded<void>("put", key, [&]() -> Result<void> {
    if (auto valid = s3::validateKey("put", key); !valid) return valid;
    const std::string_view body(reinterpret_cast<const char*>(data.data()), data.size());
    if (data.size() <= client_->options().part_size_bytes) {
      return s3::putObject(*client_, "put", key, body, content_type);
    }
    s3::S3ObjectWriter writer(client_, std::string(key), std::string(content_type));
    if (auto written = writer.write(data); !written) return written;
    return writer.commit();
  });
}

Result<std::unique_ptr<ObjectWriter>> S3Storage::openWriter(
    std::string_view key, std::string_view content_type) noexcept {
  return s3::guarded<std::unique_ptr<ObjectWriter>>(
      "openWriter", key, [&]() -> Result<std::unique_ptr<ObjectWriter>> {
        if (auto valid = s3::validateKey("openWriter", key); !valid)
          return std::move(valid).error();
        return std::unique_ptr<ObjectWriter>(
            new s3::S3ObjectWriter(client_, std::string(key), std::string(content_type)));
      });
}

Result<std::unique_ptr<ObjectReader>> S3Storage::openReader(
    std::string_view key, std::uint64_t offset, std::optional<std::uint64_t> length) noexcept {
  return s3::guarded<std::unique_ptr<ObjectReader>>(
      "openReader", key, [&]() -> Result<std::unique_ptr<ObjectReader>> {
        constexpr std::string_view op = "openReader";
        if (auto valid = s3::validateKey(op, key); !valid) return std::move(valid).error();
        auto past_end = [&](std::uint64_t size) {
          return detailError(ErrorCode::kInvalidArgument, op, key,
                             "offset " + std::to_string(offset) + " is past the end (size " +
                                 std::to_string(size) + ")");
        };
        auto empty_reader = [&](std::uint64_t size) -> Result<std::unique_ptr<ObjectReader>> {
          if (offset > size) return past_end(size);
          return std::unique_ptr<ObjectReader>(
              new s3::S3ObjectReader(client_, std::string(key), 0, 0, 0, "", ""));
        };
        if (length && *length == 0) {
          auto info = stat(key);
          if (!info) return std::move(info).error();
          return empty_reader(info.value().size_bytes);
        }
        const std::uint64_t chunk = client_->options().part_size_bytes;
        std::uint64_t want = length ? std::min(*length, chunk) : chunk;
        auto first = s3::getRange(*client_, op, key, offset, offset + want - 1, "");
        if (!first) return std::move(first).error();
        if (first.value().first == 416) {  // at or past the end, or an empty object
          auto info = stat(key);
          if (!info) return std::move(info).error();
          return empty_reader(info.value().size_bytes);
        }
        s3::Chunk& got = first.value().second;
        if (offset > got.total_size) return past_end(got.total_size);
        const std::uint64_t available = got.total_size - offset;
        const std::uint64_t readable = length ? std::min(*length, available) : available;
        if (got.data.size() > readable) got.data.resize(readable);
        // Computed before the call: argument evaluation order is unspecified and
        // `got.data` is moved into the reader.
        const std::uint64_t next_offset = offset + got.data.size();
        return std::unique_ptr<ObjectReader>(
            new s3::S3ObjectReader(client_, std::string(key), next_offset, offset + readable,
                                   readable, std::move(got.etag), std::move(got.data)));
      });
}

Result<ObjectInfo> S3Storage::stat(std::string_view key) noexcept {
  return s3::guarded<ObjectInfo>("stat", key, [&]() -> Result<ObjectInfo> {
    if (auto valid = s3::validateKey("stat", key); !valid) return std::move(valid).error();
    auto response = client_->send("stat", key, Request{"HEAD", key, {}, {}, {}});
    if (!response) return std::move(response).error();
    ObjectInfo info;
    info.key = std::string(key);
    info.size_bytes =
        s3::parseInt<std::uint64_t>(response.value().header("content-length").value_or(""))
            .value_or(0);
    info.modified_unix_ms =
        s3::parseHttpDateMs(response.value().header("last-modified").value_or(""));
    return info;
  });
}

Result<bool> S3Storage::exists(std::string_view key) noexcept {
  return s3::guarded<bool>("exists", key, [&]() -> Result<bool> {
    if (auto valid = s3::validateKey("exists", key); !valid) return std::move(valid).error();
    auto response = client_->send("exists", key, Request{"HEAD", key, {}, {}, {}}, {404});
    if (!response) return std::move(response).error();
    return response.value().status != 404;
  });
}

Result<void> S3Storage::remove(std::string_view key) noexcept {
  return s3::guarded<void>("remove", key, [&]() -> Result<void> {
    if (auto valid = s3::validateKey("remove", key); !valid) return valid;
    auto response = client_->send("remove", key, Request{"DELETE", key, {}, {}, {}}, {404});
    if (!response) return std::move(response).error();
    return {};
  });
}

Result<ListPage> S3Storage::list(std::string_view prefix, std::string_view page_token,
                                 std::size_t max_keys) noexcept {
  return s3::guarded<ListPage>("list", prefix, [&]() -> Result<ListPage> {
    constexpr std::string_view op = "list";
    if (max_keys == 0) {
      return detailError(ErrorCode::kInvalidArgument, op, prefix, "max_keys must be at least 1");
    }
    if (!s3::isValidPrefix(prefix)) {
      return detailError(ErrorCode::kInvalidArgument, op, prefix,
                         "not a valid key prefix (relative, '/'-separated, no empty, '.' or '..' "
                         "components, no NUL, backslash or control characters)");
    }
    if (s3::hasControl(page_token) || page_token.size() > 4096) {
      return detailError(ErrorCode::kInvalidArgument, op, prefix, "invalid page token");
    }
    ListPage page;
    std::string token(page_token);
    // Whole store pages only, so the store's continuation token is our page token.
    while (page.objects.size() < max_keys) {
      const std::size_t want = std::min(s3::kListPageMax, max_keys - page.objects.size());
      auto listed = s3::listOnce(*client_, op, prefix, token, want);
      if (!listed) return std::move(listed).error();
      for (auto& object : listed.value().objects) page.objects.push_back(std::move(object));
      token = std::move(listed.value().next_token);
      if (token.empty()) break;
    }
    page.next_token = std::move(token);
    return page;
  });
}

Result<std::uint64_t> S3Storage::removePrefix(std::string_view prefix) noexcept {
  return s3::guarded<std::uint64_t>("removePrefix", prefix, [&]() -> Result<std::uint64_t> {
    constexpr std::string_view op = "removePrefix";
    if (prefix.empty()) {
      return detailError(ErrorCode::kInvalidArgument, op, prefix,
                         "refusing an empty prefix (it would remove every object)");
    }
    if (!s3::isValidPrefix(prefix)) {
      return detailError(ErrorCode::kInvalidArgument, op, prefix, "not a valid key prefix");
    }
    std::uint64_t removed = 0;
    std::string token;
    for (;;) {
      auto listed = s3::listOnce(*client_, op, prefix, token, s3::kListPageMax);
      if (!listed) return std::move(listed).error();
      const auto& objects = listed.value().objects;
      if (!objects.empty()) {
        std::string body = "<Delete><Quiet>true</Quiet>";
        for (const auto& object : objects) {
          body += "<Object><Key>" + s3::xmlEscape(object.key) + "</Key></Object>";
        }
        body += "</Delete>";
        Request request{"POST",
                        "",
                        {{"delete", ""}},
                        {{"content-type", "application/xml"}, {"content-md5", s3::md5Base64(body)}},
                        body};
        auto response = client_->send(op, prefix, request);
        if (!response) {
          Error error = std::move(response).error();
          error.message += " (after removing " + std::to_string(removed) + " objects)";
          return error;
        }
        const auto failures = s3::xmlElements(response.value().body, "Error");
        if (!failures.empty()) {
          const std::string failed_key = s3::xmlText(failures.front(), "Key").value_or("");
          const std::string code = s3::xmlText(failures.front(), "Code").value_or("");
          return detailError(
              code == "AccessDenied" ? ErrorCode::kPermissionDenied : ErrorCode::kUnavailable, op,
              prefix,
              "DeleteObjects refused " + std::to_string(failures.size()) + " of " +
                  std::to_string(objects.size()) + " keys, first '" + s3::printable(failed_key) +
                  "': " + code + ": " + s3::xmlText(failures.front(), "Message").value_or(""));
        }
        removed += objects.size();
      }
      token = std::move(listed.value().next_token);
      if (token.empty()) break;
    }
    // Multipart uploads of writers that died before aborting (kill -9): nothing of
    // them is visible, but they hold storage until aborted.
    auto uploads = listMultipartUploads(prefix);
    if (!uploads) return std::move(uploads).error();
    for (const auto& [key, upload_id] : uploads.value()) {
      if (auto aborted = s3::abortUpload(*client_, op, key, upload_id); !aborted) {
        return std::move(aborted).error();
      }
    }
    return removed;
  });
}

Result<std::vector<std::pair<std::string, std::string>>> S3Storage::listMultipartUploads(
    std::string_view prefix) noexcept {
  using Uploads = std::vector<std::pair<std::string, std::string>>;
  return s3::guarded<Uploads>("listMultipartUploads", prefix, [&]() -> Result<Uploads> {
    constexpr std::string_view op = "listMultipartUploads";
    Uploads out;
    std::string key_marker, id_marker;
    for (int page = 0; page < 100'000; ++page) {
      s3::Pairs query = {{"uploads", ""}};
      if (!prefix.empty()) query.emplace_back("prefix", std::string(prefix));
      if (!key_marker.empty()) query.emplace_back("key-marker", key_marker);
      if (!id_marker.empty()) query.emplace_back("upload-id-marker", id_marker);
      auto response = client_->send(op, prefix, Request{"GET", "", std::move(query), {}, {}});
      if (!response) return std::move(response).error();
      const std::string_view body = response.value().body;
      for (const std::string_view upload : s3::xmlElements(body, "Upload")) {
        out.emplace_back(s3::xmlText(upload, "Key").value_or(""),
                         s3::xmlText(upload, "UploadId").value_or(""));
      }
      if (s3::xmlText(body, "IsTruncated").value_or("false") != "true") return out;
      key_marker = s3::xmlText(body, "NextKeyMarker").value_or("");
      id_marker = s3::xmlText(body, "NextUploadIdMarker").value_or("");
      if (key_marker.empty() && id_marker.empty()) return out;
    }
    return out;
  });
}

std::optional<std::string> S3Storage::localPath(std::string_view /*key*/) const noexcept {
  return std::nullopt;
}

Result<std::optional<PresignedRequest>> S3Storage::presignPut(std::string_view key,
                                                              std::string_view content_type,
                                                              std::uint64_t size_bytes,
                                                              std::int64_t ttl_s) noexcept {
  using Out = std::optional<PresignedRequest>;
  return s3::guarded<Out>("presignPut", key, [&]() -> Result<Out> {
    constexpr std::string_view op = "presignPut";
    if (auto valid = s3::validateKey(op, key); !valid) return std::move(valid).error();
    if (ttl_s < 1 || ttl_s > s3::kMaxPresignTtlS) {
      return detailError(ErrorCode::kInvalidArgument, op, key,
                         "ttl must be 1 s to 7 days, got " + std::to_string(ttl_s) + " s");
    }
    if (size_bytes > s3::kMaxSinglePutBytes) {
      return detailError(ErrorCode::kInvalidArgument, op, key,
                         "a presigned PUT carries at most 5 GiB");
    }
    if (s3::hasControl(content_type)) {
      return detailError(ErrorCode::kInvalidArgument, op, key, "invalid content type");
    }
    s3::Pairs headers = {{"Content-Length", std::to_string(size_bytes)}};
    if (!content_type.empty()) headers.emplace_back("Content-Type", std::string(content_type));
    PresignedRequest request = client_->presign("PUT", key, headers, ttl_s);
    // Browsers set Content-Length themselves (and may not set it by hand); it is
    // still bound by the signature, so a body of any other size is refused.
    std::erase_if(request.headers, [](const auto& h) { return h.first == "Content-Length"; });
    return Out(std::move(request));
  });
}

Result<std::optional<PresignedRequest>> S3Storage::presignGet(std::string_view key,
                                                              std::int64_t ttl_s) noexcept {
  using Out = std::optional<PresignedRequest>;
  return s3::guarded<Out>("presignGet", key, [&]() -> Result<Out> {
    constexpr std::string_view op = "presignGet";
    if (auto valid = s3::validateKey(op, key); !valid) return std::move(valid).error();
    if (ttl_s < 1 || ttl_s > s3::kMaxPresignTtlS) {
      return detailError(ErrorCode::kInvalidArgument, op, key,
                         "ttl must be 1 s to 7 days, got " + std::to_string(ttl_s) + " s");
    }
    return Out(client_->presign("GET", key, {}, ttl_s));
  });
}

std::optional<std::string> S3Storage::publicUrl(std::string_view key) const noexcept {
  try {
    const std::string& base = client_->options().public_base_url;
    if (base.empty() || !isValidKey(key) || s3::hasControl(key)) return std::nullopt;
    return base + "/" + s3::uriEncode(key, true);
  } catch (...) {
    return std::nullopt;
  }
}

Result<std::unique_ptr<Storage>> makeS3Storage(S3Options options) noexcept {
  auto opened = S3Storage::open(std::move(options));
  if (!opened) return std::move(opened).error();
  return std::unique_ptr<Storage>(std::move(opened).value());
}

}  // namespace vessel::plugins
