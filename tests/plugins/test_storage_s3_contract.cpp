// The Storage behavioural contract, run against both stores from the same code:
// local disk (a temp dir) and S3 (the test server; see tests/s3/server.py). What a
// caller of vessel::Storage may rely on whatever the plugin: atomic visibility on
// commit, idempotent remove, ordered paginated listing, key validation, ranges,
// error codes that name the operation and the key.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "local_storage.hpp"
#include "s3_storage.hpp"
#include "vessel/storage.hpp"

namespace {

namespace fs = std::filesystem;
using vessel::ErrorCode;
using vessel::Storage;

std::span<const std::byte> bytes(std::string_view text) {
  return {reinterpret_cast<const std::byte*>(text.data()), text.size()};
}

std::string readAll(vessel::ObjectReader& reader, std::size_t chunk) {
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

class StorageContract : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "local") {
      const char* tmpdir = std::getenv("TMPDIR");
      std::string pattern = std::string(tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp") +
                            "/vessel-contract-XXXXXX";
      ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
      dir_ = pattern;
    } else {
      const char* raw = std::getenv("VESSEL_TEST_S3");
      if (raw == nullptr || *raw == '\0') GTEST_SKIP() << "VESSEL_TEST_S3 is not set";
      const auto info = nlohmann::json::parse(raw);
      s3_.endpoint = info["endpoint"];
      s3_.region = info["region"];
      s3_.bucket = info["bucket"];
      s3_.access_key_id = info["access_key_id"];
      s3_.secret_access_key = info["secret_access_key"];
      s3_.path_style = true;
      // One shared bucket: each test works below its own namespace.
      ns_ = std::string(::testing::UnitTest::GetInstance()->current_test_info()->name());
      std::replace(ns_.begin(), ns_.end(), '/', '-');
      ns_ += "-" + std::to_string(::getpid()) + "/";
    }
    storage_ = make();
    ASSERT_NE(storage_, nullptr);
  }

  /// A new store instance over the same disk directory or bucket.
  std::unique_ptr<Storage> make() {
    auto made = GetParam() == "local" ? vessel::plugins::makeLocalStorage(dir_ / "root")
                                      : vessel::plugins::makeS3Storage(s3_);
    EXPECT_TRUE(made.ok()) << made.error().message;
    return made.ok() ? std::move(made).value() : nullptr;
  }

  void TearDown() override {
    if (storage_ && !ns_.empty()) (void)storage_->removePrefix(ns_);
    storage_.reset();
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }

  std::string k(std::string_view key) const { return ns_ + std::string(key); }

  void put(std::string_view key, std::string_view content) {
    auto done = storage_->put(k(key), bytes(content), "application/octet-stream");
    ASSERT_TRUE(done.ok()) << done.error().message;
  }

  std::string get(std::string_view key) {
    auto data = storage_->getAll(k(key));
    EXPECT_TRUE(data.ok()) << data.error().message;
    if (!data.ok()) return {};
    return std::string(reinterpret_cast<const char*>(data.value().data()), data.value().size());
  }

  /// Keys under `prefix` relative to the test's namespace.
  std::vector<std::string> listKeys(std::string_view prefix) {
    std::vector<std::string> keys;
    auto page = storage_->list(k(prefix), "", 100000);
    EXPECT_TRUE(page.ok()) << page.error().message;
    if (page.ok()) {
      for (const auto& object : page.value().objects) keys.push_back(object.key.substr(ns_.size()));
    }
    return keys;
  }

  fs::path dir_;
  vessel::plugins::S3Options s3_;
  std::string ns_;
  std::unique_ptr<Storage> storage_;
};

TEST_P(StorageContract, PutGetOverwrite) {
  const std::string binary("\0\x01\xff payload \n\0", 13);
  put("top.txt", "hello");
  put("a/b/c/d.ts", binary);
  put("empty", "");
  EXPECT_EQ(get("top.txt"), "hello");
  EXPECT_EQ(get("a/b/c/d.ts"), binary);
  EXPECT_EQ(get("empty"), "");
  put("top.txt", "replaced");
  EXPECT_EQ(get("top.txt"), "replaced");
  EXPECT_EQ(listKeys(""), (std::vector<std::string>{"a/b/c/d.ts", "empty", "top.txt"}));
}

