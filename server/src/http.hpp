// A small HTTP layer over libsoup-3: I/O loops (one per core by default), each
// a SoupServer on its own thread and GMainContext with its own listening socket
// on the shared port (SO_REUSEPORT); route handlers run on a pool of worker
// threads (they may block on PostgreSQL or storage) and hand a Response back to
// the loop thread that serves the request.
// Request bodies are never accumulated by libsoup: every route has a body limit
// checked against Content-Length before a byte is read, and streaming routes
// (uploads) get each chunk as it arrives.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "vessel/result.hpp"

namespace vessel::http {

struct Request {
  std::string method;
  std::string path;                                          ///< as sent (percent-encoded)
  std::map<std::string, std::string, std::less<>> params;    ///< {name} segments, decoded
  std::map<std::string, std::string, std::less<>> query;     ///< decoded
  std::vector<std::pair<std::string, std::string>> headers;  ///< names lower-case
  std::string body;
  std::string peer;  ///< remote address
  std::string request_id;
  std::string route;  ///< the matched route pattern ("" when none matched), for metrics

  /// First header with this name (case-insensitive), if any.
  std::optional<std::string> header(std::string_view name) const;
  std::string param(std::string_view name) const;
  std::optional<std::string> queryValue(std::string_view name) const;
};

/// A reusable byte buffer from a BufferPool; returned to the pool when the last
/// reference goes (after libsoup has written it).
struct Buffer {
  std::unique_ptr<char[]> data;  ///< uninitialized on purpose: it is read into
  std::size_t capacity = 0;
};

/// Hands out buffers of at least n bytes, reusing returned ones: serving a
/// segment then neither maps fresh pages nor zero-fills them (bench/server).
/// Keeps at most `max_kept` buffers of up to `max_kept_bytes` each.
class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  static std::shared_ptr<BufferPool> create(std::size_t max_kept = 64,
                                            std::size_t max_kept_bytes = 4u << 20);
  std::shared_ptr<Buffer> take(std::size_t n);

 private:
  BufferPool(std::size_t max_kept, std::size_t max_kept_bytes)
      : max_kept_(max_kept), max_kept_bytes_(max_kept_bytes) {}
  void give(Buffer* b) noexcept;

  const std::size_t max_kept_, max_kept_bytes_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Buffer>> free_;
};

struct Response {
  int status = 200;
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  /// Instead of `body`: bytes `shared_body` keeps alive (handed to libsoup
  /// without a copy).
  std::shared_ptr<const void> shared_body;
  std::string_view shared_view;
  /// Instead of either: `count` bytes of the open file `fd` from `offset`, which
  /// the kernel sends to the socket (sendfile) once the head is written; `owner`
  /// keeps `fd` open until then. The file must not shrink meanwhile (a short
  /// file cuts the connection: the head promised `count` bytes).
  struct FileBody {
    std::shared_ptr<const void> owner;
    int fd = -1;
    std::uint64_t offset = 0;
    std::uint64_t count = 0;
  };
  std::optional<FileBody> file;

  std::size_t bodySize() const {
    return file ? file->count : shared_body ? shared_view.size() : body.size();
  }

