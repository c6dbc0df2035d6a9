// The S3 store against the real test server that tests/s3/server.py starts (meson
// runs this binary under `server.py --faults run --`): s3rver behind the front
// that verifies every signature with botocore, behind the fault-injecting proxy.
// VESSEL_TEST_S3 holds the server's JSON; without it every test skips.
//
// Covers every operation, keys with spaces/unicode/reserved characters, a 100 MB
// multipart object, listing past 1,000 keys, removePrefix, presigned PUT/GET by a
// plain HTTP client, expired and tampered presigned URLs, wrong credentials, the
// retry rules under injected faults, and uploads that are aborted or killed.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "s3_storage.hpp"
#include "sigv4.hpp"
#include "vessel/http_client.hpp"
#include "vessel/storage.hpp"

extern char** environ;

namespace {

using nlohmann::json;
using vessel::ErrorCode;
using vessel::HttpClient;
using vessel::ObjectReader;
using vessel::Storage;
using vessel::plugins::S3Options;
using vessel::plugins::S3Storage;
using namespace std::chrono_literals;

constexpr std::chrono::milliseconds kHttpTimeout = 60s;

std::span<const std::byte> bytes(std::string_view text) {
  return {reinterpret_cast<const std::byte*>(text.data()), text.size()};
}

/// Deterministic pseudo-random content: byte i of stream `seed`.
std::string pattern(std::size_t size, std::uint64_t seed, std::size_t offset = 0) {
  std::string out(size, '\0');
  for (std::size_t i = 0; i < size; ++i) {
    std::uint64_t x = (offset + i) * 0x9E3779B97F4A7C15ull + seed;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 32;
    out[i] = static_cast<char>(x);
  }
  return out;
}

std::string readAll(ObjectReader& reader, std::size_t chunk = 1 << 16) {
  std::string out;
  std::vector<std::byte> buffer(chunk);
  for (;;) {
    auto got = reader.read(buffer);
    EXPECT_TRUE(got.ok()) << got.error().message;
    if (!got.ok() || got.value() == 0) break;
    out.append(reinterpret_cast<const char*>(buffer.data()), got.value());
  }
  return out;
}

std::optional<json> serverInfo() {
  const char* raw = std::getenv("VESSEL_TEST_S3");
  if (raw == nullptr || *raw == '\0') return std::nullopt;
  return json::parse(raw);
}

class S3Test : public ::testing::Test {
 protected:
  void SetUp() override {
    auto info = serverInfo();
    if (!info) GTEST_SKIP() << "VESSEL_TEST_S3 is not set (run under tests/s3/server.py run --)";
    info_ = *info;
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    prefix_ = std::string(test->name()) + "-" + std::to_string(::getpid()) + "/";
    if (info_.contains("fault_control")) control("/reset", "{}");
    storage_ = open(options());
  }

  S3Options options() const {
    S3Options o;
    o.endpoint = info_["endpoint"];
    o.region = info_["region"];
    o.bucket = info_["bucket"];
    o.access_key_id = info_["access_key_id"];
    o.secret_access_key = info_["secret_access_key"];
    o.path_style = true;
    o.request_timeout = 20s;
    o.max_attempts = 4;
    o.retry_base_delay = 10ms;
    o.retry_max_delay = 200ms;
    return o;
  }

  static std::unique_ptr<S3Storage> open(const S3Options& o) {
    auto opened = S3Storage::open(o);
    EXPECT_TRUE(opened.ok()) << opened.error().message;
    return opened.ok() ? std::move(opened).value() : nullptr;
  }

  json control(const std::string& path, const std::string& body) {
    if (!info_.contains("fault_control")) return json();
    HttpClient http;
    auto r = http.request(body.empty() ? "GET" : "POST",
                          info_["fault_control"].get<std::string>() + path,
                          {{"Content-Type", "application/json"}}, body, kHttpTimeout);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? json::parse(r.value().body) : json();
  }

  void faults(const json& rules) { control("/faults", json{{"rules", rules}}.dump()); }
  json stats() { return control("/stats", ""); }
  /// The proxy's request log: [method, path with query, injected fault or null].
  std::vector<json> log() { return stats()["log"].get<std::vector<json>>(); }
  bool haveFaults() const { return info_.contains("fault_control"); }

