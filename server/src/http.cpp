// libsoup-3 server plumbing: the I/O loops, routing, body limits, the handler
// pool and the hand-off of responses back to the loop threads. See http.hpp.
#include "http.hpp"

#include <libsoup/soup.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "vessel/log.hpp"

namespace vessel::http {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::vector<std::string_view> splitPath(std::string_view path) {
  std::vector<std::string_view> parts;
  std::size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    std::size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    parts.push_back(path.substr(i, j - i));
    i = j;
  }
  return parts;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string newRequestId() {
  static std::atomic<std::uint64_t> counter{0};
  static const std::uint64_t base =
      static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  char buf[32];
  std::snprintf(buf, sizeof buf, "%08llx-%06llx",
                static_cast<unsigned long long>(base & 0xffffffffULL),
                static_cast<unsigned long long>(++counter & 0xffffffULL));
  return buf;
}

}  // namespace

bool parseQuery(std::string_view raw, std::map<std::string, std::string, std::less<>>& out) {
  std::size_t i = 0;
  while (i <= raw.size()) {
    std::size_t amp = raw.find('&', i);
    if (amp == std::string_view::npos) amp = raw.size();
    std::string_view pair = raw.substr(i, amp - i);
    i = amp + 1;
    if (pair.empty()) continue;
    const std::size_t eq = pair.find('=');
    auto decode = [](std::string_view s) -> std::optional<std::string> {
      std::string v;
      for (std::size_t k = 0; k < s.size(); ++k) {
        char c = s[k];
        if (c == '+') {
          c = ' ';
        } else if (c == '%') {
          if (k + 2 >= s.size()) return std::nullopt;
          const int hi = hexValue(s[k + 1]), lo = hexValue(s[k + 2]);
          if (hi < 0 || lo < 0) return std::nullopt;
          c = static_cast<char>(hi * 16 + lo);
          k += 2;
        }
        if (c == '\0') return std::nullopt;
        v.push_back(c);
      }
      return v;
    };
    auto key = decode(pair.substr(0, eq));
    auto value = decode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
    if (!key || !value) return false;
    out.insert_or_assign(std::move(*key), std::move(*value));
  }
  return true;
}