  Response& header(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
  static Response json(int status, const nlohmann::json& body);
  /// `text` is already a serialized JSON document.
  static Response jsonText(int status, std::string text);
  /// `{"error": {"code": code, "message": message}}`
  static Response error(int status, std::string_view code, std::string_view message);
  static Response empty(int status);
};

/// The HTTP status and snake_case code for an Error (kNotFound → 404 not_found, ...).
Response errorResponse(const Error& error);

using Handler = std::function<Response(Request&)>;
using FastHandler = std::function<std::optional<Response>(Request&)>;

/// A long-lived response (Server-Sent Events): chunks are written as they are
/// sent, from any thread. Closed when the client goes away or the server stops.
class ResponseStream {
 public:
  virtual ~ResponseStream() = default;
  /// Queues a chunk; false once the stream is closed (the caller drops it).
  virtual bool send(std::string chunk) = 0;
  /// Ends the response.
  virtual void close() = 0;
  virtual bool closed() const = 0;
};

/// What a streaming handler answers: a plain Response (an error, say) or the
/// head of a stream whose `open` gets the stream once the headers are out.
struct StreamStart {
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> headers;
  std::function<void(std::shared_ptr<ResponseStream>)> open;
};
using StreamingHandler = std::function<std::variant<Response, StreamStart>(Request&)>;

/// A request whose body is streamed (uploads). `begin` runs on the loop thread
/// once the headers are in (no body read yet) and either refuses (returns a
/// Response: the body is then never read) or accepts; `chunk` gets each piece of
/// the body in order, `finish` runs after the last byte, `abort` when the client
/// went away or a chunk failed. All four run on the loop thread: keep them short.
class BodySink {
 public:
  virtual ~BodySink() = default;
  virtual Result<void> chunk(std::string_view data) noexcept = 0;
  virtual Response finish() noexcept = 0;
  virtual void abort() noexcept = 0;
};
using StreamHandler =
    std::function<std::variant<Response, std::unique_ptr<BodySink>>(Request& headers_only)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;  ///< 0 = any free port
  int handler_threads = 8;
  /// I/O loops, each on its own thread; 0 = one per core (at most 8).
  int io_threads = 0;
  std::size_t default_body_limit = 64 * 1024;
  std::string server_header = "vessel";
  /// Origins allowed to call cross-origin (CORS, with credentials); others get
  /// no CORS headers, so browsers refuse them. Exact "scheme://host[:port]".
  std::vector<std::string> cors_origins;
  /// Slow clients: the request head must arrive within this many seconds
  /// (also the keep-alive idle limit) ...
  int header_timeout_s = 15;
  /// ... and a body must keep up this average rate once `body_grace_s` passed.
  std::uint64_t min_body_rate = 1024;  ///< bytes per second
  /// Request line + headers over this are answered 431 (libsoup's own hard cap is 64 KiB).
  std::size_t max_header_bytes = 16 * 1024;
  /// A route handler (not an upload body or an event stream) that has not
  /// answered within this gets 503 timeout.
  int request_timeout_s = 30;
  int body_grace_s = 10;
  /// Requests in progress above this are answered 503 at once.
  std::size_t max_requests = 4096;
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Patterns are literal segments and `{name}` placeholders, e.g.
  /// "/api/v1/uploads/{id}"; a trailing "{name*}" takes the rest of the path.
  void route(std::string method, std::string pattern, Handler handler,
             std::size_t body_limit = 0 /* = default */);
  void streamingRoute(std::string method, std::string pattern, StreamHandler handler);
  /// Gives a registered route a fast path, tried first on the loop thread: it
  /// must never block (no database, no storage) and answers nullopt to hand the
  /// request to the route's handler as usual. Loops run it concurrently.
  void fastPath(std::string method, std::string pattern, FastHandler fast);
  /// A route whose response is a long-lived stream (runs on the handler pool).
  void eventRoute(std::string method, std::string pattern, StreamingHandler handler);
  std::size_t openStreams() const;
  /// Called on the loop thread after each response is handed to libsoup
  /// (access log, metrics); loops call it concurrently. Set before start().
  void onComplete(std::function<void(const Request&, const Response&, double seconds)> fn);

  /// Binds and starts the loop threads. kUnavailable if the address is taken.
  Result<void> start();
  std::uint16_t port() const { return bound_port_; }
  /// Stops accepting, waits up to `grace_s` for in-flight requests, stops threads.
  void stop(double grace_s = 10.0);
  std::size_t inFlight() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::uint16_t bound_port_ = 0;
};

/// Parses a raw (percent-encoded) query string; false for a malformed escape
/// or a NUL anywhere. A repeated key keeps its last value.
bool parseQuery(std::string_view raw, std::map<std::string, std::string, std::less<>>& out);

/// Percent-decodes one path segment; nullopt for malformed escapes, an encoded
/// '/', or a NUL.
std::optional<std::string> decodeSegment(std::string_view segment);

}  // namespace vessel::http