  void put(std::string_view key, std::string_view content) {
    auto done = storage_->put(key, bytes(content), "application/octet-stream");
    ASSERT_TRUE(done.ok()) << done.error().message;
  }

  std::string get(std::string_view key) {
    auto data = storage_->getAll(key);
    EXPECT_TRUE(data.ok()) << data.error().message;
    if (!data.ok()) return {};
    return std::string(reinterpret_cast<const char*>(data.value().data()), data.value().size());
  }

  std::vector<std::string> listKeys(std::string_view prefix) {
    std::vector<std::string> keys;
    auto page = storage_->list(prefix, "", 100000);
    EXPECT_TRUE(page.ok()) << page.error().message;
    if (page.ok()) {
      for (const auto& object : page.value().objects) keys.push_back(object.key);
      EXPECT_TRUE(page.value().next_token.empty());
    }
    return keys;
  }

  /// A direct, unsigned request to s3rver (behind the plugin's back).
  vessel::HttpResponse direct(const std::string& method, const std::string& key) {
    HttpClient http;
    auto r = http.request(method,
                          info_["s3rver_endpoint"].get<std::string>() + "/" +
                              info_["bucket"].get<std::string>() + "/" +
                              vessel::plugins::s3::uriEncode(key, true),
                          {}, "", kHttpTimeout);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? r.value() : vessel::HttpResponse{};
  }

  /// Puts `count` small objects under `dir` with 4 threads.
  void putMany(const std::string& dir, int count) {
    std::atomic<int> next{0};
    std::mutex mutex;
    std::vector<std::string> failures;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        for (int i = next++; i < count; i = next++) {
          char name[32];
          std::snprintf(name, sizeof name, "%05d", i);
          auto done = storage_->put(dir + name, bytes(name), "text/plain");
          if (!done.ok()) {
            const std::lock_guard lock(mutex);
            failures.push_back(done.error().message);
          }
        }
      });
    }
    for (auto& thread : threads) thread.join();
    ASSERT_TRUE(failures.empty()) << failures.front();
  }

  json info_;
  std::string prefix_;
  std::unique_ptr<S3Storage> storage_;
};

// --- every operation ----------------------------------------------------------------