TEST_P(StorageContract, InvalidKeysAreRefusedNamingOperationAndKey) {
  for (const std::string key : {"/etc/passwd", "../escape", "a/../../b", "a//b", ""}) {
    auto done = storage_->put(key, bytes("x"), "");
    ASSERT_FALSE(done.ok()) << key;
    EXPECT_EQ(done.error().code, ErrorCode::kInvalidArgument) << key;
    EXPECT_NE(done.error().message.find("put '" + key + "'"), std::string::npos)
        << done.error().message;
    EXPECT_EQ(storage_->exists(key).ok(), false) << key;
    EXPECT_FALSE(storage_->openWriter(key, "").ok()) << key;
    EXPECT_FALSE(storage_->openReader(key).ok()) << key;
    EXPECT_FALSE(storage_->stat(key).ok()) << key;
    EXPECT_FALSE(storage_->remove(key).ok()) << key;
  }
}

TEST_P(StorageContract, WriterCommitMakesVisible) {
  auto opened = storage_->openWriter(k("seg/x.ts"), "video/mp2t");
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  auto& writer = *opened.value();
  ASSERT_TRUE(writer.write(bytes("part1-")).ok());
  ASSERT_TRUE(writer.write(bytes("part2")).ok());
  EXPECT_EQ(writer.bytesWritten(), 11u);
  EXPECT_FALSE(storage_->exists(k("seg/x.ts")).value());
  EXPECT_TRUE(listKeys("").empty());
  ASSERT_TRUE(writer.commit().ok());
  EXPECT_EQ(get("seg/x.ts"), "part1-part2");
  EXPECT_FALSE(writer.write(bytes("more")).ok());
  EXPECT_FALSE(writer.commit().ok());
  opened.value().reset();
  EXPECT_EQ(get("seg/x.ts"), "part1-part2");
}

TEST_P(StorageContract, WriterAbortAndDestructorLeaveThePreviousObject) {
  put("seg/old.ts", "old");
  {
    auto opened = storage_->openWriter(k("seg/old.ts"), "");
    ASSERT_TRUE(opened.ok());
    ASSERT_TRUE(opened.value()->write(bytes("new content")).ok());
    opened.value()->abort();
    EXPECT_FALSE(opened.value()->commit().ok());
    EXPECT_FALSE(opened.value()->write(bytes("x")).ok());
  }
  {
    auto opened = storage_->openWriter(k("seg/never.ts"), "");
    ASSERT_TRUE(opened.ok());
    ASSERT_TRUE(opened.value()->write(bytes("discard me")).ok());
  }
  EXPECT_EQ(get("seg/old.ts"), "old");
  EXPECT_FALSE(storage_->exists(k("seg/never.ts")).value());
  EXPECT_EQ(listKeys(""), (std::vector<std::string>{"seg/old.ts"}));
}

TEST_P(StorageContract, WriterOutlivesStorage) {
  auto opened = storage_->openWriter(k("late.ts"), "");
  ASSERT_TRUE(opened.ok());
  storage_ = make();  // the store that made the writer is gone
  ASSERT_TRUE(opened.value()->write(bytes("still fine")).ok());
  ASSERT_TRUE(opened.value()->commit().ok());
  EXPECT_EQ(get("late.ts"), "still fine");
}

TEST_P(StorageContract, ReaderOffsetAndLength) {
  put("r", "0123456789");
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
                                         {0, 0, ""}}) {
    auto reader = storage_->openReader(k("r"), c.offset, c.length);
    ASSERT_TRUE(reader.ok()) << reader.error().message;
    EXPECT_EQ(reader.value()->sizeBytes(), c.expected.size()) << "offset " << c.offset;
    EXPECT_EQ(readAll(*reader.value(), 1), c.expected) << "offset " << c.offset;
  }
  auto past = storage_->openReader(k("r"), 11);
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(past.error().code, ErrorCode::kInvalidArgument);
  auto missing = storage_->openReader(k("nope"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message.find("'" + k("nope") + "'"), std::string::npos);
}

