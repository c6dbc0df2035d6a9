// Unit tests for the local storage plugin's store (LocalStorage) and the shared key rule.
// Each test gets a fresh temp directory: <tmp>/root is the store, <tmp>/outside is
// where symlink attacks point.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "local_storage.hpp"
#include "vessel/storage.hpp"

namespace {

namespace fs = std::filesystem;
using vessel::ErrorCode;
using vessel::isValidKey;
using vessel::Storage;
using vessel::plugins::LocalStorageOptions;
using vessel::plugins::makeLocalStorage;

std::vector<std::byte> bytes(std::string_view text) {
  std::vector<std::byte> out(text.size());
  std::transform(text.begin(), text.end(), out.begin(),
                 [](char c) { return static_cast<std::byte>(c); });
  return out;
}

std::string text(const std::vector<std::byte>& data) {
  std::string out(data.size(), '\0');
  std::transform(data.begin(), data.end(), out.begin(),
                 [](std::byte b) { return static_cast<char>(b); });
  return out;
}

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void writeFile(const fs::path& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

/// Every entry below `dir` (hidden ones included, symlinks not followed), relative,
/// directories with a trailing '/'.
std::set<std::string> allEntries(const fs::path& dir) {
  std::set<std::string> out;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    std::string rel = fs::relative(entry.path(), dir).string();
    if (entry.is_directory() && !entry.is_symlink()) rel += '/';
    out.insert(rel);
  }
  return out;
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

class LocalStorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmpdir = std::getenv("TMPDIR");
    std::string pattern = std::string(tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp") +
                          "/vessel-storage-local-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    base_ = pattern;
    root_ = base_ / "root";
    outside_ = base_ / "outside";
    fs::create_directories(outside_);
    auto made = makeLocalStorage(root_);
    ASSERT_TRUE(made.ok()) << made.error().message;
    storage_ = std::move(made).value();
  }

  void TearDown() override {
    storage_.reset();
    std::error_code ec;
    fs::permissions(root_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(base_, ec);
  }

  void put(std::string_view key, std::string_view content) {
    auto done = storage_->put(key, bytes(content), "application/octet-stream");
    ASSERT_TRUE(done.ok()) << done.error().message;
  }

  std::string get(std::string_view key) {
    auto data = storage_->getAll(key);
    EXPECT_TRUE(data.ok()) << data.error().message;
    return data.ok() ? text(data.value()) : std::string();
  }

  std::vector<std::string> listKeys(std::string_view prefix) {
    std::vector<std::string> keys;
    auto page = storage_->list(prefix, "", 100000);
    EXPECT_TRUE(page.ok()) << page.error().message;
    if (page.ok()) {
      for (const auto& object : page.value().objects) keys.push_back(object.key);
    }
    return keys;
  }

  fs::path base_;
  fs::path root_;
  fs::path outside_;
  std::unique_ptr<Storage> storage_;
};

// --- the key rule -----------------------------------------------------------

TEST(IsValidKey, Table) {
  struct Case {
    std::string key;
    bool valid;
  };
  const std::vector<Case> cases = {
      {"a", true},
      {"a/b/c.ts", true},
      {"u1/3f0c/128k/segment_000.ts", true},
      {"with space/and more.ts", true},
      {"unicodé/音楽/🎵.ts", true},
      {".hidden", true},
      {"a/..b/c..", true},
      {"...", true},
      {std::string(1024, 'x'), true},
      {"", false},
      {"/abs", false},
      {"/", false},
      {"..", false},
      {".", false},
      {"../a", false},
      {"a/..", false},
      {"a/../b", false},
      {"./a", false},
      {"a/./b", false},
      {"a//b", false},
      {"a\\b", false},
      {std::string("a\0b", 3), false},
      {"trailing/", false},
      {std::string(1025, 'x'), false},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(isValidKey(c.key), c.valid) << "key '" << c.key << "' (" << c.key.size() << " bytes)";
  }
}

TEST(IsLocalTempName, MatchesOnlyOurPattern) {
  using vessel::plugins::isLocalTempName;
  EXPECT_TRUE(isLocalTempName(".seg.ts.tmp.0123456789abcdef"));
  EXPECT_FALSE(isLocalTempName("seg.ts.tmp.0123456789abcdef"));
  EXPECT_FALSE(isLocalTempName(".seg.ts.tmp.0123"));
  EXPECT_FALSE(isLocalTempName(".seg.ts.tmp.0123456789ABCDEF"));
  EXPECT_FALSE(isLocalTempName(".hidden"));
}

// --- put / get ----------------------------------------------------------------

TEST_F(LocalStorageTest, PutGetRoundtripIncludingNestedKeys) {
  const std::string binary("\0\x01\xff payload \n\0", 13);
  put("top.txt", "hello");
  put("a/b/c/d.ts", binary);
  put("empty", "");

  EXPECT_EQ(get("top.txt"), "hello");
  EXPECT_EQ(get("a/b/c/d.ts"), binary);
  EXPECT_EQ(get("empty"), "");
  EXPECT_EQ(readFile(root_ / "a/b/c/d.ts"), binary);

  put("top.txt", "replaced");  // overwrite is atomic replace
  EXPECT_EQ(get("top.txt"), "replaced");
  EXPECT_EQ(allEntries(root_),
            (std::set<std::string>{"a/", "a/b/", "a/b/c/", "a/b/c/d.ts", "empty", "top.txt"}));
}

TEST_F(LocalStorageTest, DurablePutRoundtrips) {
  LocalStorageOptions options;
  options.durable = true;
  auto made = makeLocalStorage(root_, options);
  ASSERT_TRUE(made.ok()) << made.error().message;
  ASSERT_TRUE(made.value()->put("d/x", bytes("synced"), "").ok());
  auto writer = made.value()->openWriter("d/y", "");
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer.value()->write(bytes("also")).ok());
  ASSERT_TRUE(writer.value()->commit().ok());
  EXPECT_EQ(get("d/x"), "synced");
  EXPECT_EQ(get("d/y"), "also");
}

TEST_F(LocalStorageTest, PutRefusesInvalidKeysWithClearMessage) {
  for (const std::string key : {"/etc/passwd", "../escape", "a/../../b", "a//b", ""}) {
    auto done = storage_->put(key, bytes("x"), "");
    ASSERT_FALSE(done.ok()) << key;
    EXPECT_EQ(done.error().code, ErrorCode::kInvalidArgument) << key;
    EXPECT_NE(done.error().message.find("local storage: put '" + key + "'"), std::string::npos)
        << done.error().message;
  }
  EXPECT_TRUE(fs::is_empty(root_));
  EXPECT_TRUE(fs::is_empty(outside_));
}

TEST_F(LocalStorageTest, TempFileNamesAreReservedKeys) {
  auto done = storage_->put("a/.x.tmp.0123456789abcdef", bytes("x"), "");
  ASSERT_FALSE(done.ok());
  EXPECT_EQ(done.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(LocalStorageTest, PutUnderAnObjectIsAConflict) {
  put("a", "object");
  auto done = storage_->put("a/b", bytes("x"), "");
  ASSERT_FALSE(done.ok());
  EXPECT_EQ(done.error().code, ErrorCode::kAlreadyExists);
  EXPECT_NE(done.error().message.find("'a' is an object"), std::string::npos)
      << done.error().message;

  put("d/e", "x");
  auto over_dir = storage_->put("d", bytes("x"), "");
  ASSERT_FALSE(over_dir.ok());
  EXPECT_EQ(over_dir.error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ(get("d/e"), "x");
}

// --- writers ----------------------------------------------------------------

TEST_F(LocalStorageTest, WriterCommitMakesVisible) {
  auto opened = storage_->openWriter("seg/x.ts", "video/mp2t");
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  auto& writer = *opened.value();
  ASSERT_TRUE(writer.write(bytes("part1-")).ok());
  ASSERT_TRUE(writer.write(bytes("part2")).ok());
  EXPECT_EQ(writer.bytesWritten(), 11u);

  // Not visible before commit; the temp file exists but is hidden from list().
  EXPECT_FALSE(storage_->exists("seg/x.ts").value());
  EXPECT_TRUE(listKeys("").empty());
  const auto during = allEntries(root_);
  ASSERT_EQ(during.size(), 2u);
  const std::string temp = *std::next(during.begin());
  EXPECT_TRUE(temp.starts_with("seg/.x.ts.tmp.")) << temp;

  ASSERT_TRUE(writer.commit().ok());
  EXPECT_EQ(get("seg/x.ts"), "part1-part2");
  EXPECT_EQ(allEntries(root_), (std::set<std::string>{"seg/", "seg/x.ts"}));

  // A committed writer is finished.
  EXPECT_FALSE(writer.write(bytes("more")).ok());
  EXPECT_FALSE(writer.commit().ok());
  opened.value().reset();
  EXPECT_EQ(get("seg/x.ts"), "part1-part2");
}

TEST_F(LocalStorageTest, WriterAbortLeavesNothing) {
  put("seg/old.ts", "old");
  auto opened = storage_->openWriter("seg/old.ts", "");
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  ASSERT_TRUE(opened.value()->write(bytes("new content")).ok());
  opened.value()->abort();
  EXPECT_FALSE(opened.value()->commit().ok());
  EXPECT_FALSE(opened.value()->write(bytes("x")).ok());
  opened.value().reset();

  EXPECT_EQ(get("seg/old.ts"), "old");  // the previous object is untouched
  EXPECT_EQ(allEntries(root_), (std::set<std::string>{"seg/", "seg/old.ts"}));
}

TEST_F(LocalStorageTest, WriterDestructorWithoutCommitLeavesNothing) {
  {
    auto opened = storage_->openWriter("a/b/never.ts", "");
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    ASSERT_TRUE(opened.value()->write(bytes("discard me")).ok());
  }
  EXPECT_FALSE(storage_->exists("a/b/never.ts").value());
  for (const auto& entry : allEntries(root_)) {
    EXPECT_TRUE(entry.ends_with("/")) << "leftover file: " << entry;
  }
}

TEST_F(LocalStorageTest, WriterOutlivesStorage) {
  auto opened = storage_->openWriter("late.ts", "");
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  storage_.reset();
  ASSERT_TRUE(opened.value()->write(bytes("still fine")).ok());
  ASSERT_TRUE(opened.value()->commit().ok());
  EXPECT_EQ(readFile(root_ / "late.ts"), "still fine");
}

// --- readers, stat, exists ------------------------------------------------------

TEST_F(LocalStorageTest, ReaderOffsetAndLength) {
  put("r", "0123456789");
  struct Case {
    std::uint64_t offset;
    std::optional<std::uint64_t> length;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {0, std::nullopt, "0123456789"},
      {3, 4, "3456"},
      {8, std::nullopt, "89"},
      {7, 100, "789"},
      {10, 5, ""},
      {0, 0, ""},
  };
  for (const auto& c : cases) {
    auto reader = storage_->openReader("r", c.offset, c.length);
    ASSERT_TRUE(reader.ok()) << reader.error().message;
    EXPECT_EQ(reader.value()->sizeBytes(), c.expected.size()) << "offset " << c.offset;
    EXPECT_EQ(readAll(*reader.value(), 1), c.expected) << "offset " << c.offset;
  }
  auto reader = storage_->openReader("r", 2, 5);
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ(readAll(*reader.value(), 4096), "23456");

  auto past = storage_->openReader("r", 11);
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(past.error().code, ErrorCode::kInvalidArgument);

  auto missing = storage_->openReader("nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message.find("'nope'"), std::string::npos);
}

// The media route sends a reader's file with sendfile and builds its ETag from
// what the reader says about the whole file: that must be what stat() says,
// whatever range the reader covers.
TEST_F(LocalStorageTest, ReaderKnowsItsWholeFile) {
  put("seg", "0123456789abcdef");
  auto info = storage_->stat("seg");
  ASSERT_TRUE(info.ok()) << info.error().message;
  auto reader = storage_->openReader("seg", 4, 3);
  ASSERT_TRUE(reader.ok()) << reader.error().message;
  const auto* file = dynamic_cast<const vessel::LocalFileReader*>(reader.value().get());
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(file->fileSize(), 16u);
  EXPECT_EQ(file->fileSize(), info.value().size_bytes);
  EXPECT_EQ(file->modifiedUnixMs(), info.value().modified_unix_ms);
  EXPECT_GT(file->modifiedUnixMs(), 0);
  EXPECT_EQ(file->rangeOffset(), 4u);
  EXPECT_EQ(reader.value()->sizeBytes(), 3u);
  char buf[3];
  ASSERT_EQ(::pread(file->fileDescriptor(), buf, 3, 4), 3);
  EXPECT_EQ(std::string(buf, 3), "456");
}

TEST_F(LocalStorageTest, StatReportsSize) {
  put("dir/obj", std::string(1234, 'z'));
  auto info = storage_->stat("dir/obj");
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info.value().key, "dir/obj");
  EXPECT_EQ(info.value().size_bytes, 1234u);
  EXPECT_GT(info.value().modified_unix_ms, 1'600'000'000'000);

  auto missing = storage_->stat("dir/none");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  auto directory = storage_->stat("dir");  // a prefix, not an object
  ASSERT_FALSE(directory.ok());
  EXPECT_EQ(directory.error().code, ErrorCode::kNotFound);
}

TEST_F(LocalStorageTest, Exists) {
  put("x/y", "1");
  EXPECT_TRUE(storage_->exists("x/y").value());
  EXPECT_FALSE(storage_->exists("x").value());  // a directory is not an object
  EXPECT_FALSE(storage_->exists("x/z").value());
  EXPECT_FALSE(storage_->exists("q/r/s").value());  // missing parents
  EXPECT_FALSE(storage_->exists("x/y/z").value());  // parent is an object
  auto bad = storage_->exists("../x");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(bad.error().message.find("exists '../x'"), std::string::npos);
}

TEST_F(LocalStorageTest, GetAllRefusesObjectsOver64MiB) {
  const fs::path big = root_ / "big";
  writeFile(big, "");
  fs::resize_file(big, 64ull * 1024 * 1024 + 1);  // sparse: costs no disk
  auto data = storage_->getAll("big");
  ASSERT_FALSE(data.ok());
  EXPECT_EQ(data.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(data.error().message.find("'big'"), std::string::npos);
}

// --- remove -------------------------------------------------------------------

TEST_F(LocalStorageTest, RemoveIsIdempotentAndPrunesEmptyDirectories) {
  put("a/b/c/x", "1");
  put("a/keep", "2");
  ASSERT_TRUE(storage_->remove("a/b/c/x").ok());
  EXPECT_FALSE(storage_->exists("a/b/c/x").value());
  EXPECT_EQ(allEntries(root_), (std::set<std::string>{"a/", "a/keep"}));

  ASSERT_TRUE(storage_->remove("a/b/c/x").ok());  // again: still fine
  ASSERT_TRUE(storage_->remove("never/was/here").ok());
  ASSERT_TRUE(storage_->remove("a").ok());  // a directory, not an object: no-op
  EXPECT_EQ(get("a/keep"), "2");

  ASSERT_TRUE(storage_->remove("a/keep").ok());
  EXPECT_TRUE(fs::is_directory(root_));  // the root itself is never pruned
  EXPECT_TRUE(fs::is_empty(root_));
}

TEST_F(LocalStorageTest, RemoveKeepsDirectoriesWithPendingWriters) {
  put("a/b/x", "1");
  auto writer = storage_->openWriter("a/b/y", "");
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(storage_->remove("a/b/x").ok());
  ASSERT_TRUE(writer.value()->write(bytes("y")).ok());
  ASSERT_TRUE(writer.value()->commit().ok());
  EXPECT_EQ(get("a/b/y"), "y");
}

// --- list ---------------------------------------------------------------------

TEST_F(LocalStorageTest, ListPaginatesInLexicographicOrder) {
  // Chosen so that directory order and key order differ: '-' and '.' sort before '/'.
  // (On a local disk "a" cannot be both an object and a directory, so no key "a".)
  std::vector<std::string> keys = {"a!",   "a-b", "a.x",  "a/b", "a/c/d", "ab",    "b/1",
                                   "b/10", "b/2", "b-/q", "z",   "a/c-e", "a/c/d2"};
  for (const auto& key : keys) put(key, key);
  std::sort(keys.begin(), keys.end());

  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  for (;;) {
    auto page = storage_->list("", token, 3);
    ASSERT_TRUE(page.ok()) << page.error().message;
    ++pages;
    ASSERT_LE(page.value().objects.size(), 3u);
    for (const auto& object : page.value().objects) {
      seen.push_back(object.key);
      EXPECT_EQ(object.size_bytes, object.key.size());
    }
    if (page.value().next_token.empty()) break;
    EXPECT_EQ(page.value().next_token, page.value().objects.back().key);
    token = page.value().next_token;
    ASSERT_LT(pages, 20);
  }
  EXPECT_EQ(seen, keys);
  EXPECT_EQ(pages, 5);  // 13 keys, 3 per page

  EXPECT_EQ(listKeys("a/"), (std::vector<std::string>{"a/b", "a/c-e", "a/c/d", "a/c/d2"}));
  EXPECT_EQ(listKeys("a/c"), (std::vector<std::string>{"a/c-e", "a/c/d", "a/c/d2"}));
  EXPECT_EQ(listKeys("b/1"), (std::vector<std::string>{"b/1", "b/10"}));
  EXPECT_EQ(listKeys("a."), (std::vector<std::string>{"a.x"}));
  EXPECT_TRUE(listKeys("nothing/").empty());
  EXPECT_TRUE(listKeys("a/b/").empty());  // a/b is an object, not a directory

  // A prefix and a token together: the page starts strictly after the token.
  auto page = storage_->list("a/", "a/c-e", 2);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page.value().objects.size(), 2u);
  EXPECT_EQ(page.value().objects[0].key, "a/c/d");
  EXPECT_EQ(page.value().objects[1].key, "a/c/d2");
  EXPECT_TRUE(page.value().next_token.empty());
}

TEST_F(LocalStorageTest, ListRejectsBadArguments) {
  for (const std::string prefix : {"/a", "../", "a//", "a\\b"}) {
    auto page = storage_->list(prefix, "", 10);
    ASSERT_FALSE(page.ok()) << prefix;
    EXPECT_EQ(page.error().code, ErrorCode::kInvalidArgument) << prefix;
  }
  EXPECT_FALSE(storage_->list("", "", 0).ok());
  EXPECT_FALSE(storage_->list("", "../x", 10).ok());
}

TEST_F(LocalStorageTest, ListSkipsForeignFiles) {
  put("ok", "1");
  fs::create_directories(root_ / "sub");
  ASSERT_EQ(::mkfifo((root_ / "sub/fifo").c_str(), 0644), 0);
  writeFile(root_ / "sub/.ok.tmp.0123456789abcdef", "stale temp");
  EXPECT_EQ(listKeys(""), (std::vector<std::string>{"ok"}));
}

// --- removePrefix ---------------------------------------------------------------

TEST_F(LocalStorageTest, RemovePrefixCountsAndLeavesSiblings) {
  for (const auto* key : {"a/b/1", "a/b/2", "a/b/c/3", "a/bc", "a/b-x", "a/x", "b/1"}) {
    put(key, "v");
  }
  auto removed = storage_->removePrefix("a/b/");
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_EQ(removed.value(), 3u);
  EXPECT_EQ(listKeys(""), (std::vector<std::string>{"a/b-x", "a/bc", "a/x", "b/1"}));
  EXPECT_FALSE(fs::exists(root_ / "a/b"));

  auto none = storage_->removePrefix("nothing/");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none.value(), 0u);

  // More than one internal batch.
  for (int i = 0; i < 1205; ++i) put("many/" + std::to_string(i), "");
  auto many = storage_->removePrefix("many/");
  ASSERT_TRUE(many.ok()) << many.error().message;
  EXPECT_EQ(many.value(), 1205u);
  EXPECT_FALSE(fs::exists(root_ / "many"));
}

TEST_F(LocalStorageTest, RemovePrefixRefusesInvalidOrEmptyPrefixes) {
  put("keep", "1");
  for (const std::string prefix : {"", "/", "../", "a//", "/etc/"}) {
    auto removed = storage_->removePrefix(prefix);
    ASSERT_FALSE(removed.ok()) << prefix;
    EXPECT_EQ(removed.error().code, ErrorCode::kInvalidArgument) << prefix;
  }
  EXPECT_EQ(get("keep"), "1");
}

// --- symlinks ---------------------------------------------------------------------

TEST_F(LocalStorageTest, SymlinkedDirectoryIsRefused) {
  writeFile(outside_ / "secret", "outside data");
  fs::create_directory_symlink(outside_, root_ / "evil");
  fs::create_directories(root_ / "a");
  fs::create_directory_symlink(outside_, root_ / "a/evil");
  const auto before = allEntries(outside_);

  for (const std::string key : {"evil/x", "evil/secret", "a/evil/deep/x"}) {
    auto done = storage_->put(key, bytes("pwned"), "");
    ASSERT_FALSE(done.ok()) << key;
    EXPECT_EQ(done.error().code, ErrorCode::kPermissionDenied) << key;
    EXPECT_NE(done.error().message.find("'" + key + "'"), std::string::npos)
        << done.error().message;
    EXPECT_NE(done.error().message.find("symbolic link"), std::string::npos)
        << done.error().message;

    auto writer = storage_->openWriter(key, "");
    ASSERT_FALSE(writer.ok()) << key;
    EXPECT_EQ(writer.error().code, ErrorCode::kPermissionDenied);
  }
  auto read = storage_->getAll("evil/secret");
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.error().code, ErrorCode::kPermissionDenied);
  EXPECT_FALSE(storage_->stat("evil/secret").ok());
  EXPECT_FALSE(storage_->exists("evil/secret").ok());
  EXPECT_FALSE(storage_->remove("evil/secret").ok());
  EXPECT_FALSE(storage_->list("evil/", "", 10).ok());
  EXPECT_FALSE(storage_->removePrefix("evil/").ok());
  EXPECT_TRUE(listKeys("").empty());  // links are not walked by list either

  EXPECT_EQ(allEntries(outside_), before);
  EXPECT_EQ(readFile(outside_ / "secret"), "outside data");
}

TEST_F(LocalStorageTest, SymlinkedFileIsRefused) {
  writeFile(outside_ / "target", "outside data");
  fs::create_symlink(outside_ / "target", root_ / "f");
  const auto before = allEntries(outside_);

  auto done = storage_->put("f", bytes("pwned"), "");
  ASSERT_FALSE(done.ok());
  EXPECT_EQ(done.error().code, ErrorCode::kPermissionDenied);
  EXPECT_NE(done.error().message.find("'f'"), std::string::npos);
  auto writer = storage_->openWriter("f", "");
  ASSERT_FALSE(writer.ok());
  EXPECT_EQ(writer.error().code, ErrorCode::kPermissionDenied);

  auto reader = storage_->openReader("f");
  ASSERT_FALSE(reader.ok());
  EXPECT_EQ(reader.error().code, ErrorCode::kPermissionDenied);
  EXPECT_FALSE(storage_->getAll("f").ok());
  EXPECT_FALSE(storage_->stat("f").ok());
  EXPECT_FALSE(storage_->remove("f").ok());
  EXPECT_TRUE(listKeys("").empty());

  EXPECT_TRUE(fs::is_symlink(root_ / "f"));
  EXPECT_EQ(allEntries(outside_), before);
  EXPECT_EQ(readFile(outside_ / "target"), "outside data");
}

// --- roots ------------------------------------------------------------------------

TEST_F(LocalStorageTest, RootThatIsARegularFileIsAClearError) {
  const fs::path file = base_ / "file";
  writeFile(file, "not a dir");
  for (const fs::path& root : {file, file / "sub"}) {
    auto made = makeLocalStorage(root);
    ASSERT_FALSE(made.ok()) << root;
    EXPECT_EQ(made.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(made.error().message.find(file.string()), std::string::npos) << made.error().message;
    EXPECT_NE(made.error().message.find("not a directory"), std::string::npos)
        << made.error().message;
  }
}

TEST_F(LocalStorageTest, MissingRootIsCreatedOrRefused) {
  LocalStorageOptions no_create;
  no_create.create_root = false;
  auto refused = makeLocalStorage(base_ / "missing", no_create);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kNotFound);
  EXPECT_FALSE(fs::exists(base_ / "missing"));

  auto created = makeLocalStorage(base_ / "new/deep/root");
  ASSERT_TRUE(created.ok()) << created.error().message;
  EXPECT_TRUE(fs::is_directory(base_ / "new/deep/root"));
}

TEST_F(LocalStorageTest, UnwritableRootIsPermissionDenied) {
  if (::geteuid() == 0) GTEST_SKIP() << "root bypasses directory permissions";
  fs::permissions(root_, fs::perms::owner_read | fs::perms::owner_exec);
  auto done = storage_->put("x", bytes("1"), "");
  ASSERT_FALSE(done.ok());
  EXPECT_EQ(done.error().code, ErrorCode::kPermissionDenied);
  EXPECT_NE(done.error().message.find("put 'x'"), std::string::npos);
}

TEST_F(LocalStorageTest, LocalPath) {
  const auto* local = dynamic_cast<vessel::plugins::LocalStorage*>(storage_.get());
  ASSERT_NE(local, nullptr);
  EXPECT_TRUE(fs::path(local->root()).is_absolute());
  EXPECT_EQ(storage_->localPath("a/b.ts"), local->root() + "/a/b.ts");  // no existence check
  EXPECT_EQ(storage_->localPath("../x"), std::nullopt);
  put("p/q", "data");
  EXPECT_EQ(readFile(*storage_->localPath("p/q")), "data");
}

// --- concurrency --------------------------------------------------------------------

// remove() prunes empty directories while put() may be walking into them.
TEST_F(LocalStorageTest, ConcurrentPutAndRemoveInOneDirectory) {
  std::mutex mutex;
  std::vector<std::string> failures;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const std::string key = "shared/dir/t" + std::to_string(t) + "_" + std::to_string(i);
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

}  // namespace

// A writer killed mid-object (kill -9) leaves a temp file; removing the whole
// prefix must take it too, so a re-run or a cleanup leaves nothing behind.
TEST_F(LocalStorageTest, RemovePrefixSweepsTempFilesOfDeadWriters) {
  put("u/up/128k/segment_000.ts", "seg");
  put("u/up/original", "orig");
  fs::create_directories(root_ / "u" / "up" / "64k");
  std::ofstream(root_ / "u" / "up" / "128k" / ".segment_001.ts.tmp.0123456789abcdef") << "partial";
  std::ofstream(root_ / "u" / "up" / "64k" / ".segment_000.ts.tmp.fedcba9876543210") << "partial";
  auto removed = storage_->removePrefix("u/up/128k/");
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_EQ(removed.value(), 1u);
  EXPECT_FALSE(fs::exists(root_ / "u" / "up" / "128k")) << "temp file or directory left";
  EXPECT_TRUE(fs::exists(root_ / "u" / "up" / "64k" / ".segment_000.ts.tmp.fedcba9876543210"))
      << "a sibling prefix must be untouched";
  EXPECT_EQ(get("u/up/original"), "orig");
  ASSERT_TRUE(storage_->removePrefix("u/up/").ok());
  EXPECT_FALSE(fs::exists(root_ / "u")) << "everything under u/up/ and the emptied parents go";
}