TEST_F(S3Test, EveryOperationRoundTrips) {
  const std::string key = prefix_ + "a/b/c.ts";
  const std::string binary("\0\x01\xff payload \n\0", 13);
  auto stored = storage_->put(key, bytes(binary), "video/mp2t");
  ASSERT_TRUE(stored.ok()) << stored.error().message;
  EXPECT_EQ(get(key), binary);
  EXPECT_EQ(direct("GET", key).header("content-type"), "video/mp2t");

  auto info = storage_->stat(key);
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info.value().key, key);
  EXPECT_EQ(info.value().size_bytes, binary.size());
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  EXPECT_NEAR(static_cast<double>(info.value().modified_unix_ms), static_cast<double>(now_ms),
              120'000.0);
  EXPECT_TRUE(storage_->exists(key).value());
  EXPECT_FALSE(storage_->exists(prefix_ + "a/b").value());  // a prefix, not an object
  EXPECT_FALSE(storage_->exists(prefix_ + "none").value());

  auto missing = storage_->stat(prefix_ + "none");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  auto missing_reader = storage_->openReader(prefix_ + "none");
  ASSERT_FALSE(missing_reader.ok());
  EXPECT_EQ(missing_reader.error().code, ErrorCode::kNotFound);
  EXPECT_NE(missing_reader.error().message.find("openReader '" + prefix_ + "none'"),
            std::string::npos)
      << missing_reader.error().message;
  EXPECT_NE(missing_reader.error().message.find("NoSuchKey"), std::string::npos)
      << missing_reader.error().message;

  // Ranges.
  put(prefix_ + "r", "0123456789");
  struct Case {
    std::uint64_t offset;
    std::optional<std::uint64_t> length;
    std::string expected;
  };
  for (const Case& c : std::vector<Case>{{0, std::nullopt, "0123456789"},
                                         {3, 4, "3456"},
                                         {8, std::nullopt, "89"},
                                         {7, 100, "789"},
                                         {10, 5, ""},
                                         {10, std::nullopt, ""},
                                         {0, 0, ""}}) {
    auto reader = storage_->openReader(prefix_ + "r", c.offset, c.length);
    ASSERT_TRUE(reader.ok()) << reader.error().message;
    EXPECT_EQ(reader.value()->sizeBytes(), c.expected.size()) << c.offset;
    EXPECT_EQ(readAll(*reader.value(), 3), c.expected) << c.offset;
  }
  auto past = storage_->openReader(prefix_ + "r", 11);
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(past.error().code, ErrorCode::kInvalidArgument);

  // Empty objects, by put and by writer.
  put(prefix_ + "empty", "");
  EXPECT_EQ(get(prefix_ + "empty"), "");
  EXPECT_EQ(storage_->stat(prefix_ + "empty").value().size_bytes, 0u);
  {
    auto writer = storage_->openWriter(prefix_ + "empty2", "");
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE(writer.value()->commit().ok());
  }
  EXPECT_EQ(get(prefix_ + "empty2"), "");

  // A small writer: nothing visible before commit, a single PUT.
  auto writer = storage_->openWriter(prefix_ + "w.ts", "video/mp2t");
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer.value()->write(bytes("part1-")).ok());
  ASSERT_TRUE(writer.value()->write(bytes("part2")).ok());
  EXPECT_EQ(writer.value()->bytesWritten(), 11u);
  EXPECT_FALSE(storage_->exists(prefix_ + "w.ts").value());
  ASSERT_TRUE(writer.value()->commit().ok());
  EXPECT_FALSE(writer.value()->write(bytes("x")).ok());
  EXPECT_FALSE(writer.value()->commit().ok());
  EXPECT_EQ(get(prefix_ + "w.ts"), "part1-part2");

  // Overwrite, list, remove (idempotent).
  put(key, "replaced");
  EXPECT_EQ(get(key), "replaced");
  EXPECT_EQ(listKeys(prefix_),
            (std::vector<std::string>{prefix_ + "a/b/c.ts", prefix_ + "empty", prefix_ + "empty2",
                                      prefix_ + "r", prefix_ + "w.ts"}));
  ASSERT_TRUE(storage_->remove(key).ok());
  ASSERT_TRUE(storage_->remove(key).ok());
  EXPECT_FALSE(storage_->exists(key).value());
  EXPECT_EQ(storage_->localPath(key), std::nullopt);
}

TEST_F(S3Test, InvalidKeysAreRefusedWithoutARequest) {
  const auto before = stats().value("requests", 0);
  for (const std::string key : {"/etc/passwd", "../escape", "a//b", "", "a\nb"}) {
    auto done = storage_->put(key, bytes("x"), "");
    ASSERT_FALSE(done.ok()) << key;
    EXPECT_EQ(done.error().code, ErrorCode::kInvalidArgument) << key;
    EXPECT_FALSE(storage_->openWriter(key, "").ok());
    EXPECT_FALSE(storage_->openReader(key).ok());
  }
  EXPECT_FALSE(storage_->removePrefix("").ok());
  EXPECT_FALSE(storage_->list("../", "", 10).ok());
  EXPECT_FALSE(storage_->list("", "", 0).ok());
  EXPECT_EQ(stats().value("requests", 0), before);
}

TEST_F(S3Test, KeysWithSpacesUnicodeAndReservedCharacters) {
  const std::vector<std::string> names = {
      "with space/and more.ts", "unicodé/音楽/🎵.ts",    "plus+equals=amp&semi;comma,at@.ts",
      "reserved!$'()*:[]~.ts",  "percent%20literal.ts", "question?hash#.ts",
      "quote\"lt<gt>.ts",       "tab-free ünïcødé.m3u8"};
  std::set<std::string> keys;
  for (const auto& name : names) {
    const std::string key = prefix_ + name;
    keys.insert(key);
    ASSERT_TRUE(storage_->put(key, bytes(name), "text/plain").ok()) << key;
  }
  for (const auto& key : keys) {
    EXPECT_EQ(get(key), key.substr(prefix_.size())) << key;
    EXPECT_TRUE(storage_->exists(key).value()) << key;
    auto presigned = storage_->presignGet(key, 60);
    ASSERT_TRUE(presigned.ok());
    HttpClient http;
    auto r = http.request("GET", presigned.value()->url, {}, "", kHttpTimeout);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value().status, 200) << key << ": " << r.value().body;
    EXPECT_EQ(r.value().body, key.substr(prefix_.size()));
  }
  const auto listed = listKeys(prefix_);
  EXPECT_EQ(std::set<std::string>(listed.begin(), listed.end()), keys);
  auto removed = storage_->removePrefix(prefix_);
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_EQ(removed.value(), keys.size());
  EXPECT_TRUE(listKeys(prefix_).empty());
}