TEST_P(StorageContract, StatAndExists) {
  put("dir/obj", std::string(1234, 'z'));
  auto info = storage_->stat(k("dir/obj"));
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info.value().key, k("dir/obj"));
  EXPECT_EQ(info.value().size_bytes, 1234u);
  EXPECT_GT(info.value().modified_unix_ms, 1'600'000'000'000);
  auto missing = storage_->stat(k("dir/none"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  auto prefix = storage_->stat(k("dir"));
  ASSERT_FALSE(prefix.ok());
  EXPECT_EQ(prefix.error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(storage_->exists(k("dir/obj")).value());
  EXPECT_FALSE(storage_->exists(k("dir")).value());
  EXPECT_FALSE(storage_->exists(k("q/r/s")).value());
  auto bad = storage_->exists("../x");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(bad.error().message.find("exists '../x'"), std::string::npos);
}

TEST_P(StorageContract, RemoveIsIdempotent) {
  put("a/b/c/x", "1");
  put("a/keep", "2");
  ASSERT_TRUE(storage_->remove(k("a/b/c/x")).ok());
  EXPECT_FALSE(storage_->exists(k("a/b/c/x")).value());
  ASSERT_TRUE(storage_->remove(k("a/b/c/x")).ok());
  ASSERT_TRUE(storage_->remove(k("never/was/here")).ok());
  ASSERT_TRUE(storage_->remove(k("a")).ok());  // a prefix, not an object: no-op
  EXPECT_EQ(get("a/keep"), "2");
  EXPECT_EQ(listKeys(""), (std::vector<std::string>{"a/keep"}));
}

TEST_P(StorageContract, ListPaginatesInByteOrder) {
  // '-' and '.' sort before '/': byte order differs from a directory walk.
  std::vector<std::string> keys = {"a!",   "a-b", "a.x",  "a/b", "a/c/d", "ab",    "b/1",
                                   "b/10", "b/2", "b-/q", "z",   "a/c-e", "a/c/d2"};
  for (const auto& key : keys) put(key, key);
  std::sort(keys.begin(), keys.end());
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  for (;;) {
    auto page = storage_->list(ns_, token, 3);
    ASSERT_TRUE(page.ok()) << page.error().message;
    ++pages;
    ASSERT_LE(page.value().objects.size(), 3u);
    for (const auto& object : page.value().objects) {
      seen.push_back(object.key.substr(ns_.size()));
      EXPECT_EQ(object.size_bytes, object.key.size() - ns_.size());
    }
    if (page.value().next_token.empty()) break;
    token = page.value().next_token;
    ASSERT_LT(pages, 20);
  }
  EXPECT_EQ(seen, keys);
  EXPECT_EQ(pages, 5);
  EXPECT_EQ(listKeys("a/"), (std::vector<std::string>{"a/b", "a/c-e", "a/c/d", "a/c/d2"}));
  EXPECT_EQ(listKeys("a/c"), (std::vector<std::string>{"a/c-e", "a/c/d", "a/c/d2"}));
  EXPECT_EQ(listKeys("b/1"), (std::vector<std::string>{"b/1", "b/10"}));
  EXPECT_TRUE(listKeys("nothing/").empty());
}

TEST_P(StorageContract, ListRejectsBadArguments) {
  for (const std::string prefix : {"/a", "../", "a//", "a\\b"}) {
    auto page = storage_->list(prefix, "", 10);
    ASSERT_FALSE(page.ok()) << prefix;
    EXPECT_EQ(page.error().code, ErrorCode::kInvalidArgument) << prefix;
  }
  EXPECT_FALSE(storage_->list("", "", 0).ok());
}

TEST_P(StorageContract, RemovePrefixCountsAndLeavesSiblings) {
  for (const auto* key : {"a/b/1", "a/b/2", "a/b/c/3", "a/bc", "a/b-x", "a/x", "b/1"}) {
    put(key, "v");
  }
  auto removed = storage_->removePrefix(k("a/b/"));
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_EQ(removed.value(), 3u);
  EXPECT_EQ(listKeys(""), (std::vector<std::string>{"a/b-x", "a/bc", "a/x", "b/1"}));
  auto none = storage_->removePrefix(k("nothing/"));
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none.value(), 0u);
  for (const std::string prefix : {"", "/", "../", "a//", "/etc/"}) {
    auto refused = storage_->removePrefix(prefix);
    ASSERT_FALSE(refused.ok()) << prefix;
    EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument) << prefix;
  }
}

TEST_P(StorageContract, ConcurrentPutAndRemove) {
  std::mutex mutex;
  std::vector<std::string> failures;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        const std::string key = k("shared/dir/t" + std::to_string(t) + "_" + std::to_string(i));
        auto put = storage_->put(key, bytes("x"), "");
        auto removed = storage_->remove(key);
        const std::lock_guard lock(mutex);
        if (!put.ok()) failures.push_back(put.error().message);
        if (!removed.ok()) failures.push_back(removed.error().message);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_TRUE(failures.empty()) << failures.size() << " failures, first: " << failures.front();
  EXPECT_TRUE(listKeys("").empty());
}

INSTANTIATE_TEST_SUITE_P(Stores, StorageContract, ::testing::Values("local", "s3"),
                         [](const auto& info) { return info.param; });

}  // namespace