std::optional<std::string> decodeSegment(std::string_view segment) {
  std::string out;
  out.reserve(segment.size());
  for (std::size_t i = 0; i < segment.size(); ++i) {
    char c = segment[i];
    if (c == '%') {
      if (i + 2 >= segment.size()) return std::nullopt;
      int hi = hexValue(segment[i + 1]), lo = hexValue(segment[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
      if (c == '/' || c == '\\') return std::nullopt;
    }
    if (c == '\0') return std::nullopt;
    out.push_back(c);
  }
  return out;
}

std::optional<std::string> Request::header(std::string_view name) const {
  const std::string key = lower(name);
  for (const auto& [k, v] : headers) {
    if (k == key) return v;
  }
  return std::nullopt;
}

std::string Request::param(std::string_view name) const {
  auto it = params.find(name);
  return it == params.end() ? std::string() : it->second;
}

std::optional<std::string> Request::queryValue(std::string_view name) const {
  auto it = query.find(name);
  if (it == query.end()) return std::nullopt;
  return it->second;
}

Response Response::json(int status, const nlohmann::json& body) {
  Response r;
  r.status = status;
  r.content_type = "application/json";
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

std::shared_ptr<BufferPool> BufferPool::create(std::size_t max_kept, std::size_t max_kept_bytes) {
  return std::shared_ptr<BufferPool>(new BufferPool(max_kept, max_kept_bytes));
}

std::shared_ptr<Buffer> BufferPool::take(std::size_t n) {
  std::unique_ptr<Buffer> b;
  {
    std::lock_guard lock(mu_);
    // Most recently returned first: its bytes are likely still in the CPU cache.
    for (auto it = free_.rbegin(); it != free_.rend(); ++it) {
      if ((*it)->capacity >= n) {
        b = std::move(*it);
        free_.erase(std::next(it).base());
        break;
      }
    }
  }
  if (!b) {
    b = std::make_unique<Buffer>();
    b->capacity = std::max<std::size_t>(n, 1);
    b->data.reset(new char[b->capacity]);
  }
  return std::shared_ptr<Buffer>(b.release(),
                                 [pool = shared_from_this()](Buffer* p) { pool->give(p); });
}

void BufferPool::give(Buffer* b) noexcept {
  std::unique_ptr<Buffer> owned(b);
  if (owned->capacity > max_kept_bytes_) return;
  try {
    std::lock_guard lock(mu_);
    if (free_.size() < max_kept_) free_.push_back(std::move(owned));
  } catch (...) {
  }
}

Response Response::jsonText(int status, std::string text) {
  Response r;
  r.status = status;
  r.content_type = "application/json";
  r.body = std::move(text);
  return r;
}

Response Response::error(int status, std::string_view code, std::string_view message) {
  return json(status, {{"error", {{"code", code}, {"message", message}}}});
}

Response Response::empty(int status) {
  Response r;
  r.status = status;
  return r;
}

Response errorResponse(const Error& error) {
  switch (error.code) {
    case ErrorCode::kInvalidArgument:
      return Response::error(400, "invalid_request", error.message);
    case ErrorCode::kNotFound:
      return Response::error(404, "not_found", error.message);
    case ErrorCode::kAlreadyExists:
      return Response::error(409, "conflict", error.message);
    case ErrorCode::kPermissionDenied:
      return Response::error(403, "forbidden", error.message);
    case ErrorCode::kUnauthenticated:
      return Response::error(401, "unauthenticated", error.message);
    case ErrorCode::kUnsupportedInput:
      return Response::error(415, "unsupported_media_type", error.message);
    case ErrorCode::kCorruptInput:
      return Response::error(422, "corrupt_input", error.message);
    case ErrorCode::kNoSpace:
      return Response::error(507, "insufficient_storage", error.message);
    case ErrorCode::kTimeout:
    case ErrorCode::kUnavailable:
      return Response::error(503, "unavailable", error.message);
    case ErrorCode::kCancelled:
      return Response::error(503, "cancelled", error.message);
    case ErrorCode::kConfig:
    case ErrorCode::kInternal:
      break;
  }
  return Response::error(500, "internal", "internal error");
}

// ---------------------------------------------------------------------------

namespace {

struct RouteEntry {
  std::string method;
  std::string pattern;
  std::vector<std::string> segments;  ///< "{name}" placeholders or literals
  bool rest = false;                  ///< last placeholder takes the remainder
  Handler handler;
  FastHandler fast;
  StreamHandler stream;
  StreamingHandler events;
  std::size_t body_limit = 0;
};

class ThreadPool {
 public:
  explicit ThreadPool(int n) {
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { run(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void post(std::function<void()> fn) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(fn));
    }
    cv_.notify_one();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        fn = std::move(queue_.front());
        queue_.pop_front();
      }
      fn();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace

struct Server::Impl {
  ServerOptions options;
  std::vector<RouteEntry> routes;
  std::function<void(const Request&, const Response&, double)> on_complete;

  std::unique_ptr<ThreadPool> pool;
  std::atomic<std::size_t> in_flight{0};
  /// Requests between their headers and their end (bodies still arriving
  /// included): what a graceful stop waits for.
  std::atomic<std::size_t> active{0};

  class Stream;
  struct Loop;
  struct FileSend;

  // Per-message state, owned by the SoupServerMessage (g_object_set_data_full).
  struct MsgState {
    Impl* impl = nullptr;
    Loop* loop = nullptr;  ///< the loop whose thread serves this message
    SoupServerMessage* msg = nullptr;
    std::uint64_t body_bytes = 0;
    bool body_done = false;
    const RouteEntry* route = nullptr;
    Request request;
    std::optional<Response> early;  ///< decided before/while reading the body
    bool too_large = false;
    std::unique_ptr<BodySink> sink;
    std::shared_ptr<Stream> stream;  ///< an open event stream
    bool sink_done = false;
    bool finished = false;
    bool counted = false;
    bool answered = false;        ///< a pool handler's response (or its 503) was applied
    GSource* deadline = nullptr;  ///< request_timeout_s for a pool handler
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  };

  static constexpr const char* kStateKey = "vessel-http-state";
  static constexpr const char* kFileSendKey = "vessel-file-send";

  // A chunked response kept open. All libsoup calls happen on its loop's
  // thread; send() and close() from elsewhere are posted there.
  class Stream final : public ResponseStream, public std::enable_shared_from_this<Stream> {
   public:
    Stream(Loop* loop, SoupServerMessage* msg) : loop_(loop), msg_(msg) { g_object_ref(msg_); }
    ~Stream() override { g_object_unref(msg_); }

    bool send(std::string chunk) override {
      if (closed_.load()) return false;
      post([chunk = std::move(chunk)](Stream& s) {
        if (s.finished_) return;
        SoupMessageBody* body = soup_server_message_get_response_body(s.msg_);
        soup_message_body_append(body, SOUP_MEMORY_COPY, chunk.data(), chunk.size());
        soup_server_message_unpause(s.msg_);
      });
      return true;
    }
    void close() override {
      if (closed_.exchange(true)) return;
      post([](Stream& s) {
        if (s.finished_) return;
        soup_message_body_complete(soup_server_message_get_response_body(s.msg_));
        soup_server_message_unpause(s.msg_);
      });
    }
    bool closed() const override { return closed_.load(); }

    // Server thread: the client went away or the response ended.
    void finished() {
      finished_ = true;
      closed_.store(true);
    }

   private:
    void post(std::function<void(Stream&)> fn) {
      struct Call {
        std::shared_ptr<Stream> self;
        std::function<void(Stream&)> fn;
      };
      g_main_context_invoke_full(
          loop_->context, G_PRIORITY_DEFAULT,
          [](gpointer p) -> gboolean {
            auto* c = static_cast<Call*>(p);
            c->fn(*c->self);
            return G_SOURCE_REMOVE;
          },
          new Call{shared_from_this(), std::move(fn)},
          [](gpointer p) { delete static_cast<Call*>(p); });
    }

    Loop* loop_;
    SoupServerMessage* msg_;
    std::atomic<bool> closed_{false};
    bool finished_ = false;  // the loop's thread only
  };
  std::mutex streams_mu;
  std::vector<std::weak_ptr<Stream>> streams;

  // --- One I/O loop per thread ------------------------------------------------
  //
  // Each loop is a SoupServer on its own GMainContext and thread, with its own
  // listening socket on the shared address (SO_REUSEPORT: the kernel spreads
  // new connections over the loops). A connection, its messages and
  // everything below stay on the loop that accepted it.
  struct Loop {
    Impl* impl = nullptr;
    GMainContext* context = nullptr;
    GMainLoop* main_loop = nullptr;
    SoupServer* soup = nullptr;
    GSocket* listener = nullptr;  // bound and listening; handed to soup on the thread
    std::thread thread;

    // Slow clients (this loop's thread only): requests still reading their
    // head, and requests still reading their body.
    std::map<SoupServerMessage*, std::chrono::steady_clock::time_point> reading_heads;
    std::set<MsgState*> body_readers;
    // Responses whose body the kernel is sending from a file (FileSend).
    std::set<FileSend*> file_sends;

    // --- Idle keep-alive connections --------------------------------------
    //
    // libsoup 3.2 (Debian 12 ships 3.2.3) leaks a keep-alive connection whose
    // client closes it while it is idle between requests: the message waiting
    // for the next request reads EOF before any byte and is finished with no
    // completion callback, so nothing disconnects the SoupServerConnection; its
    // socket stays in CLOSE-WAIT holding a descriptor, forever (fixed upstream in
    // 3.3, commit d20c6601 "Don't leak idle connections closed by the client").
    // The workaround: every connection that started a request is tracked; once it
    // has no live request and its socket shows EOF in two sweeps a second apart
    // (libsoup itself reacts within one main-loop iteration when it can), the
    // connection's own "disconnected" signal is emitted, which is what makes the
    // server drop it (the descriptor closes when the object goes). A connection
    // idle longer than header_timeout_s is shut down first, so idle keep-alive
    // connections are bounded in time too.
    // SoupServerConnection is private in 3.2; a message's connection is its
    // first field (libsoup/server/soup-server-message.c), used only on 3.0–3.2
    // and only after a type check.
    struct Conn {
      GSocket* socket = nullptr;  // ref held
      int live = 0;               // messages that started a request and are not finalized
      std::chrono::steady_clock::time_point idle_since;
      bool eof_seen = false;
    };
    std::mutex conns_mu;             // a message may be finalized on another thread (event streams)
    std::map<GObject*, Conn> conns;  // ref held on each key
    GType conn_type = 0;             // registered by libsoup with its first connection

    GObject* connectionOf(SoupServerMessage* msg) {
      if (!impl->reap_idle) return nullptr;
      if (!conn_type) conn_type = g_type_from_name("SoupServerConnection");
      if (!conn_type) return nullptr;
      struct Layout {
        GObject parent;
        GObject* conn;
      };
      GObject* conn = reinterpret_cast<Layout*>(msg)->conn;
      if (!conn || !G_TYPE_CHECK_INSTANCE_TYPE(conn, conn_type)) return nullptr;
      return conn;
    }

    // Counts a request on its connection; the connection (or nullptr when not
    // tracked), for MsgLife to count it out.
    GObject* trackRequest(SoupServerMessage* msg) {
      GObject* conn = connectionOf(msg);
      if (!conn) return nullptr;
      std::lock_guard lock(conns_mu);
      auto [it, inserted] = conns.try_emplace(conn);
      if (inserted) {
        g_object_ref(conn);
        if (GSocket* sock = soup_server_message_get_socket(msg)) {
          it->second.socket = G_SOCKET(g_object_ref(sock));
        }
        g_signal_connect(conn, "disconnected", G_CALLBACK(&Loop::onConnectionGone), this);
      }
      ++it->second.live;
      it->second.eof_seen = false;
      return conn;
    }

    // Every message from "request-started" on carries one of these; it goes
    // with the message (data on it, so no per-message signal or weak ref, both
    // of which take GLib-wide locks the loops would contend on). A message can
    // end without any signal: a client that leaves mid-head is finished before
    // a method was parsed, so neither "finished" nor "request-finished" fires.
    struct MsgLife {
      Loop* loop;
      SoupServerMessage* msg;
      GObject* conn;  // tracked connection, or nullptr

      static void gone(gpointer p) {
        auto* l = static_cast<MsgLife*>(p);
        Loop* loop = l->loop;
        // Finalized on the loop's thread unless an event stream held it last,
        // and those left reading_heads long before (earlyHandler).
        if (std::this_thread::get_id() == loop->thread.get_id()) {
          loop->reading_heads.erase(l->msg);
        }
        if (l->conn) {
          std::lock_guard lock(loop->conns_mu);
          auto found = loop->conns.find(l->conn);
          if (found != loop->conns.end() && --found->second.live == 0) {
            found->second.idle_since = std::chrono::steady_clock::now();
          }
        }
        delete l;
      }
    };

    static void onConnectionGone(GObject* conn, gpointer user) {
      auto* self = static_cast<Loop*>(user);
      GSocket* sock = nullptr;
      {
        std::lock_guard lock(self->conns_mu);
        auto it = self->conns.find(conn);
        if (it == self->conns.end()) return;
        sock = it->second.socket;
        self->conns.erase(it);
      }
      g_signal_handlers_disconnect_by_func(
          conn, reinterpret_cast<gpointer>(&Loop::onConnectionGone), self);
      if (sock) g_object_unref(sock);
      g_object_unref(conn);
    }

    static bool peerClosed(GSocket* sock) {
      if (!sock || g_socket_is_closed(sock)) return true;
      pollfd p{g_socket_get_fd(sock), POLLIN | POLLRDHUP, 0};
      if (::poll(&p, 1, 0) != 1) return false;
      if (p.revents & (POLLHUP | POLLERR | POLLRDHUP)) return true;
      char byte;
      return (p.revents & POLLIN) && ::recv(p.fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
    }

    void sweepIdle(std::chrono::steady_clock::time_point now) {
      std::vector<GObject*> dead;
      std::unique_lock lock(conns_mu);
      for (auto& [conn, c] : conns) {
        if (c.live > 0 || now - c.idle_since < std::chrono::seconds(1)) continue;
        if (peerClosed(c.socket)) {
          if (c.eof_seen) dead.push_back(conn);
          c.eof_seen = true;
        } else if (now - c.idle_since > std::chrono::seconds(impl->options.header_timeout_s) &&
                   c.socket) {
          g_socket_shutdown(c.socket, TRUE, TRUE, nullptr);  // idle too long
        }
      }
      for (GObject* conn : dead) g_object_ref(conn);
      lock.unlock();
      for (GObject* conn : dead) {
        g_signal_emit_by_name(conn, "disconnected");  // the server drops it; onConnectionGone
        onConnectionGone(conn, this);                 // no-op when the handler ran
        g_object_unref(conn);
        ++impl->idle_reaped;
      }
    }

    void releaseTracked() {
      for (;;) {
        GObject* conn = nullptr;
        {
          std::lock_guard lock(conns_mu);
          if (conns.empty()) return;
          conn = conns.begin()->first;
        }
        onConnectionGone(conn, this);
      }
    }

    static void onRequestStarted(SoupServer*, SoupServerMessage* msg, gpointer user) {
      auto* self = static_cast<Loop*>(user);
      self->reading_heads[msg] = std::chrono::steady_clock::now();
      g_object_set_data_full(G_OBJECT(msg), "vessel-life",
                             new MsgLife{self, msg, self->trackRequest(msg)}, &MsgLife::gone);
    }

    // Once a second: cut connections whose head is late or whose body trickles.
    static gboolean sweepSlow(gpointer user) {
      auto* self = static_cast<Loop*>(user);
      const ServerOptions& options = self->impl->options;
      const auto now = std::chrono::steady_clock::now();
      std::vector<SoupServerMessage*> doomed;
      for (const auto& [msg, since] : self->reading_heads) {
        if (now - since > std::chrono::seconds(options.header_timeout_s)) doomed.push_back(msg);
      }
      for (MsgState* st : self->body_readers) {
        if (st->body_done || st->finished || st->stream) continue;
        const double secs = std::chrono::duration<double>(now - st->started).count();
        if (secs > options.body_grace_s && static_cast<double>(st->body_bytes) <
                                               secs * static_cast<double>(options.min_body_rate)) {
          doomed.push_back(st->msg);
        }
      }
      for (SoupServerMessage* msg : doomed) {
        self->reading_heads.erase(msg);
        ++self->impl->slow_cut;
        cut(msg);
      }
      // A client that stopped reading a response sent from a file.
      std::vector<FileSend*> stalled;
      for (FileSend* fs : self->file_sends) {
        if (now - fs->progress > std::chrono::seconds(options.request_timeout_s)) {
          stalled.push_back(fs);
        }
      }
      for (FileSend* fs : stalled) {
        ++self->impl->slow_cut;
        fs->fail();
      }
      self->sweepIdle(now);
      return G_SOURCE_CONTINUE;
    }

    // The loop's thread: serves until quit, then tears its connections down.
    void run(std::promise<void>& ready_or_failed, Result<void>& outcome);
  };
  // --- Bodies sent from files (sendfile) ----------------------------------
  //
  // libsoup 3 writes bodies from memory only. For a Response::FileBody the
  // message gets the Content-Length and an empty, unfinished body; once libsoup
  // has written the head ("wrote-headers", on the loop's thread) the kernel
  // sends the bytes from the file straight to the socket. libsoup meanwhile
  // waits for body data (it pauses the message) and touches the socket no more;
  // when all is sent the body is completed and the message unpaused, and
  // libsoup finishes it as usual (keep-alive included). A socket that is full
  // is waited on with a GSource on the loop; a client that stops reading is cut
  // after request_timeout_s without progress (sweepSlow).
  //
  // The socket is corked (TCP_CORK, nginx's tcp_nopush) from before the head
  // until the body is sent, so the head leaves in the body's first full-sized
  // packet, not in a small one of its own. Sending that packet was ~9 % of a
  // segment's CPU (perf under bench/server; on loopback the sender also pays
  // for the receiver's softirq work).
  //
  // SIGPIPE is ignored process-wide once GIO's GSocket class exists (GLib does
  // it for send()), so a peer gone mid-send is an EPIPE here, not a signal.
  // Plain HTTP only (there is no TLS in this server).
  struct FileSend {
    Loop* loop = nullptr;
    SoupServerMessage* msg = nullptr;
    Response::FileBody file;
    off_t offset = 0;
    std::uint64_t left = 0;
    GSource* wait = nullptr;  // socket writable, while the socket is full
    std::chrono::steady_clock::time_point progress = std::chrono::steady_clock::now();
    bool done = false;
    // Set once we wait for the socket: by the time anything runs again on the
    // loop, libsoup has found no body to write and paused the message.
    bool paused = false;
    int corked_fd = -1;  // the socket while corked (see above); uncork() clears it

    ~FileSend() { stopWaiting(); }

    static void start(Loop* loop, SoupServerMessage* msg, Response::FileBody file) {
      auto* fs = new FileSend;
      fs->loop = loop;
      fs->msg = msg;
      fs->offset = static_cast<off_t>(file.offset);
      fs->left = file.count;
      fs->file = std::move(file);
      g_object_set_data_full(G_OBJECT(msg), kFileSendKey, fs, [](gpointer p) {
        auto* f = static_cast<FileSend*>(p);
        f->loop->file_sends.erase(f);
        delete f;
      });
      loop->file_sends.insert(fs);
      if (GSocket* sock = soup_server_message_get_socket(msg)) {
        const int fd = g_socket_get_fd(sock);
        const int on = 1;
        if (fd >= 0 && ::setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on) == 0) {
          fs->corked_fd = fd;
        }
      }
      g_signal_connect(msg, "wrote-headers", G_CALLBACK(+[](SoupServerMessage*, gpointer p) {
                         static_cast<FileSend*>(p)->pump();
                       }),
                       fs);
    }

    // The message finished (perhaps early: the client went, the server stops).
    void finished() {
      done = true;
      stopWaiting();
      loop->file_sends.erase(this);
    }

    static gboolean onWritable(GSocket*, GIOCondition, gpointer p) {
      auto* f = static_cast<FileSend*>(p);
      f->pump();
      return f->wait ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
    }

    void pump() {
      if (done) return;
      GSocket* sock = soup_server_message_get_socket(msg);
      const int out = sock ? g_socket_get_fd(sock) : -1;
      if (out < 0) return fail();
      while (left > 0) {
        const ssize_t n = ::sendfile(
            out, file.fd, &offset,
            static_cast<std::size_t>(std::min<std::uint64_t>(left, std::uint64_t{1} << 30)));
        if (n > 0) {
          left -= static_cast<std::uint64_t>(n);
          progress = std::chrono::steady_clock::now();
        } else if (n < 0 && errno == EINTR) {
          continue;
        } else if (n < 0 && errno == EAGAIN) {
          if (!wait) {
            wait = g_socket_create_source(sock, G_IO_OUT, nullptr);
            g_source_set_callback(wait, G_SOURCE_FUNC(&FileSend::onWritable), this, nullptr);
            g_source_attach(wait, loop->context);
            paused = true;
          }
          return;
        } else {
          return fail();  // the client went (EPIPE, ECONNRESET), or the file is short (0)
        }
      }
      finish();
    }

    // The response cannot be completed: the connection goes.
    void fail() {
      if (done) return;
      if (GSocket* sock = soup_server_message_get_socket(msg)) {
        g_socket_shutdown(sock, TRUE, TRUE, nullptr);
      }
      finish();
    }

    void finish() {
      finished();
      uncork();
      soup_message_body_complete(soup_server_message_get_response_body(msg));
      if (paused) soup_server_message_unpause(msg);
    }

    // Sends what the cork holds, at once.
    void uncork() {
      if (corked_fd < 0) return;
      const int off = 0;
      ::setsockopt(corked_fd, IPPROTO_TCP, TCP_CORK, &off, sizeof off);
      corked_fd = -1;
    }

    void stopWaiting() {
      if (!wait) return;
      g_source_destroy(wait);
      g_source_unref(wait);
      wait = nullptr;
    }
  };

  std::vector<std::unique_ptr<Loop>> loops;
  bool reap_idle = false;  // the idle-connection workaround is on (libsoup 3.0–3.2)
  std::atomic<std::uint64_t> slow_cut{0};
  std::atomic<std::uint64_t> idle_reaped{0};

  // Every log line a handler writes names its request (and upload, when the
  // route has one); App::caller adds the user.
  static void addLogFields(const Request& req) {
    log::Context::add("request_id", req.request_id);
    std::string_view upload;
    if (auto it = req.params.find("upload"); it != req.params.end()) upload = it->second;
    if (auto it = req.params.find("id");
        it != req.params.end() && req.path.starts_with("/api/v1/uploads/")) {
      upload = it->second;
    }
    if (!upload.empty()) log::Context::add("upload_id", std::string(upload));
  }

  static void cut(SoupServerMessage* msg) {
    if (GSocket* sock = soup_server_message_get_socket(msg))
      g_socket_shutdown(sock, TRUE, TRUE, nullptr);
  }

  static MsgState* stateOf(SoupServerMessage* msg) {
    return static_cast<MsgState*>(g_object_get_data(G_OBJECT(msg), kStateKey));
  }

  const RouteEntry* match(const std::string& method, std::string_view path,
                          std::map<std::string, std::string, std::less<>>& params, bool& path_known,
                          bool& bad_path) const {
    const std::vector<std::string_view> parts = splitPath(path);
    std::vector<std::string> decoded;
    decoded.reserve(parts.size());
    for (std::string_view p : parts) {
      auto d = decodeSegment(p);
      if (!d || *d == "." || *d == "..") {
        bad_path = true;
        return nullptr;
      }
      decoded.push_back(std::move(*d));
    }
    for (const RouteEntry& r : routes) {
      if (r.rest ? decoded.size() < r.segments.size() : decoded.size() != r.segments.size()) {
        continue;
      }
      std::map<std::string, std::string, std::less<>> found;
      bool ok = true;
      for (std::size_t i = 0; i < r.segments.size() && ok; ++i) {
        const std::string& seg = r.segments[i];
        if (seg.size() > 2 && seg.front() == '{') {
          std::string name = seg.substr(1, seg.size() - 2);
          if (r.rest && i + 1 == r.segments.size()) {
            name.pop_back();  // the '*'
            std::string restv;
            for (std::size_t k = i; k < decoded.size(); ++k) {
              if (k > i) restv += '/';
              restv += decoded[k];
            }
            found[name] = restv;
          } else {
            found[name] = decoded[i];
          }
        } else if (seg != decoded[i]) {
          ok = false;
        }
      }
      if (!ok) continue;
      path_known = true;
      if (r.method == method || (method == "HEAD" && r.method == "GET")) {
        params = std::move(found);
        return &r;
      }
    }
    return nullptr;
  }

  void apply(SoupServerMessage* msg, MsgState* st, Response response) {
    response.header("x-request-id", st->request.request_id);
    SoupMessageHeaders* h = soup_server_message_get_response_headers(msg);
    for (const auto& [k, v] : response.headers)
      soup_message_headers_append(h, k.c_str(), v.c_str());
    soup_server_message_set_status(msg, static_cast<guint>(response.status), nullptr);
    if (response.file) {
      if (response.content_type.empty()) {
        soup_message_headers_remove(h, "Content-Type");
      } else {
        soup_message_headers_replace(h, "Content-Type", response.content_type.c_str());
      }
      soup_message_headers_set_content_length(h, static_cast<goffset>(response.file->count));
      SoupMessageBody* out = soup_server_message_get_response_body(msg);
      soup_message_body_truncate(out);
      if (response.file->count == 0 || st->request.method == "HEAD") {
        soup_message_body_complete(out);
      } else {
        FileSend::start(st->loop, msg, std::move(*response.file));
      }
    } else if (response.bodySize() > 0 || !response.content_type.empty()) {
      // The bytes go to libsoup without a copy: it owns a reference until written.
      if (!response.shared_body) {
        auto text = std::make_shared<std::string>(std::move(response.body));
        response.shared_view = *text;
        response.shared_body = std::move(text);
      }
      auto* owner = new std::shared_ptr<const void>(response.shared_body);
      GBytes* bytes = g_bytes_new_with_free_func(
          response.shared_view.data(), response.shared_view.size(),
          [](gpointer p) { delete static_cast<std::shared_ptr<const void>*>(p); }, owner);
      if (response.content_type.empty()) {
        soup_message_headers_remove(h, "Content-Type");
      } else {
        soup_message_headers_replace(h, "Content-Type", response.content_type.c_str());
      }
      SoupMessageBody* out = soup_server_message_get_response_body(msg);
      soup_message_body_truncate(out);
      soup_message_body_append_bytes(out, bytes);
      g_bytes_unref(bytes);
    }
    if (on_complete) {
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - st->started).count();
      on_complete(st->request, response, secs);
    }
  }

  static void onGotChunk(SoupServerMessage*, GBytes* chunk, gpointer user) {
    auto* st = static_cast<MsgState*>(user);
    gsize n = 0;
    const char* data = static_cast<const char*>(g_bytes_get_data(chunk, &n));
    st->body_bytes += n;
    if (st->sink) {
      if (st->early || st->sink_done) return;  // already failed: drain
      Result<void> r = st->sink->chunk(std::string_view(data, n));
      if (!r.ok()) {
        st->sink->abort();
        st->sink_done = true;
        st->early = errorResponse(r.error());
      }
      return;
    }
    if (st->too_large) return;
    const std::size_t limit = st->route ? st->route->body_limit : 0;
    if (st->request.body.size() + n > limit) {
      st->too_large = true;
      st->request.body.clear();
      st->request.body.shrink_to_fit();
      return;
    }
    st->request.body.append(data, n);
  }

  // The server's "request-read": the request body is all in.
  static void onRequestRead(SoupServer*, SoupServerMessage* msg, gpointer) {
    MsgState* st = stateOf(msg);
    if (!st) return;
    st->body_done = true;
    st->loop->body_readers.erase(st);
  }

  // The server's "request-finished" / "request-aborted": right after the
  // message's own "finished", and in the same cases.
  static void onRequestDone(SoupServer*, SoupServerMessage* msg, gpointer) {
    if (auto* fs = static_cast<FileSend*>(g_object_get_data(G_OBJECT(msg), kFileSendKey))) {
      fs->finished();
    }
    MsgState* st = stateOf(msg);
    if (!st) return;
    st->loop->body_readers.erase(st);
    if (!st->finished) st->impl->active.fetch_sub(1);
    st->finished = true;
    if (st->stream) st->stream->finished();
    if (st->sink && !st->sink_done) {
      st->sink_done = true;
      log::Context ctx;
      addLogFields(st->request);
      st->sink->abort();
    }
  }

  static void earlyHandler(SoupServer*, SoupServerMessage* msg, const char*, GHashTable* query,
                           gpointer user) {
    auto* loop = static_cast<Loop*>(user);
    Impl* self = loop->impl;
    auto* st = new MsgState;
    st->impl = self;
    st->loop = loop;
    // Its end and its body's are seen through the server's signals
    // (onRequestRead, onRequestDone): one connection per loop, none per message.
    g_object_set_data_full(G_OBJECT(msg), kStateKey, st,
                           [](gpointer p) { delete static_cast<MsgState*>(p); });
    self->active.fetch_add(1);
    st->msg = msg;
    loop->reading_heads.erase(msg);
    loop->body_readers.insert(st);

    Request& req = st->request;
    req.request_id = newRequestId();
    req.method = soup_server_message_get_method(msg);
    GUri* uri = soup_server_message_get_uri(msg);
    req.path = g_uri_get_path(uri);
    (void)query;  // libsoup's decoded copy ends values at a %00; parse the raw query
    if (const char* raw = g_uri_get_query(uri)) {
      if (!parseQuery(raw, req.query)) {
        self->apply(msg, st,
                    Response::error(400, "invalid_query", "the query string is malformed"));
        return;
      }
    }
    SoupMessageHeaders* rh = soup_server_message_get_request_headers(msg);
    soup_message_headers_foreach(
        rh,
        [](const char* name, const char* value, gpointer out) {
          static_cast<std::vector<std::pair<std::string, std::string>>*>(out)->emplace_back(
              lower(name), value);
        },
        &req.headers);
    if (const char* host = soup_server_message_get_remote_host(msg)) req.peer = host;

    // libsoup itself stops reading a head at 64 KiB; ours is the configured limit.
    std::size_t head_bytes = req.path.size() + req.method.size();
    if (const char* raw = g_uri_get_query(uri)) head_bytes += std::strlen(raw);
    for (const auto& [k, v] : req.headers) head_bytes += k.size() + v.size() + 4;
    if (head_bytes > self->options.max_header_bytes) {
      soup_message_headers_append(soup_server_message_get_response_headers(msg), "connection",
                                  "close");
      self->apply(msg, st,
                  Response::error(431, "headers_too_large",
                                  "the request head is over " +
                                      std::to_string(self->options.max_header_bytes) + " bytes"));
      return;
    }

    if (self->active.load() > self->options.max_requests) {
      soup_message_headers_append(soup_server_message_get_response_headers(msg), "connection",
                                  "close");
      self->apply(msg, st, Response::error(503, "overloaded", "too many requests in progress"));
      return;
    }
    // CORS: an allowed Origin gets its headers on every answer, and a
    // preflight is answered here whatever the path.
    if (auto origin = req.header("origin")) {
      const auto& allowed = self->options.cors_origins;
      if (std::find(allowed.begin(), allowed.end(), *origin) != allowed.end()) {
        SoupMessageHeaders* h = soup_server_message_get_response_headers(msg);
        soup_message_headers_append(h, "access-control-allow-origin", origin->c_str());
        soup_message_headers_append(h, "access-control-allow-credentials", "true");
        soup_message_headers_append(h, "vary", "Origin");
        if (req.method == "OPTIONS") {
          soup_message_headers_append(h, "access-control-allow-methods",
                                      "GET, HEAD, POST, PUT, DELETE");
          soup_message_headers_append(h, "access-control-allow-headers",
                                      "authorization, content-type, last-event-id");
          soup_message_headers_append(h, "access-control-max-age", "600");
          self->apply(msg, st, Response::empty(204));
          return;
        }
      }
    }
    bool path_known = false, bad_path = false;
    st->route = self->match(req.method, req.path, req.params, path_known, bad_path);
    if (st->route) req.route = st->route->pattern;
    if (!st->route) {
      Response r = bad_path     ? Response::error(404, "not_found", "no such resource")
                   : path_known ? Response::error(405, "method_not_allowed",
                                                  "method " + req.method + " not allowed here")
                                : Response::error(404, "not_found", "no such resource");
      self->apply(msg, st, std::move(r));
      return;
    }

    const goffset declared = soup_message_headers_get_content_length(rh);
    const bool has_length = soup_message_headers_get_encoding(rh) == SOUP_ENCODING_CONTENT_LENGTH;
    if (st->route->stream) {
      log::Context ctx;
      addLogFields(req);
      auto outcome = st->route->stream(req);
      if (auto* refused = std::get_if<Response>(&outcome)) {
        self->apply(msg, st, std::move(*refused));
        return;
      }
      st->sink = std::move(std::get<std::unique_ptr<BodySink>>(outcome));
    } else if (has_length && declared > 0 &&
               static_cast<std::uint64_t>(declared) > st->route->body_limit) {
      self->apply(
          msg, st,
          Response::error(413, "payload_too_large",
                          "request body over " + std::to_string(st->route->body_limit) + " bytes"));
      return;
    }
    soup_message_body_set_accumulate(soup_server_message_get_request_body(msg), FALSE);
    g_signal_connect(msg, "got-chunk", G_CALLBACK(onGotChunk), st);
  }

  // Runs the streaming handler on the pool; on StreamStart sends the headers
  // (chunked) and hands the open stream to the route.
  void dispatchEvents(SoupServerMessage* msg, MsgState* st) {
    soup_server_message_pause(msg);
    g_object_ref(msg);
    in_flight.fetch_add(1);
    pool->post([this, msg, st] {
      std::variant<Response, StreamStart> outcome =
          Response::error(500, "internal", "internal error");
      log::Context ctx;
      addLogFields(st->request);
      try {
        outcome = st->route->events(st->request);
      } catch (const std::exception& e) {
        log::error("handler threw", {{"request_id", st->request.request_id},
                                     {"path", st->request.path},
                                     {"error", std::string(e.what())}});
      }
      struct Done {
        Impl* self;
        SoupServerMessage* msg;
        MsgState* st;
        std::variant<Response, StreamStart> outcome;
      };
      g_main_context_invoke_full(
          st->loop->context, G_PRIORITY_DEFAULT,
          [](gpointer p) -> gboolean {
            auto* d = static_cast<Done*>(p);
            Impl* self = d->self;
            if (!d->st->finished) {
              if (auto* r = std::get_if<Response>(&d->outcome)) {
                self->apply(d->msg, d->st, std::move(*r));
                soup_server_message_unpause(d->msg);
              } else {
                StreamStart& start = std::get<StreamStart>(d->outcome);
                SoupMessageHeaders* h = soup_server_message_get_response_headers(d->msg);
                soup_message_headers_set_encoding(h, SOUP_ENCODING_CHUNKED);
                soup_message_headers_set_content_type(h, start.content_type.c_str(), nullptr);
                soup_message_headers_append(h, "x-request-id", d->st->request.request_id.c_str());
                for (const auto& [k, v] : start.headers) {
                  soup_message_headers_append(h, k.c_str(), v.c_str());
                }
                soup_server_message_set_status(d->msg, 200, nullptr);
                auto stream = std::make_shared<Stream>(d->st->loop, d->msg);
                d->st->stream = stream;
                {
                  std::lock_guard lock(self->streams_mu);
                  std::erase_if(self->streams, [](const auto& w) { return w.expired(); });
                  self->streams.push_back(stream);
                }
                soup_server_message_unpause(d->msg);
                if (start.open) {
                  // The route may block (database); keep it off this thread.
                  self->pool->post([open = std::move(start.open), stream] { open(stream); });
                }
              }
            }
            self->in_flight.fetch_sub(1);
            g_object_unref(d->msg);
            return G_SOURCE_REMOVE;
          },
          new Done{this, msg, st, std::move(outcome)},
          [](gpointer p) { delete static_cast<Done*>(p); });
    });
  }

  static void handler(SoupServer*, SoupServerMessage* msg, const char*, GHashTable*,
                      gpointer user) {
    Impl* self = static_cast<Loop*>(user)->impl;
    MsgState* st = stateOf(msg);
    if (!st || !st->route) {
      soup_server_message_set_status(msg, 500, nullptr);
      return;
    }
    if (st->early) {
      self->apply(msg, st, std::move(*st->early));
      return;
    }
    if (st->sink) {
      st->sink_done = true;
      log::Context ctx;
      addLogFields(st->request);
      self->apply(msg, st, st->sink->finish());
      return;
    }
    if (st->too_large) {
      self->apply(
          msg, st,
          Response::error(413, "payload_too_large",
                          "request body over " + std::to_string(st->route->body_limit) + " bytes"));
      return;
    }
    if (st->route->events) {
      self->dispatchEvents(msg, st);
      return;
    }
    if (st->route->fast) {
      std::optional<Response> quick;
      {
        log::Context ctx;
        addLogFields(st->request);
        try {
          quick = st->route->fast(st->request);
        } catch (const std::exception&) {
          quick.reset();  // the handler on the pool decides
        }
      }
      if (quick) {
        self->apply(msg, st, std::move(*quick));
        return;
      }
    }
    // Hand the request to the pool; the response comes back on this thread.
    soup_server_message_pause(msg);
    g_object_ref(msg);
    st->counted = true;
    self->in_flight.fetch_add(1);
    // A handler stuck (a locked table, a hung store) is answered 503 at the
    // deadline; its late result is dropped.
    st->deadline =
        g_timeout_source_new_seconds(static_cast<guint>(self->options.request_timeout_s));
    g_source_set_callback(
        st->deadline,
        [](gpointer p) -> gboolean {
          auto* m = static_cast<SoupServerMessage*>(p);
          MsgState* s = stateOf(m);
          if (s && !s->finished && !s->answered) {
            s->answered = true;
            log::warn("request timed out",
                      {{"request_id", s->request.request_id},
                       {"path", s->request.path},
                       {"seconds", static_cast<long long>(s->impl->options.request_timeout_s)}});
            soup_message_headers_append(soup_server_message_get_response_headers(m), "retry-after",
                                        "5");
            s->impl->apply(
                m, s,
                Response::error(503, "timeout", "the request took too long; try again later"));
            soup_server_message_unpause(m);
          }
          return G_SOURCE_REMOVE;
        },
        g_object_ref(msg), g_object_unref);
    g_source_attach(st->deadline, st->loop->context);
    self->pool->post([self, msg, st] {
      Response response;
      log::Context ctx;
      addLogFields(st->request);
      try {
        response = st->route->handler(st->request);
      } catch (const std::exception& e) {
        log::error("handler threw", {{"request_id", st->request.request_id},
                                     {"path", st->request.path},
                                     {"error", std::string(e.what())}});
        response = Response::error(500, "internal", "internal error");
      }
      struct Done {
        Impl* self;
        SoupServerMessage* msg;
        MsgState* st;
        Response response;
      };
      auto* done = new Done{self, msg, st, std::move(response)};
      g_main_context_invoke_full(
          st->loop->context, G_PRIORITY_DEFAULT,
          [](gpointer p) -> gboolean {
            auto* d = static_cast<Done*>(p);
            if (d->st->deadline) {
              g_source_destroy(d->st->deadline);
              g_source_unref(d->st->deadline);
              d->st->deadline = nullptr;
            }
            if (!d->st->finished && !d->st->answered) {
              d->st->answered = true;
              d->self->apply(d->msg, d->st, std::move(d->response));
              soup_server_message_unpause(d->msg);
            }
            d->self->in_flight.fetch_sub(1);
            g_object_unref(d->msg);
            return G_SOURCE_REMOVE;
          },
          done, [](gpointer p) { delete static_cast<Done*>(p); });
    });
  }
};

namespace {

// One listening socket of the loops' shared address. soup_server_listen()
// would leave GLib's default backlog of 10 (a burst beyond it is reset by the
// kernel) and could not share the port, so bind and listen here.
GSocket* listeningSocket(GSocketAddress* addr, bool share, GError** err) {
  GSocket* sock = g_socket_new(g_socket_address_get_family(addr), G_SOCKET_TYPE_STREAM,
                               G_SOCKET_PROTOCOL_TCP, err);
  if (!sock) return nullptr;
  g_socket_set_listen_backlog(sock, SOMAXCONN);
  // Accepting happens in the loop's poll; never block a loop in accept().
  g_socket_set_blocking(sock, FALSE);
  // g_socket_bind() would clear SO_REUSEPORT on a TCP socket: bind natively.
  const int fd = g_socket_get_fd(sock);
  const int one = 1;
  sockaddr_storage native{};
  const gssize len = g_socket_address_get_native_size(addr);
  bool ok = ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
            (!share || ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0) &&
            len > 0 && g_socket_address_to_native(addr, &native, sizeof native, err);
  if (ok && ::bind(fd, reinterpret_cast<sockaddr*>(&native), static_cast<socklen_t>(len)) != 0) {
    const int e = errno;
    gchar* where = g_socket_connectable_to_string(G_SOCKET_CONNECTABLE(addr));
    g_set_error(err, G_IO_ERROR, g_io_error_from_errno(e), "cannot bind to %s: %s", where,
                g_strerror(e));
    g_free(where);
    ok = false;
  } else if (ok) {
    ok = g_socket_listen(sock, err);
  }
  if (!ok) {
    if (err && !*err) {
      g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED, "socket options: %s", g_strerror(errno));
    }
    g_object_unref(sock);
    return nullptr;
  }
  return sock;
}

}  // namespace

void Server::Impl::Loop::run(std::promise<void>& started, Result<void>& outcome) {
  g_main_context_push_thread_default(context);
  soup = SOUP_SERVER(g_object_new(SOUP_TYPE_SERVER, "server-header",
                                  impl->options.server_header.c_str(), nullptr));
  soup_server_add_early_handler(soup, nullptr, &Impl::earlyHandler, this, nullptr);
  soup_server_add_handler(soup, nullptr, &Impl::handler, this, nullptr);
  g_signal_connect(soup, "request-started", G_CALLBACK(&Loop::onRequestStarted), this);
  g_signal_connect(soup, "request-read", G_CALLBACK(&Impl::onRequestRead), nullptr);
  g_signal_connect(soup, "request-finished", G_CALLBACK(&Impl::onRequestDone), nullptr);
  g_signal_connect(soup, "request-aborted", G_CALLBACK(&Impl::onRequestDone), nullptr);
  GSource* sweep = g_timeout_source_new_seconds(1);
  g_source_set_callback(sweep, &Loop::sweepSlow, this, nullptr);
  g_source_attach(sweep, context);
  g_source_unref(sweep);
  GError* err = nullptr;
  const bool listening =
      soup_server_listen_socket(soup, listener, static_cast<SoupServerListenOptions>(0), &err);
  if (!listening) {
    outcome = makeError(ErrorCode::kUnavailable,
                        std::string("cannot serve the listening socket: ") + err->message);
    g_error_free(err);
  }
  started.set_value();
  if (listening) g_main_loop_run(main_loop);
  releaseTracked();
  soup_server_disconnect(soup);
  // Let libsoup finish tearing connections down before the context goes.
  while (g_main_context_iteration(context, FALSE)) {
  }
  g_object_unref(soup);
  soup = nullptr;
  g_main_context_pop_thread_default(context);
}

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
}

Server::~Server() { stop(0); }

void Server::route(std::string method, std::string pattern, Handler handler,
                   std::size_t body_limit) {
  RouteEntry r;
  r.method = std::move(method);
  r.pattern = pattern;
  for (std::string_view s : splitPath(pattern)) r.segments.emplace_back(s);
  r.rest = !r.segments.empty() && r.segments.back().size() > 3 && r.segments.back().ends_with("*}");
  r.handler = std::move(handler);
  r.body_limit = body_limit ? body_limit : impl_->options.default_body_limit;
  impl_->routes.push_back(std::move(r));
}

void Server::fastPath(std::string method, std::string pattern, FastHandler fast) {
  for (RouteEntry& r : impl_->routes) {
    if (r.method == method && r.pattern == pattern && r.handler) {
      r.fast = std::move(fast);
      return;
    }
  }
}

void Server::streamingRoute(std::string method, std::string pattern, StreamHandler handler) {
  RouteEntry r;
  r.method = std::move(method);
  r.pattern = pattern;
  for (std::string_view s : splitPath(pattern)) r.segments.emplace_back(s);
  r.stream = std::move(handler);
  impl_->routes.push_back(std::move(r));
}

void Server::eventRoute(std::string method, std::string pattern, StreamingHandler handler) {
  RouteEntry r;
  r.method = std::move(method);
  r.pattern = pattern;
  for (std::string_view seg : splitPath(pattern)) r.segments.emplace_back(seg);
  r.events = std::move(handler);
  r.body_limit = impl_->options.default_body_limit;
  impl_->routes.push_back(std::move(r));
}

std::size_t Server::openStreams() const {
  std::lock_guard lock(impl_->streams_mu);
  std::size_t n = 0;
  for (const auto& w : impl_->streams) {
    auto s = w.lock();
    if (s && !s->closed()) ++n;
  }
  return n;
}

void Server::onComplete(std::function<void(const Request&, const Response&, double)> fn) {
  impl_->on_complete = std::move(fn);
}

std::size_t Server::inFlight() const { return impl_->in_flight.load(); }

Result<void> Server::start() {
  Impl* impl = impl_.get();
  impl->reap_idle = soup_get_major_version() == 3 && soup_get_minor_version() <= 2;
  const int n = impl->options.io_threads > 0
                    ? impl->options.io_threads
                    : static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 8u));
  const std::string where = impl->options.host + ":" + std::to_string(impl->options.port);
  GSocketAddress* addr =
      g_inet_socket_address_new_from_string(impl->options.host.c_str(), impl->options.port);
  if (!addr) {
    return makeError(ErrorCode::kConfig,
                     "listen address '" + impl->options.host + "' is not an IP address");
  }
  std::vector<GSocket*> sockets;
  GError* err = nullptr;
  auto failed = [&](const std::string& what) {
    Error e = makeError(ErrorCode::kUnavailable, what + ": " + (err ? err->message : "unknown"));
    if (err) g_error_free(err);
    for (GSocket* s : sockets) g_object_unref(s);
    g_object_unref(addr);
    return e;
  };
  // A port another process holds must be refused, but SO_REUSEPORT would let
  // a second server of the same user join the first one's group: a plain bind
  // first tells.
  if (n > 1 && impl->options.port != 0) {
    GSocket* probe = listeningSocket(addr, false, &err);
    if (!probe) return failed("cannot listen on " + where);
    g_object_unref(probe);
  }
  for (int i = 0; i < n; ++i) {
    GSocket* sock = listeningSocket(addr, n > 1, &err);
    if (!sock) return failed("cannot listen on " + where);
    sockets.push_back(sock);
    if (i == 0 && impl->options.port == 0) {  // the others join the port the kernel chose
      GSocketAddress* local = g_socket_get_local_address(sock, &err);
      if (!local) return failed("cannot read the bound port");
      g_object_unref(addr);
      addr = local;
    }
  }
  bound_port_ = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(addr));
  g_object_unref(addr);
  addr = nullptr;

  impl->pool = std::make_unique<ThreadPool>(std::max(1, impl->options.handler_threads));
  Result<void> outcome;
  for (std::size_t i = 0; i < sockets.size(); ++i) {
    if (!outcome.ok()) {  // a loop failed: the sockets left have no loop to own them
      g_object_unref(sockets[i]);
      continue;
    }
    auto loop = std::make_unique<Impl::Loop>();
    loop->impl = impl;
    loop->context = g_main_context_new();
    loop->main_loop = g_main_loop_new(loop->context, FALSE);
    loop->listener = sockets[i];  // owned by the loop from here
    std::promise<void> started;
    loop->thread = std::thread([l = loop.get(), &started, &outcome] { l->run(started, outcome); });
    started.get_future().wait();
    impl->loops.push_back(std::move(loop));
  }
  sockets.clear();
  if (!outcome.ok()) {
    stop(0);
    return outcome;
  }
  return {};
}