// --- multipart ------------------------------------------------------------------------

TEST_F(S3Test, Multipart100MiBObjectStreamsInParallelParts) {
  constexpr std::size_t kSize = 100u << 20;
  constexpr std::size_t kChunk = 1u << 20;
  const std::string key = prefix_ + "big.bin";
  auto opened = storage_->openWriter(key, "application/octet-stream");
  ASSERT_TRUE(opened.ok());
  for (std::size_t off = 0; off < kSize; off += kChunk) {
    const std::string chunk = pattern(kChunk, 7, off);
    ASSERT_TRUE(opened.value()->write(bytes(chunk)).ok());
  }
  EXPECT_FALSE(storage_->exists(key).value()) << "visible before commit";
  ASSERT_TRUE(opened.value()->commit().ok());
  EXPECT_EQ(storage_->stat(key).value().size_bytes, kSize);

  if (haveFaults()) {  // the proxy saw 13 parts of at most 8 MiB
    int parts = 0;
    for (const auto& entry : log()) {
      const std::string path = entry[1];
      if (entry[0] == "PUT" && path.find("partNumber=") != std::string::npos) ++parts;
    }
    EXPECT_EQ(parts, 13);
  }

  // Streamed back with ranged GETs, compared piecewise.
  auto reader = storage_->openReader(key);
  ASSERT_TRUE(reader.ok()) << reader.error().message;
  EXPECT_EQ(reader.value()->sizeBytes(), kSize);
  std::vector<std::byte> buffer(777'777);  // not a divisor of anything
  std::size_t offset = 0;
  for (;;) {
    auto got = reader.value()->read(buffer);
    ASSERT_TRUE(got.ok()) << got.error().message;
    if (got.value() == 0) break;
    ASSERT_EQ(std::string(reinterpret_cast<const char*>(buffer.data()), got.value()),
              pattern(got.value(), 7, offset))
        << "at " << offset;
    offset += got.value();
  }
  EXPECT_EQ(offset, kSize);

  // A range across a part boundary.
  auto middle = storage_->openReader(key, (8u << 20) - 5, 10);
  ASSERT_TRUE(middle.ok());
  EXPECT_EQ(readAll(*middle.value()), pattern(10, 7, (8u << 20) - 5));

  auto uploads = storage_->listMultipartUploads(prefix_);
  ASSERT_TRUE(uploads.ok());
  EXPECT_TRUE(uploads.value().empty());
  ASSERT_TRUE(storage_->remove(key).ok());
}

TEST_F(S3Test, LargePutUsesMultipart) {
  const std::string data = pattern(20u << 20, 3);
  ASSERT_TRUE(storage_->put(prefix_ + "p.bin", bytes(data), "").ok());
  EXPECT_EQ(get(prefix_ + "p.bin"), data);
}

TEST_F(S3Test, AbortedAndDestroyedWritersLeaveNothing) {
  auto options_small = options();
  options_small.part_size_bytes = 5u << 20;
  auto store = open(options_small);
  const std::string data = pattern(12u << 20, 5);
  {
    auto writer = store->openWriter(prefix_ + "destroyed", "");
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE(writer.value()->write(bytes(data)).ok());  // two parts on their way
  }
  auto writer = store->openWriter(prefix_ + "aborted", "");
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer.value()->write(bytes(data)).ok());
  writer.value()->abort();
  EXPECT_FALSE(writer.value()->commit().ok());
  EXPECT_FALSE(writer.value()->write(bytes("x")).ok());

  EXPECT_FALSE(store->exists(prefix_ + "destroyed").value());
  EXPECT_FALSE(store->exists(prefix_ + "aborted").value());
  auto uploads = store->listMultipartUploads(prefix_);
  ASSERT_TRUE(uploads.ok()) << uploads.error().message;
  EXPECT_TRUE(uploads.value().empty()) << uploads.value().size() << " uploads left";
}

