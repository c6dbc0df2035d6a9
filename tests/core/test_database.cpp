// EmbeddedPostgres and migrateDatabase against a real private cluster: each
// test gets its own data dir under /tmp and stops its server before removing it.
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <pqxx/pqxx>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "vessel/database.hpp"

namespace vessel {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string queryValue(const std::string& conninfo, const std::string& sql) {
  pqxx::connection conn(conninfo);
  pqxx::nontransaction tx(conn);
  const pqxx::result r = tx.exec(sql);
  if (r.empty() || r[0][0].is_null()) return "<null>";
  return r[0][0].c_str();
}

void execute(const std::string& conninfo, const std::string& sql) {
  pqxx::connection conn(conninfo);
  pqxx::nontransaction tx(conn);
  tx.exec(sql);
}

bool canConnect(const std::string& conninfo) {
  try {
    pqxx::connection conn(conninfo + " connect_timeout=3");
    return conn.is_open();
  } catch (const std::exception&) {
    return false;
  }
}

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

class DatabaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/vessel-db-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    // mkdtemp makes it 0700; as root the cluster runs as `vessel` and must enter it.
    fs::permissions(dir_, fs::perms(0755));
    options_.data_dir = dir_;
  }

  void TearDown() override {
    pg_.reset();
    // A failed assertion may leave a server we no longer own: stop it anyway.
    std::ifstream pid_file(dir_ / "postgres" / "postmaster.pid");
    long pid = 0;
    if (pid_file >> pid && pid > 0 && ::kill(pid_t(pid), SIGINT) == 0) {
      const auto deadline = Clock::now() + std::chrono::seconds(20);
      while (::kill(pid_t(pid), 0) == 0 && Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::unique_ptr<EmbeddedPostgres> startOrFail() {
    auto started = EmbeddedPostgres::start(options_);
    EXPECT_TRUE(started.ok()) << (started.ok() ? "" : started.error().message);
    if (!started.ok()) return nullptr;
    return std::move(started).value();
  }

  fs::path dir_;
  EmbeddedPostgres::Options options_;
  std::unique_ptr<EmbeddedPostgres> pg_;
};

TEST_F(DatabaseTest, StartsFromNothingOnAPrivateSocketOnly) {
  const auto t0 = Clock::now();
  pg_ = startOrFail();
  const double elapsed = secondsSince(t0);
  ASSERT_TRUE(pg_);
  std::cout << "[ timing ] initdb + start + CREATE DATABASE: " << elapsed << " s\n";

  EXPECT_TRUE(pg_->owned());
  const std::string conninfo = pg_->connectionString();
  EXPECT_NE(conninfo.find("host=" + (dir_ / "run").string()), std::string::npos) << conninfo;
  EXPECT_NE(conninfo.find("port=5432"), std::string::npos) << conninfo;
  EXPECT_NE(conninfo.find("dbname=vessel"), std::string::npos) << conninfo;
  EXPECT_TRUE(fs::exists(dir_ / "postgres" / "PG_VERSION"));
  EXPECT_TRUE(fs::is_socket(dir_ / "run" / ".s.PGSQL.5432"));

  EXPECT_EQ(queryValue(conninfo, "SELECT 1"), "1");
  EXPECT_EQ(queryValue(conninfo, "SELECT current_database()"), "vessel");
  // No TCP: the server listens nowhere but the socket, and we came in over it.
  EXPECT_EQ(queryValue(conninfo, "SHOW listen_addresses"), "");
  EXPECT_EQ(queryValue(conninfo, "SELECT inet_server_addr()"), "<null>");
  EXPECT_EQ(queryValue(conninfo, "SHOW fsync"), "on");
  EXPECT_EQ(queryValue(conninfo, "SHOW shared_buffers"), "64MB");
  EXPECT_EQ(queryValue(conninfo, "SHOW logging_collector"), "on");
  EXPECT_TRUE(fs::is_directory(dir_ / "postgres" / "log"));
}

TEST_F(DatabaseTest, ClusterRunsAsTheUnprivilegedUserWhenRoot) {
  if (geteuid() != 0) GTEST_SKIP() << "only meaningful as root";
  pg_ = startOrFail();
  ASSERT_TRUE(pg_);
  const passwd* user = getpwnam("vessel");
  ASSERT_NE(user, nullptr) << "start() should have created the vessel system user";

  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "postgres").c_str(), &st), 0);
  EXPECT_NE(st.st_uid, 0u);
  EXPECT_EQ(st.st_uid, user->pw_uid);
  EXPECT_EQ(st.st_mode & 0777, 0700u);

  std::ifstream pid_file(dir_ / "postgres" / "postmaster.pid");
  long pid = 0;
  ASSERT_TRUE(pid_file >> pid);
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  bool saw_uid = false;
  while (std::getline(status, line)) {
    if (line.rfind("Uid:", 0) == 0) {
      std::istringstream fields(line.substr(4));
      unsigned real_uid = 0, effective_uid = 0;
      fields >> real_uid >> effective_uid;
      EXPECT_EQ(real_uid, user->pw_uid);
      EXPECT_EQ(effective_uid, user->pw_uid);
      saw_uid = true;
    }
  }
  EXPECT_TRUE(saw_uid);
  EXPECT_EQ(queryValue(pg_->connectionString(), "SELECT current_user"), "vessel");
}

