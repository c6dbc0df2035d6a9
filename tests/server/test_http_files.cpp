// http::Server responses whose body is a file (Response::FileBody): the kernel
// sends it (sendfile) after libsoup wrote the head. The bytes arrive whole and in
// order even when the socket fills up, the connection stays usable (keep-alive,
// HEAD, ranges), and a client that goes away or stops reading, or a file shorter
// than promised, costs one connection and nothing else: the file is released.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "http.hpp"

namespace {

using vessel::http::Request;
using vessel::http::Response;
using vessel::http::Server;
using vessel::http::ServerOptions;
namespace fs = std::filesystem;

// An open file that counts its release (the response no longer needs it).
struct OpenFile {
  int fd = -1;
  std::atomic<int>* released = nullptr;
  ~OpenFile() {
    if (fd >= 0) ::close(fd);
    if (released) ++*released;
  }
};

class HttpFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("vessel-http-files-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    content_.resize(6u << 20);  // 6 MiB: far more than a socket buffer holds
    std::mt19937 rng(7);
    for (char& c : content_) c = static_cast<char>(rng());
    std::ofstream(dir_ / "big.bin", std::ios::binary).write(content_.data(), content_.size());
  }
  void TearDown() override {
    if (server_) server_->stop(1.0);
    fs::remove_all(dir_);
  }

  // GET /file?offset=&count= answers that range of big.bin from the file;
  // GET /short promises more bytes than the file has; GET /small is in memory.
  void start(int request_timeout_s = 30) {
    ServerOptions o;
    o.port = 0;
    o.io_threads = 1;
    o.request_timeout_s = request_timeout_s;
    server_ = std::make_unique<Server>(o);
    auto file = [this](Request& req, std::uint64_t extra) {
      auto f = std::make_shared<OpenFile>();
      f->fd = ::open((dir_ / "big.bin").c_str(), O_RDONLY | O_CLOEXEC);
      f->released = &released_;
      Response r;
      r.content_type = "application/octet-stream";
      const std::uint64_t offset =
          std::stoull(req.query.count("offset") ? req.query["offset"] : "0");
      const std::uint64_t count =
          req.query.count("count") ? std::stoull(req.query["count"]) : content_.size() - offset;
      r.file = Response::FileBody{f, f->fd, offset, count + extra};
      return r;
    };
    server_->route("GET", "/file", [file](Request& req) { return file(req, 0); });
    server_->route("GET", "/short", [file](Request& req) { return file(req, 1000); });
    server_->route("GET", "/small", [](Request&) { return Response::jsonText(200, "\"small\""); });
    auto started = server_->start();
    ASSERT_TRUE(started.ok()) << started.error().message;
  }

  // A connection whose receive buffer is small, so that the server's socket
  // fills up and the server must wait for it to drain.
  int connectSmall() const {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int small = 8192;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(server_->port());
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

  static bool sendRequest(int fd, const std::string& method, const std::string& target) {
    const std::string req = method + " " + target + " HTTP/1.1\r\nHost: test\r\n\r\n";
    return ::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size());
  }

  struct Reply {
    std::string head;
    std::string body;
    std::size_t content_length = 0;
    bool eof = false;  ///< the server closed before the whole body came
  };

  // Reads one response (Content-Length framed), in small reads with pauses at
  // first so that the server meets a full socket; gives up after `timeout`.
  static Reply readReply(int fd, bool head_only = false,
                         std::chrono::seconds timeout = std::chrono::seconds(30)) {
    Reply r;
    std::string in;
    char buf[16384];
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int reads = 0;
    for (;;) {
      const std::size_t head_end = in.find("\r\n\r\n");
      if (head_end != std::string::npos && r.head.empty()) {
        r.head = in.substr(0, head_end + 4);
        const std::size_t cl = r.head.find("Content-Length: ");
        if (cl != std::string::npos) r.content_length = std::stoull(r.head.substr(cl + 16));
        in.erase(0, head_end + 4);
      }
      if (!r.head.empty() && (head_only || in.size() >= r.content_length)) {
        r.body = in.substr(0, head_only ? 0 : r.content_length);
        return r;
      }
      if (std::chrono::steady_clock::now() > deadline) break;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) {
        r.eof = true;
        break;
      }
      in.append(buf, static_cast<std::size_t>(n));
      if (++reads < 20) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    r.body = std::move(in);
    return r;
  }