TEST_F(S3Test, WriterAndReaderOutliveTheStore) {
  put(prefix_ + "src", "source bytes");
  auto reader = storage_->openReader(prefix_ + "src");
  ASSERT_TRUE(reader.ok());
  auto writer = storage_->openWriter(prefix_ + "late", "");
  ASSERT_TRUE(writer.ok());
  storage_.reset();
  ASSERT_TRUE(writer.value()->write(bytes("still fine")).ok());
  ASSERT_TRUE(writer.value()->commit().ok());
  EXPECT_EQ(readAll(*reader.value()), "source bytes");
  EXPECT_EQ(direct("GET", prefix_ + "late").body, "still fine");
}

// --- listing and removePrefix -------------------------------------------------------------

TEST_F(S3Test, ListPaginatesPast1000Keys) {
  constexpr int kCount = 1105;
  putMany(prefix_ + "k/", kCount);
  put(prefix_ + "k-sibling", "x");

  // One call for everything: two store pages joined.
  const auto all = listKeys(prefix_ + "k/");
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kCount));
  EXPECT_TRUE(std::is_sorted(all.begin(), all.end()));

  // Pages of 1000 and of 300 with continuation tokens.
  for (const std::size_t page_size : {std::size_t{1000}, std::size_t{300}}) {
    std::vector<std::string> seen;
    std::string token;
    int pages = 0;
    for (;;) {
      auto page = storage_->list(prefix_ + "k/", token, page_size);
      ASSERT_TRUE(page.ok()) << page.error().message;
      ++pages;
      ASSERT_LE(page.value().objects.size(), page_size);
      for (const auto& object : page.value().objects) {
        seen.push_back(object.key);
        EXPECT_EQ(object.size_bytes, 5u);
      }
      if (page.value().next_token.empty()) break;
      token = page.value().next_token;
      ASSERT_LT(pages, 10);
    }
    EXPECT_EQ(seen, all) << page_size;
    EXPECT_EQ(pages, static_cast<int>((kCount + page_size - 1) / page_size));
  }

  auto removed = storage_->removePrefix(prefix_ + "k/");
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_EQ(removed.value(), static_cast<std::uint64_t>(kCount));
  EXPECT_TRUE(listKeys(prefix_ + "k/").empty());
  EXPECT_EQ(listKeys(prefix_), (std::vector<std::string>{prefix_ + "k-sibling"}));
  if (haveFaults()) {
    // Batches of at most 1000 keys: two DeleteObjects (more only when one was
    // retried: s3rver sometimes fails a 1000-key batch with a 500 when its
    // parallel deletes race to remove the emptied directory).
    int deletes = 0;
    for (const auto& entry : log()) {
      const std::string path = entry[1];
      if (entry[0] == "POST" && path.find("delete=") != std::string::npos) ++deletes;
    }
    EXPECT_GE(deletes, 2);
    EXPECT_LE(deletes, 2 + 3);
  }
}

// --- presigned URLs -------------------------------------------------------------------------