TEST_F(DatabaseTest, StopAndRestartReusesTheClusterWithoutInitdb) {
  pg_ = startOrFail();
  ASSERT_TRUE(pg_);
  const std::string conninfo = pg_->connectionString();
  execute(conninfo, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('survives')");
  const auto pg_version_mtime = fs::last_write_time(dir_ / "postgres" / "PG_VERSION");

  auto stopped = pg_->stop();
  ASSERT_TRUE(stopped.ok()) << stopped.error().message;
  EXPECT_FALSE(pg_->owned());
  EXPECT_FALSE(fs::exists(dir_ / "postgres" / "postmaster.pid"));
  EXPECT_FALSE(canConnect(conninfo));
  pg_.reset();

  const auto t0 = Clock::now();
  pg_ = startOrFail();
  ASSERT_TRUE(pg_);
  std::cout << "[ timing ] restart of an existing cluster: " << secondsSince(t0) << " s\n";
  EXPECT_TRUE(pg_->owned());
  EXPECT_EQ(pg_->connectionString(), conninfo);
  EXPECT_EQ(queryValue(conninfo, "SELECT v FROM kept"), "survives");
  EXPECT_EQ(fs::last_write_time(dir_ / "postgres" / "PG_VERSION"), pg_version_mtime);
}

TEST_F(DatabaseTest, DestroyingTheOwnerStopsTheServer) {
  pg_ = startOrFail();
  ASSERT_TRUE(pg_);
  const std::string conninfo = pg_->connectionString();
  pg_.reset();
  EXPECT_FALSE(fs::exists(dir_ / "postgres" / "postmaster.pid"));
  EXPECT_FALSE(canConnect(conninfo));
}

TEST_F(DatabaseTest, SecondStartAttachesAndLeavesTheServerRunning) {
  pg_ = startOrFail();
  ASSERT_TRUE(pg_);
  const auto pg_version_mtime = fs::last_write_time(dir_ / "postgres" / "PG_VERSION");
  {
    auto second = startOrFail();
    ASSERT_TRUE(second);
    EXPECT_FALSE(second->owned());
    EXPECT_EQ(second->connectionString(), pg_->connectionString());
    EXPECT_EQ(queryValue(second->connectionString(), "SELECT 1"), "1");
    auto stopped = second->stop();  // not ours: a no-op
    EXPECT_TRUE(stopped.ok());
  }
  EXPECT_EQ(queryValue(pg_->connectionString(), "SELECT 1"), "1");

  // Attaching with another database name creates that database.
  EmbeddedPostgres::Options other = options_;
  other.database = "vessel_other";
  auto third = EmbeddedPostgres::start(other);
  ASSERT_TRUE(third.ok()) << third.error().message;
  EXPECT_FALSE(third.value()->owned());
  EXPECT_EQ(queryValue(third.value()->connectionString(), "SELECT current_database()"),
            "vessel_other");
  EXPECT_EQ(fs::last_write_time(dir_ / "postgres" / "PG_VERSION"), pg_version_mtime);
}

TEST_F(DatabaseTest, StartFailureNamesTheCommandAndShowsTheLog) {
  pg_ = startOrFail();
  ASSERT_TRUE(pg_);
  ASSERT_TRUE(pg_->stop().ok());
  pg_.reset();
  std::ofstream(dir_ / "postgres" / "postgresql.conf", std::ios::app) << "this is = = not valid\n";

  auto started = EmbeddedPostgres::start(options_);
  ASSERT_FALSE(started.ok());
  EXPECT_EQ(started.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(started.error().message.find("pg_ctl start failed"), std::string::npos)
      << started.error().message;
  EXPECT_NE(started.error().message.find("postgresql.conf"), std::string::npos)
      << started.error().message;
}

TEST_F(DatabaseTest, RestartsAfterTheServerWasKilled) {
  pg_ = startOrFail();
  ASSERT_TRUE(pg_);
  const std::string conninfo = pg_->connectionString();
  execute(conninfo, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('committed')");
  long pid = 0;
  ASSERT_TRUE(std::ifstream(dir_ / "postgres" / "postmaster.pid") >> pid);
  // pg_ctl makes the postmaster a session and group leader: kill all of it,
  // leaving postmaster.pid (and maybe zombies, if init reaps lazily) behind.
  ASSERT_EQ(::kill(-pid_t(pid), SIGKILL), 0);
  // Wait for it to be dead (gone or a zombie), not merely signalled: a
  // connect in between would queue on the still-open socket.
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  for (;;) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    if (!std::getline(stat, text) || text.substr(text.rfind(')') + 2, 1) == "Z") break;
    ASSERT_LT(Clock::now(), deadline) << "postmaster " << pid << " survived SIGKILL";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_FALSE(canConnect(conninfo));
  ASSERT_TRUE(fs::exists(dir_ / "postgres" / "postmaster.pid"));
  auto stopped = pg_->stop();  // the owner of a dead server: nothing to do
  EXPECT_TRUE(stopped.ok()) << stopped.error().message;
  pg_.reset();

  pg_ = startOrFail();
  ASSERT_TRUE(pg_);
  EXPECT_TRUE(pg_->owned());
  EXPECT_EQ(queryValue(conninfo, "SELECT v FROM kept"), "committed");
}

TEST_F(DatabaseTest, MigratesAnEmptyDatabaseThenIsANoOp) {
  ASSERT_GE(latestSchemaVersion(), 1);
  pg_ = startOrFail();
  ASSERT_TRUE(pg_);
  const std::string conninfo = pg_->connectionString();

  auto migrated = migrateDatabase(conninfo);
  ASSERT_TRUE(migrated.ok()) << migrated.error().message;
  EXPECT_EQ(migrated.value(), latestSchemaVersion());
  for (const char* table : {"users", "uploads", "jobs", "job_attempts", "schema_migrations"}) {
    EXPECT_EQ(queryValue(conninfo, std::string("SELECT to_regclass('") + table + "') IS NOT NULL"),
              "t")
        << table;
  }
  EXPECT_EQ(queryValue(conninfo, "SELECT max(version) FROM schema_migrations"),
            std::to_string(latestSchemaVersion()));
  EXPECT_EQ(queryValue(conninfo, "SELECT name FROM schema_migrations WHERE version = 1"), "init");
  const std::string rows = queryValue(conninfo, "SELECT count(*) FROM schema_migrations");

  auto again = migrateDatabase(conninfo);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again.value(), latestSchemaVersion());
  EXPECT_EQ(queryValue(conninfo, "SELECT count(*) FROM schema_migrations"), rows);
}

TEST_F(DatabaseTest, ConcurrentMigrationsApplyEachVersionOnce) {
  pg_ = startOrFail();
  ASSERT_TRUE(pg_);
  const std::string conninfo = pg_->connectionString();

  constexpr int kThreads = 4;
  std::vector<Result<int>> results(kThreads, Result<int>(0));
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] { results[i] = migrateDatabase(conninfo); });
  }
  for (auto& t : threads) t.join();
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r.value(), latestSchemaVersion());
  }
  EXPECT_EQ(
      queryValue(conninfo, "SELECT count(*) = count(DISTINCT version) FROM schema_migrations"),
      "t");
  EXPECT_EQ(queryValue(conninfo, "SELECT count(*) FROM schema_migrations WHERE version = 1"), "1");
  EXPECT_EQ(queryValue(conninfo, "SELECT max(version) FROM schema_migrations"),
            std::to_string(latestSchemaVersion()));
}

