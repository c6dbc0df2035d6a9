// http::Server's I/O loops: connections are spread over several loop threads
// sharing one port, a port another server holds is still refused, and every
// request is answered whichever loop (or the handler pool) serves it; a client
// that leaves mid-head is forgotten, not cut later.
#include <arpa/inet.h>
#include <glib.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "http.hpp"

namespace {

using vessel::http::Request;
using vessel::http::Response;
using vessel::http::Server;
using vessel::http::ServerOptions;

int connectTo(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

// Options for a server on a free loopback port with `io_threads` loops.
ServerOptions loopsOnAnyPort(int io_threads) {
  ServerOptions o;
  o.port = 0;
  o.io_threads = io_threads;
  return o;
}

// One request on an open connection; the whole response (Content-Length framed).
std::string roundTrip(int fd, const std::string& path) {
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: test\r\n\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    return {};
  }
  std::string in;
  char buf[4096];
  for (;;) {
    const std::size_t head_end = in.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      std::size_t length = 0;
      const std::size_t cl = in.find("Content-Length: ");
      if (cl != std::string::npos && cl < head_end) length = std::stoul(in.substr(cl + 16));
      if (in.size() >= head_end + 4 + length) return in.substr(0, head_end + 4 + length);
    }
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return in;
    in.append(buf, static_cast<std::size_t>(n));
  }
}

std::string bodyOf(const std::string& response) {
  const std::size_t at = response.find("\r\n\r\n");
  return at == std::string::npos ? std::string() : response.substr(at + 4);
}

std::string threadName() {
  std::ostringstream s;
  s << std::this_thread::get_id();
  return s.str();
}

// GET /where answers, on its fast path, the loop thread that serves the
// connection, and records it in `threads`.
struct WhereRoute {
  std::mutex mu;
  std::set<std::string> threads;
  void addTo(Server& server) {
    server.route("GET", "/where", [](Request&) { return Response::jsonText(200, "\"pool\""); });
    server.fastPath("GET", "/where", [this](Request&) -> std::optional<Response> {
      std::lock_guard lock(mu);
      threads.insert(threadName());
      return Response::jsonText(200, "\"" + threadName() + "\"");
    });
  }
};

TEST(HttpLoopsTest, ConnectionsAreSpreadOverTheLoopsOfOnePort) {
  ServerOptions o = loopsOnAnyPort(2);
  Server server(o);
  WhereRoute where;
  where.addTo(server);
  // A handler on the pool hands its response back to the right loop.
  server.route("GET", "/pool", [](Request&) { return Response::jsonText(200, "\"pool\""); });
  auto started = server.start();
  ASSERT_TRUE(started.ok()) << started.error().message;
  ASSERT_NE(server.port(), 0);

  // SO_REUSEPORT spreads connections by their address hash: 32 connections
  // all on one of two loops has a probability of 2^-31.
  std::vector<int> fds;
  for (int i = 0; i < 32; ++i) {
    const int fd = connectTo(server.port());
    ASSERT_GE(fd, 0);
    fds.push_back(fd);
  }
  std::set<std::string> per_connection;
  for (int fd : fds) {
    const std::string first = bodyOf(roundTrip(fd, "/where"));
    ASSERT_FALSE(first.empty());
    // Keep-alive: the same connection stays on the same loop.
    EXPECT_EQ(bodyOf(roundTrip(fd, "/where")), first);
    EXPECT_EQ(bodyOf(roundTrip(fd, "/pool")), "\"pool\"");
    per_connection.insert(first);
  }
  for (int fd : fds) ::close(fd);
  EXPECT_EQ(per_connection.size(), 2u);
  EXPECT_EQ(where.threads.size(), 2u);
  server.stop(1.0);
}

TEST(HttpLoopsTest, APortAnotherServerHoldsIsRefused) {
  ServerOptions o = loopsOnAnyPort(2);
  Server first(o);
  first.route("GET", "/x", [](Request&) { return Response::jsonText(200, "1"); });
  auto started = first.start();
  ASSERT_TRUE(started.ok()) << started.error().message;

  ServerOptions again = o;
  again.port = first.port();
  Server second(again);
  second.route("GET", "/x", [](Request&) { return Response::jsonText(200, "2"); });
  auto r = second.start();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("cannot listen on"), std::string::npos) << r.error().message;

  // The first still answers every connection alone.
  for (int i = 0; i < 16; ++i) {
    const int fd = connectTo(first.port());
    ASSERT_GE(fd, 0);
    EXPECT_EQ(bodyOf(roundTrip(fd, "/x")), "1");
    ::close(fd);
  }
  first.stop(1.0);
  // Stopped: nothing listens any more.
  EXPECT_LT(connectTo(again.port), 0);
}

TEST(HttpLoopsTest, OneLoopServesEverythingWhenAskedTo) {
  ServerOptions o = loopsOnAnyPort(1);
  Server server(o);
  WhereRoute where;
  where.addTo(server);
  ASSERT_TRUE(server.start().ok());
  for (int i = 0; i < 16; ++i) {
    const int fd = connectTo(server.port());
    ASSERT_GE(fd, 0);
    EXPECT_FALSE(bodyOf(roundTrip(fd, "/where")).empty());
    ::close(fd);
  }
  EXPECT_EQ(where.threads.size(), 1u);
  server.stop(1.0);
}

}  // namespace

namespace {

// A client that leaves with half a request head sent: libsoup finishes that
// message without a "finished" signal (no method was parsed yet). The loop
// must forget it, not cut it later in the slow-client sweep (it would touch a
// freed message: ASan reports it).
TEST(HttpLoopsTest, AClientLeavingMidHeadIsForgotten) {
  // A freed message handed to libsoup shows as a critical (its type check
  // fails); the memory may also hold a new message by then, whose client
  // would be cut for nothing.
  static std::atomic<int> criticals{0};
  const guint handler = g_log_set_handler(
      "libsoup", static_cast<GLogLevelFlags>(G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING),
      [](const gchar*, GLogLevelFlags, const gchar*, gpointer) { ++criticals; }, nullptr);
  ServerOptions o = loopsOnAnyPort(1);
  o.header_timeout_s = 1;
  Server server(o);
  server.route("GET", "/x", [](Request&) { return Response::jsonText(200, "1"); });
  ASSERT_TRUE(server.start().ok());
  for (int i = 0; i < 8; ++i) {
    const int fd = connectTo(server.port());
    ASSERT_GE(fd, 0);
    const std::string half = "GET /x HTT";
    ASSERT_EQ(::send(fd, half.data(), half.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(half.size()));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ::close(fd);
  }
  // Past the head deadline and two sweeps.
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  const int fd = connectTo(server.port());
  ASSERT_GE(fd, 0);
  EXPECT_EQ(bodyOf(roundTrip(fd, "/x")), "1");
  ::close(fd);
  server.stop(1.0);
  g_log_remove_handler("libsoup", handler);
  EXPECT_EQ(criticals.load(), 0);
}

}  // namespace