TEST_F(S3Test, PresignedPutByAPlainHttpClient) {
  const std::string key = prefix_ + "u1/up/original.mp3";
  const std::string body = pattern(300'000, 11);
  auto presigned = storage_->presignPut(key, "audio/mpeg", body.size(), 600);
  ASSERT_TRUE(presigned.ok()) << presigned.error().message;
  ASSERT_TRUE(presigned.value().has_value());
  const vessel::PresignedRequest& request = *presigned.value();

  HttpClient http;
  // The wrong size or type is refused by the signature.
  auto wrong_size = http.request("PUT", request.url, request.headers, body.substr(1), kHttpTimeout);
  ASSERT_TRUE(wrong_size.ok());
  EXPECT_EQ(wrong_size.value().status, 403) << wrong_size.value().body;
  auto wrong_type =
      http.request("PUT", request.url, {{"Content-Type", "text/html"}}, body, kHttpTimeout);
  ASSERT_TRUE(wrong_type.ok());
  EXPECT_EQ(wrong_type.value().status, 403);
  EXPECT_NE(wrong_type.value().body.find("SignatureDoesNotMatch"), std::string::npos);
  EXPECT_FALSE(storage_->exists(key).value());

  auto r = http.request(request.method, request.url, request.headers, body, kHttpTimeout);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value().status, 200) << r.value().body;

  // What `complete` does next on the server: the object is there, whole.
  auto info = storage_->stat(key);
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info.value().size_bytes, body.size());
  EXPECT_EQ(direct("GET", key).header("content-type"), "audio/mpeg");
  auto reader = storage_->openReader(key, 0, 64);
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ(readAll(*reader.value()), body.substr(0, 64));

  auto get = storage_->presignGet(key, 600);
  ASSERT_TRUE(get.ok());
  auto fetched = http.request("GET", get.value()->url, {}, "", kHttpTimeout);
  ASSERT_TRUE(fetched.ok());
  EXPECT_EQ(fetched.value().status, 200);
  EXPECT_EQ(fetched.value().body, body);
}

TEST_F(S3Test, ExpiredAndTamperedPresignedUrlsFail) {
  const std::string key = prefix_ + "secret.ts";
  put(key, "private bytes");
  put(prefix_ + "other.ts", "other bytes");
  HttpClient http;
  auto status_of = [&](const std::string& url) {
    auto r = http.request("GET", url, {}, "", kHttpTimeout);
    EXPECT_TRUE(r.ok());
    return r.ok() ? std::make_pair(r.value().status, r.value().body)
                  : std::make_pair(0L, std::string());
  };

  auto good = storage_->presignGet(key, 600);
  ASSERT_TRUE(good.ok());
  const std::string url = good.value()->url;
  EXPECT_EQ(status_of(url).first, 200);

  auto replace = [&](std::string from, std::string to) {
    std::string out = url;
    const auto at = out.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) out.replace(at, from.size(), to);
    return out;
  };
  const std::string sig = url.substr(url.rfind("X-Amz-Signature=") + 16);
  std::string flipped = sig;
  flipped[0] = flipped[0] == 'a' ? 'b' : 'a';
  for (const std::string& tampered :
       {replace("secret.ts", "other.ts"), replace("X-Amz-Expires=600", "X-Amz-Expires=6000"),
        replace("X-Amz-Signature=" + sig, "X-Amz-Signature=" + flipped),
        replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=host%3Brange")}) {
    const auto [status, body] = status_of(tampered);
    EXPECT_EQ(status, 403) << tampered << "\n" << body;
    EXPECT_EQ(body.find("private bytes"), std::string::npos);
  }

  auto short_lived = storage_->presignGet(key, 1);
  ASSERT_TRUE(short_lived.ok());
  std::this_thread::sleep_for(2100ms);
  const auto [status, body] = status_of(short_lived.value()->url);
  EXPECT_EQ(status, 403);
  EXPECT_NE(body.find("expired"), std::string::npos) << body;
}

// --- credentials ----------------------------------------------------------------------------

TEST_F(S3Test, WrongSecretIsRefusedAndNotRetried) {
  auto wrong = options();
  wrong.secret_access_key += "x";
  auto store = open(wrong);
  const auto before = stats().value("requests", 0);
  auto done = store->put(prefix_ + "nope", bytes("x"), "");
  ASSERT_FALSE(done.ok());
  EXPECT_EQ(done.error().code, ErrorCode::kPermissionDenied);
  EXPECT_NE(done.error().message.find("put '" + prefix_ + "nope'"), std::string::npos)
      << done.error().message;
  EXPECT_NE(done.error().message.find("HTTP 403 SignatureDoesNotMatch"), std::string::npos)
      << done.error().message;
  EXPECT_EQ(done.error().message.find(wrong.secret_access_key), std::string::npos);
  if (haveFaults()) {
    EXPECT_EQ(stats().value("requests", 0) - before, 1) << "4xx was retried";
  }
  EXPECT_FALSE(storage_->exists(prefix_ + "nope").value());

  auto wrong_key = options();
  wrong_key.access_key_id = "AKIDNOBODY";
  auto refused = open(wrong_key)->exists(prefix_ + "x");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("HTTP 403"), std::string::npos);

  auto wrong_region = options();
  wrong_region.region = "eu-west-9";
  auto listed = open(wrong_region)->list(prefix_, "", 10);
  ASSERT_FALSE(listed.ok());
  EXPECT_NE(listed.error().message.find("AuthorizationHeaderMalformed"), std::string::npos)
      << listed.error().message;
}

