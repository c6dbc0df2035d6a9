// runCleanupPass against a real PostgreSQL and a store that can fail on purpose:
// the right uploads go (files first, then rows), a storage error keeps the row,
// a dry run changes nothing, healthy uploads are untouched.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <mutex>
#include <pqxx/pqxx>
#include <set>

#include "vessel/cleanup.hpp"
#include "vessel/database.hpp"
#include "vessel/jobs.hpp"

namespace fs = std::filesystem;
using namespace vessel;

namespace {

// In-memory store; removePrefix fails for prefixes in `broken`.
class FlakyStorage final : public Storage {
 public:
  std::map<std::string, std::string> objects;
  std::set<std::string> broken;

  Result<void> put(std::string_view key, std::span<const std::byte> data,
                   std::string_view) noexcept override {
    objects[std::string(key)] =
        std::string(reinterpret_cast<const char*>(data.data()), data.size());
    return {};
  }
  Result<std::unique_ptr<ObjectWriter>> openWriter(std::string_view,
                                                   std::string_view) noexcept override {
    return makeError(ErrorCode::kInternal, "unused");
  }
  Result<std::unique_ptr<ObjectReader>> openReader(std::string_view, std::uint64_t,
                                                   std::optional<std::uint64_t>) noexcept override {
    return makeError(ErrorCode::kInternal, "unused");
  }
  Result<ObjectInfo> stat(std::string_view) noexcept override {
    return makeError(ErrorCode::kNotFound, "x");
  }
  Result<bool> exists(std::string_view key) noexcept override {
    return objects.count(std::string(key)) > 0;
  }
  Result<void> remove(std::string_view key) noexcept override {
    objects.erase(std::string(key));
    return {};
  }
  Result<ListPage> list(std::string_view prefix, std::string_view, std::size_t) noexcept override {
    ListPage page;
    for (const auto& [k, v] : objects) {
      if (k.rfind(prefix, 0) == 0) page.objects.push_back({k, v.size(), 0});
    }
    return page;
  }
  Result<std::uint64_t> removePrefix(std::string_view prefix) noexcept override {
    if (broken.count(std::string(prefix))) {
      return makeError(ErrorCode::kUnavailable, "store timeout (test) for " + std::string(prefix));
    }
    std::uint64_t n = 0;
    for (auto it = objects.begin(); it != objects.end();) {
      if (it->first.rfind(prefix, 0) == 0) {
        it = objects.erase(it);
        ++n;
      } else {
        ++it;
      }
    }
    return n;
  }
  std::optional<std::string> localPath(std::string_view) const noexcept override {
    return std::nullopt;
  }
};

class CleanupTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char pattern[] = "/tmp/vessel-cleanup-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = new fs::path(pattern);
    fs::permissions(*dir_, fs::perms(0755));
    EmbeddedPostgres::Options options;
    options.data_dir = *dir_;
    auto pg = EmbeddedPostgres::start(options);
    ASSERT_TRUE(pg.ok()) << pg.error().message;
    pg_ = std::move(pg).value().release();
    ASSERT_TRUE(migrateDatabase(pg_->connectionString()).ok());
  }
  static void TearDownTestSuite() {
    delete pg_;
    std::error_code ec;
    if (dir_) fs::remove_all(*dir_, ec);
    delete dir_;
  }
  void SetUp() override {
    sql("TRUNCATE users, uploads, jobs, job_attempts CASCADE");
    auto s = JobStore::connect(pg_->connectionString());
    ASSERT_TRUE(s.ok()) << s.error().message;
    store_ = std::move(s).value();
    auto u = store_->createUser("c@example.com", "");
    ASSERT_TRUE(u.ok());
    user_ = u.value();
  }
  static void sql(const std::string& q) {
    pqxx::connection c(pg_->connectionString());
    pqxx::nontransaction tx(c);
    tx.exec(q);
  }
  // An upload in `status`, `age_h` hours old, with an original and one segment stored.
  std::string upload(const std::string& status, int age_h) {
    auto up = store_->createUpload({user_, "f.mp3", "audio/mpeg", 10});
    EXPECT_TRUE(up.ok());
    const std::string id = up.value().id;
    sql("UPDATE uploads SET status = '" + status + "', updated_at = now() - interval '" +
        std::to_string(age_h) + " hours' WHERE id = '" + id + "'");
    const std::string prefix = uploadPrefix(user_, id);
    storage_.objects[prefix + "original"] = "o";
    storage_.objects[prefix + "64k/segment_000.ts"] = "s";
    return id;
  }
  bool rowExists(const std::string& id) {
    auto u = store_->getUpload(id);
    return u.ok() && u.value().has_value();
  }
  std::size_t objectsOf(const std::string& id) {
    std::size_t n = 0;
    for (const auto& [k, v] : storage_.objects) n += k.rfind(uploadPrefix(user_, id), 0) == 0;
    return n;
  }

  static inline fs::path* dir_ = nullptr;
  static inline EmbeddedPostgres* pg_ = nullptr;
  std::unique_ptr<JobStore> store_;
  std::string user_;
  FlakyStorage storage_;
};