void Server::stop(double grace_s) {
  Impl* impl = impl_.get();
  if (impl->loops.empty() || !impl->loops.front()->main_loop) return;
  // Close the listening sockets first: no new connections, in-flight ones finish.
  for (const auto& loop : impl->loops) {
    std::promise<void> closed;
    struct CloseCtx {
      Impl::Loop* loop;
      std::promise<void>* done;
    } cc{loop.get(), &closed};
    g_main_context_invoke(
        loop->context,
        [](gpointer p) -> gboolean {
          auto* c = static_cast<CloseCtx*>(p);
          if (c->loop->soup) {
            GSList* listeners = soup_server_get_listeners(c->loop->soup);
            for (GSList* l = listeners; l; l = l->next) g_socket_close(G_SOCKET(l->data), nullptr);
            g_slist_free(listeners);
          }
          c->done->set_value();
          return G_SOURCE_REMOVE;
        },
        &cc);
    closed.get_future().wait();
  }
  // Event streams never end by themselves: end them (clients reconnect elsewhere).
  {
    std::lock_guard lock(impl->streams_mu);
    for (const auto& w : impl->streams) {
      if (auto s = w.lock()) s->close();
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(grace_s);
  while ((impl->in_flight.load() > 0 || impl->active.load() > 0) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (const auto& loop : impl->loops) g_main_loop_quit(loop->main_loop);
  for (const auto& loop : impl->loops) loop->thread.join();
  impl->pool.reset();  // finishes queued handlers (their responses are dropped)
  // The Loop objects stay (a late ResponseStream may still point at one); their
  // GLib objects go.
  for (const auto& loop : impl->loops) {
    g_main_loop_unref(loop->main_loop);
    g_main_context_unref(loop->context);
    g_object_unref(loop->listener);
    loop->main_loop = nullptr;
    loop->context = nullptr;
    loop->listener = nullptr;
  }
}

}  // namespace vessel::http