// --- faults and retries -------------------------------------------------------------------------

TEST_F(S3Test, TransientFaultsAreRetriedWithinTheBudget) {
  if (!haveFaults()) GTEST_SKIP() << "no fault proxy";
  for (const std::string kind : {"500", "503", "slowdown", "429", "reset"}) {
    faults(json::array({{{"kind", kind}, {"count", 3}}}));  // budget is 4 attempts
    const std::string key = prefix_ + "retry-" + kind;
    auto done = storage_->put(key, bytes(kind), "");
    ASSERT_TRUE(done.ok()) << kind << ": " << done.error().message;
    EXPECT_EQ(stats().value("injected", 0), 3) << kind;
    faults(json::array());
    EXPECT_EQ(get(key), kind);
    control("/reset", "{}");
  }
}

TEST_F(S3Test, TimeoutsAreRetried) {
  if (!haveFaults()) GTEST_SKIP() << "no fault proxy";
  auto quick = options();
  quick.request_timeout = 700ms;
  auto store = open(quick);
  put(prefix_ + "slow", "eventually");
  faults(json::array({{{"kind", "timeout"}, {"count", 1}, {"method", "GET"}, {"delay_s", 2}}}));
  auto reader = store->openReader(prefix_ + "slow");
  ASSERT_TRUE(reader.ok()) << reader.error().message;
  EXPECT_EQ(readAll(*reader.value()), "eventually");
  EXPECT_EQ(stats().value("injected", 0), 1);
}

TEST_F(S3Test, PastTheBudgetOperationsFailCleanly) {
  if (!haveFaults()) GTEST_SKIP() << "no fault proxy";
  faults(json::array({{{"kind", "slowdown"}, {"count", 100}}}));
  const std::string key = prefix_ + "never";
  const auto started = std::chrono::steady_clock::now();
  auto done = storage_->put(key, bytes("x"), "");
  const auto elapsed = std::chrono::steady_clock::now() - started;
  ASSERT_FALSE(done.ok());
  EXPECT_EQ(done.error().code, ErrorCode::kUnavailable);
  for (const std::string& part : std::vector<std::string>{"put '" + key + "'", "HTTP 503 SlowDown",
                                                          "gave up after 4 attempts"}) {
    EXPECT_NE(done.error().message.find(part), std::string::npos) << done.error().message;
  }
  EXPECT_EQ(stats().value("injected", 0), 4);
  EXPECT_GE(elapsed, 10ms + 20ms + 40ms - 35ms);  // backed off (equal jitter: >= half a step)
  EXPECT_LT(elapsed, 5s);

  // Non-retryable 4xx: one attempt only.
  control("/reset", "{}");
  faults(json::array({{{"kind", "403"}, {"count", 100}}}));
  auto denied = storage_->stat(key);
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.error().code, ErrorCode::kPermissionDenied);
  EXPECT_EQ(stats().value("requests", 0), 1);
  faults(json::array({{{"kind", "400"}, {"count", 100}}}));
  auto bad = storage_->remove(key);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(bad.error().message.find("InvalidRequest"), std::string::npos);
  EXPECT_EQ(stats().value("requests", 0), 2);
  faults(json::array());
  EXPECT_FALSE(storage_->exists(key).value());
}