TEST_F(DatabaseTest, RefusesASchemaNewerThanThisBinary) {
  pg_ = startOrFail();
  ASSERT_TRUE(pg_);
  const std::string conninfo = pg_->connectionString();
  ASSERT_TRUE(migrateDatabase(conninfo).ok());
  execute(conninfo, "INSERT INTO schema_migrations (version, name) VALUES (9999, 'future')");

  auto migrated = migrateDatabase(conninfo);
  ASSERT_FALSE(migrated.ok());
  EXPECT_EQ(migrated.error().code, ErrorCode::kConfig);
  EXPECT_NE(migrated.error().message.find("9999"), std::string::npos) << migrated.error().message;
  EXPECT_NE(migrated.error().message.find(std::to_string(latestSchemaVersion())), std::string::npos)
      << migrated.error().message;
  // The refusal released the advisory lock: a later migrate is not blocked.
  execute(conninfo, "DELETE FROM schema_migrations WHERE version = 9999");
  EXPECT_TRUE(migrateDatabase(conninfo).ok());
}

TEST(DatabaseMigrate, UnreachableServerIsUnavailable) {
  auto migrated =
      migrateDatabase("host=/nonexistent/vessel-run port=5432 dbname=x user=x connect_timeout=2");
  ASSERT_FALSE(migrated.ok());
  EXPECT_EQ(migrated.error().code, ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace vessel