  bool waitReleased(int n) const {
    for (int i = 0; i < 100 && released_.load() < n; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return released_.load() >= n;
  }

  fs::path dir_;
  std::string content_;
  std::unique_ptr<Server> server_;
  std::atomic<int> released_{0};
};

TEST_F(HttpFilesTest, AFileBodyArrivesWholeAndTheConnectionStaysUsable) {
  start();
  const int fd = connectSmall();
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(sendRequest(fd, "GET", "/file"));
  Reply whole = readReply(fd);
  EXPECT_NE(whole.head.find("HTTP/1.1 200"), std::string::npos) << whole.head;
  EXPECT_NE(whole.head.find("Content-Type: application/octet-stream"), std::string::npos);
  EXPECT_EQ(whole.content_length, content_.size());
  ASSERT_EQ(whole.body.size(), content_.size());
  EXPECT_TRUE(whole.body == content_) << "the bytes differ from the file's";

  // Keep-alive: a range of the file, a HEAD, then a body from memory, all on
  // the same connection (libsoup resumed where the file body ended).
  ASSERT_TRUE(sendRequest(fd, "GET", "/file?offset=1000001&count=70000"));
  Reply part = readReply(fd);
  EXPECT_EQ(part.content_length, 70000u);
  EXPECT_TRUE(part.body == content_.substr(1000001, 70000));

  ASSERT_TRUE(sendRequest(fd, "HEAD", "/file"));
  Reply head = readReply(fd, /*head_only=*/true);
  EXPECT_EQ(head.content_length, content_.size()) << head.head;

  ASSERT_TRUE(sendRequest(fd, "GET", "/small"));
  Reply small = readReply(fd);
  EXPECT_EQ(small.body, "\"small\"") << small.head << small.body.substr(0, 64);
  ::close(fd);
  EXPECT_TRUE(waitReleased(3)) << released_.load() << " of 3 files released";
}

// The head of a file response is held back (TCP_CORK) to leave with the
// body's first bytes; the socket must be let go once the body is sent, or
// every later answer on the connection (smaller than a packet) would wait for
// the kernel's 200 ms cork timer.
TEST_F(HttpFilesTest, SmallAnswersAfterAFileBodyAreNotHeldBack) {
  start();
  const int fd = connectSmall();
  ASSERT_GE(fd, 0);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(sendRequest(fd, "GET", "/file?offset=10&count=100"));
    Reply part = readReply(fd);
    ASSERT_EQ(part.content_length, 100u) << part.head;
    EXPECT_TRUE(part.body == content_.substr(10, 100));
    ASSERT_TRUE(sendRequest(fd, "GET", "/small"));
    Reply small = readReply(fd);
    EXPECT_EQ(small.body, "\"small\"") << small.head;
  }
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  // Held back, the 10 answers take 2 s or more; otherwise a few ms.
  EXPECT_LT(ms, 1000) << "10 small answers took " << ms << " ms";
  ::close(fd);
}

TEST_F(HttpFilesTest, AClientGoneMidBodyCostsOnlyItsConnection) {
  start();
  for (int i = 0; i < 4; ++i) {
    const int fd = connectSmall();
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(sendRequest(fd, "GET", "/file"));
    char buf[4096];
    ASSERT_GT(::recv(fd, buf, sizeof buf, 0), 0);
    // Reset, not a polite close: the server's next send fails at once.
    linger hard{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    ::close(fd);
  }
  EXPECT_TRUE(waitReleased(4)) << released_.load() << " of 4 files released";
  const int fd = connectSmall();
  ASSERT_TRUE(sendRequest(fd, "GET", "/file?offset=5&count=100000"));
  Reply r = readReply(fd);
  EXPECT_TRUE(r.body == content_.substr(5, 100000));
  ::close(fd);
}

TEST_F(HttpFilesTest, AClientThatStopsReadingIsCut) {
  start(/*request_timeout_s=*/1);
  const int fd = connectSmall();
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(sendRequest(fd, "GET", "/file"));
  std::this_thread::sleep_for(std::chrono::seconds(4));  // timeout 1 s + the 1 s sweep
  EXPECT_TRUE(waitReleased(1)) << "the stalled response still holds its file";
  Reply r = readReply(fd, false, std::chrono::seconds(10));
  EXPECT_TRUE(r.eof);
  EXPECT_LT(r.body.size(), content_.size());
  ::close(fd);
  // Others are served meanwhile and after.
  const int other = connectSmall();
  ASSERT_TRUE(sendRequest(other, "GET", "/file?offset=0&count=300000"));
  EXPECT_TRUE(readReply(other).body == content_.substr(0, 300000));
  ::close(other);
}

TEST_F(HttpFilesTest, AFileShorterThanPromisedEndsTheConnection) {
  start();
  const int fd = connectSmall();
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(sendRequest(fd, "GET", "/short?offset=6000000"));
  Reply r = readReply(fd, false, std::chrono::seconds(10));
  EXPECT_EQ(r.content_length, content_.size() - 6000000 + 1000);
  EXPECT_TRUE(r.eof) << "the client must not wait for bytes that never come";
  EXPECT_TRUE(r.body == content_.substr(6000000));
  ::close(fd);
  EXPECT_TRUE(waitReleased(1));
}

TEST_F(HttpFilesTest, StoppingTheServerDuringASendReleasesTheFile) {
  start();
  const int fd = connectSmall();
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(sendRequest(fd, "GET", "/file"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  server_->stop(0.5);
  server_.reset();
  EXPECT_TRUE(waitReleased(1));
  ::close(fd);
}

}  // namespace