TEST_F(S3Test, AFailingPartAbortsTheMultipartUpload) {
  if (!haveFaults()) GTEST_SKIP() << "no fault proxy";
  auto small = options();
  small.part_size_bytes = 5u << 20;
  auto store = open(small);
  // Part 2 fails on every attempt; parts 1 and 3 succeed.
  faults(json::array(
      {{{"kind", "500"}, {"count", 100}, {"method", "PUT"}, {"query", "partNumber=2&"}}}));
  auto writer = store->openWriter(prefix_ + "broken", "");
  ASSERT_TRUE(writer.ok());
  const std::string data = pattern(16u << 20, 9);
  auto written = writer.value()->write(bytes(data));
  auto committed = written.ok() ? writer.value()->commit() : written;
  ASSERT_FALSE(committed.ok());
  EXPECT_EQ(committed.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(committed.error().message.find("'" + prefix_ + "broken'"), std::string::npos);
  EXPECT_NE(committed.error().message.find("InternalError"), std::string::npos)
      << committed.error().message;
  faults(json::array());
  EXPECT_FALSE(store->exists(prefix_ + "broken").value());
  auto uploads = store->listMultipartUploads(prefix_);
  ASSERT_TRUE(uploads.ok());
  EXPECT_TRUE(uploads.value().empty()) << "the failed upload was not aborted";
  bool aborted = false;
  for (const auto& entry : log()) {
    const std::string path = entry[1];
    aborted |= entry[0] == "DELETE" && path.find("uploadId=") != std::string::npos;
  }
  EXPECT_TRUE(aborted);
}

// --- a killed upload ----------------------------------------------------------------------------

// Runs only as the child of KilledUploadLeavesNoObjectAndNoOrphan: starts a
// multipart upload, reports READY on fd 3 and waits to be killed.
TEST_F(S3Test, ChildHoldsAnUploadOpen) {
  const char* child_prefix = std::getenv("VESSEL_TEST_S3_CHILD_PREFIX");
  if (child_prefix == nullptr) GTEST_SKIP() << "child helper of KilledUpload...";
  auto small = options();
  small.part_size_bytes = 5u << 20;
  auto store = open(small);
  auto writer = store->openWriter(std::string(child_prefix) + "killed.bin", "");
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer.value()->write(bytes(pattern(11u << 20, 1))).ok());
  for (int i = 0; i < 200; ++i) {  // parts 1 and 2 are up
    auto uploads = store->listMultipartUploads(child_prefix);
    if (uploads.ok() && !uploads.value().empty()) break;
    std::this_thread::sleep_for(50ms);
  }
  std::this_thread::sleep_for(500ms);
  [[maybe_unused]] auto n = ::write(3, "READY\n", 6);
  for (;;) std::this_thread::sleep_for(1s);
}

TEST_F(S3Test, KilledUploadLeavesNoObjectAndNoOrphan) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  // fds[0] may itself be 3: close it first, then put the write end there.
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 3);
  const std::string filter = "--gtest_filter=S3Test.ChildHoldsAnUploadOpen";
  char* argv[] = {const_cast<char*>("/proc/self/exe"), const_cast<char*>(filter.c_str()), nullptr};
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  env_strings.push_back("VESSEL_TEST_S3_CHILD_PREFIX=" + prefix_);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  pid_t child = 0;
  ASSERT_EQ(posix_spawn(&child, "/proc/self/exe", &actions, nullptr, argv, envp.data()), 0);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  char ready[16] = {};
  pollfd pfd{fds[0], POLLIN, 0};
  ssize_t n = -1;  // EOF (0) if the child died early, -1 if it hangs
  if (::poll(&pfd, 1, 60'000) == 1) n = ::read(fds[0], ready, sizeof ready);
  ::close(fds[0]);
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_GT(n, 0) << "the child never got its upload going";

  const std::string key = prefix_ + "killed.bin";
  EXPECT_FALSE(storage_->exists(key).value()) << "a half object is visible";
  auto uploads = storage_->listMultipartUploads(prefix_);
  ASSERT_TRUE(uploads.ok()) << uploads.error().message;
  ASSERT_EQ(uploads.value().size(), 1u) << "the killed writer's upload should be pending";
  EXPECT_EQ(uploads.value()[0].first, key);

  // What a re-run or the cleanup pass does: removePrefix takes the orphan too.
  auto removed = storage_->removePrefix(prefix_);
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_EQ(removed.value(), 0u);
  uploads = storage_->listMultipartUploads(prefix_);
  ASSERT_TRUE(uploads.ok());
  EXPECT_TRUE(uploads.value().empty()) << "orphaned multipart upload left";
  EXPECT_FALSE(storage_->exists(key).value());
}

}  // namespace