TEST_F(CleanupTest, DeletesFailedAndStaleKeepsHealthyAndKeepsRowOnStorageError) {
  const auto failed = upload("failed", 0);
  const auto stale = upload("uploading", 9);
  const auto broken = upload("failed", 1);
  const auto fresh = upload("uploading", 1);
  const auto ready = upload("ready", 48);
  storage_.broken.insert(uploadPrefix(user_, broken));

  CleanupOptions dry;
  dry.dry_run = true;
  dry.batch_size = 1;  // forces several batches
  auto d = runCleanupPass(*store_, storage_, dry);
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d.value().found, 3u);
  EXPECT_EQ(d.value().deleted_objects, 6u);
  EXPECT_EQ(d.value().deleted_rows, 0u);
  for (const auto& id : {failed, stale, broken, fresh, ready}) {
    EXPECT_TRUE(rowExists(id));
    EXPECT_EQ(objectsOf(id), 2u) << "dry run deleted files of " << id;
  }

  CleanupOptions real;
  real.batch_size = 2;
  auto r = runCleanupPass(*store_, storage_, real);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value().found, 3u);
  EXPECT_EQ(r.value().deleted_rows, 2u);
  EXPECT_EQ(r.value().deleted_objects, 4u);
  EXPECT_EQ(r.value().errors, 1u);
  EXPECT_FALSE(rowExists(failed));
  EXPECT_FALSE(rowExists(stale));
  EXPECT_EQ(objectsOf(failed), 0u);
  EXPECT_EQ(objectsOf(stale), 0u);
  EXPECT_TRUE(rowExists(broken)) << "a storage error must keep the row for the next pass";
  EXPECT_EQ(objectsOf(broken), 2u);
  EXPECT_TRUE(rowExists(fresh));
  EXPECT_TRUE(rowExists(ready));
  EXPECT_EQ(objectsOf(fresh) + objectsOf(ready), 4u);

  // Next pass, storage healthy again: the kept one goes.
  storage_.broken.clear();
  auto again = runCleanupPass(*store_, storage_, real);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.value().deleted_rows, 1u);
  EXPECT_FALSE(rowExists(broken));
}

TEST_F(CleanupTest, StaleWithALiveLeaseIsLeftAlone) {
  const auto busy = upload("uploading", 0);
  ASSERT_TRUE(store_->enqueue(busy, "hls-aac").ok());
  auto claimed = store_->claim("worker-x");
  ASSERT_TRUE(claimed.ok() && claimed.value());
  sql("UPDATE uploads SET updated_at = now() - interval '20 hours' WHERE id = '" + busy + "'");
  auto r = runCleanupPass(*store_, storage_, {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value().found, 0u);
  EXPECT_TRUE(rowExists(busy));
}

TEST_F(CleanupTest, OnlyOnePassAtATime) {
  auto other = JobStore::connect(pg_->connectionString());
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(other.value()->tryLockCleanup().value());
  upload("failed", 0);
  auto r = runCleanupPass(*store_, storage_, {});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.value().skipped);
  EXPECT_EQ(r.value().deleted_rows, 0u);
  ASSERT_TRUE(other.value()->unlockCleanup().ok());
}

}  // namespace
