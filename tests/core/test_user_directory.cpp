// PgUserDirectory against a real private PostgreSQL: one EmbeddedPostgres for
// the suite, emptied before each test. Covers case-insensitive users, the
// idempotent find-or-create, the session lifecycle and expiry, the purge,
// concurrent use through the pool, and healing after the server restarts.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <latch>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "vessel/database.hpp"
#include "vessel/user_directory.hpp"

namespace vessel {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::system_clock;

class UserDirectoryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char pattern[] = "/tmp/vessel-users-XXXXXX";
    if (mkdtemp(pattern) == nullptr) {
      setup_error_ = "mkdtemp failed";
      return;
    }
    dir_ = new fs::path(pattern);
    // mkdtemp makes it 0700; as root the cluster runs as `vessel` and must enter it.
    fs::permissions(*dir_, fs::perms(0755));
    setup_error_ = startServer();
    if (!setup_error_.empty()) return;
    conninfo_ = new std::string(pg_->connectionString());
    auto migrated = migrateDatabase(*conninfo_);
    if (!migrated) setup_error_ = "migrateDatabase: " + migrated.error().message;
  }

  static void TearDownTestSuite() {
    delete pg_;
    pg_ = nullptr;
    delete conninfo_;
    conninfo_ = nullptr;
    if (dir_ != nullptr) {
      std::error_code ec;
      fs::remove_all(*dir_, ec);
      delete dir_;
      dir_ = nullptr;
    }
  }

  static std::string startServer() {
    EmbeddedPostgres::Options options;
    options.data_dir = *dir_;
    auto pg = EmbeddedPostgres::start(options);
    if (!pg) return "EmbeddedPostgres::start: " + pg.error().message;
    pg_ = std::move(pg).value().release();
    return "";
  }

  void SetUp() override {
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
    sql("TRUNCATE users, sessions CASCADE");
  }

  static std::unique_ptr<PgUserDirectory> directory(int pool_size = 4) {
    auto d = PgUserDirectory::connect(*conninfo_, pool_size);
    EXPECT_TRUE(d.ok()) << (d.ok() ? "" : d.error().message);
    return d.ok() ? std::move(d).value() : nullptr;
  }

  // Direct SQL for setting up and inspecting what the interface does not expose.
  static pqxx::result sql(const std::string& query) {
    pqxx::connection conn(*conninfo_);
    pqxx::nontransaction tx(conn);
    return tx.exec(query);
  }
  static std::string value(const std::string& query) {
    const pqxx::result r = sql(query);
    if (r.empty() || r[0][0].is_null()) return "<null>";
    return r[0][0].c_str();
  }

  static AuthUser user(UserDirectory& d, const std::string& email) {
    auto u = d.createUser(email, "scrypt$cred");
    EXPECT_TRUE(u.ok()) << (u.ok() ? "" : u.error().message);
    return u.ok() ? u.value() : AuthUser{};
  }

  static std::optional<AuthUser> session(UserDirectory& d, const std::string& hash) {
    auto s = d.findSession(hash);
    EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
    return s.ok() ? s.value() : std::nullopt;
  }

  static inline EmbeddedPostgres* pg_ = nullptr;
  static inline fs::path* dir_ = nullptr;
  static inline std::string* conninfo_ = nullptr;
  static inline std::string setup_error_;
};

TEST_F(UserDirectoryTest, MigrationCreatesTheSessionsTable) {
  EXPECT_EQ(value("SELECT count(*) FROM information_schema.columns WHERE table_name = 'sessions'"),
            "5");
  EXPECT_EQ(value("SELECT count(*) FROM pg_indexes WHERE tablename = 'sessions' "
                  "AND indexname IN ('sessions_user', 'sessions_expiry')"),
            "2");
}

TEST_F(UserDirectoryTest, UsersAreFoundInAnyCase) {
  auto d = directory();
  ASSERT_TRUE(d);
  const AuthUser ann = user(*d, "Ann@Example.com");
  EXPECT_EQ(ann.id.size(), 36u);
  EXPECT_EQ(ann.email, "Ann@Example.com");
  for (const char* email : {"Ann@Example.com", "ann@example.com", "ANN@EXAMPLE.COM"}) {
    auto found = d->findUserByEmail(email);
    ASSERT_TRUE(found.ok()) << found.error().message;
    ASSERT_TRUE(found.value().has_value()) << email;
    EXPECT_EQ(found.value()->user.id, ann.id);
    EXPECT_EQ(found.value()->user.email, "Ann@Example.com");
    EXPECT_EQ(found.value()->credential, "scrypt$cred");
  }
  auto none = d->findUserByEmail("bob@example.com");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none.value().has_value());
}

TEST_F(UserDirectoryTest, DuplicateEmailInAnyCaseIsAlreadyExists) {
  auto d = directory();
  ASSERT_TRUE(d);
  user(*d, "bob@example.com");
  for (const char* email : {"bob@example.com", "BOB@example.com", " Bob@Example.COM "}) {
    auto again = d->createUser(email, "other");
    ASSERT_FALSE(again.ok()) << email;
    EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists) << again.error().message;
  }
  EXPECT_EQ(value("SELECT count(*) FROM users"), "1");
  auto bad = d->createUser("not an email", "x");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad.error().message, "email is not a valid address");
}

TEST_F(UserDirectoryTest, FindOrCreateIsIdempotent) {
  auto d = directory();
  ASSERT_TRUE(d);
  auto first = d->findOrCreateUser("Cat@Example.com");
  ASSERT_TRUE(first.ok()) << first.error().message;
  auto second = d->findOrCreateUser("cat@example.com");
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_EQ(second.value().id, first.value().id);
  EXPECT_EQ(second.value().email, "Cat@Example.com");
  EXPECT_EQ(value("SELECT password_hash FROM users"), "") << "created without a credential";

  // An account made with a password is found, and keeps its password.
  const AuthUser dan = user(*d, "dan@example.com");
  auto found = d->findOrCreateUser("DAN@example.com");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found.value().id, dan.id);
  EXPECT_EQ(value("SELECT password_hash FROM users WHERE id = '" + dan.id + "'"), "scrypt$cred");
  EXPECT_EQ(value("SELECT count(*) FROM users"), "2");
}

TEST_F(UserDirectoryTest, ConcurrentFirstSightsCreateOneUser) {
  auto d = directory(8);
  ASSERT_TRUE(d);
  constexpr int kThreads = 8;
  std::latch start(kThreads);
  std::vector<std::string> ids(kThreads);
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      auto u = d->findOrCreateUser(i % 2 ? "eve@example.com" : "EVE@example.com");
      if (u.ok()) {
        ids[i] = u.value().id;
      } else {
        errors[i] = u.error().message;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_TRUE(errors[i].empty()) << errors[i];
    EXPECT_EQ(ids[i], ids[0]);
  }
  EXPECT_EQ(value("SELECT count(*) FROM users"), "1");
}

TEST_F(UserDirectoryTest, SessionLifecycle) {
  auto d = directory();
  ASSERT_TRUE(d);
  const AuthUser fay = user(*d, "fay@example.com");
  const auto expires = Clock::now() + 1h;
  ASSERT_TRUE(d->createSession("hash-live", fay.id, expires).ok());
  auto found = session(*d, "hash-live");
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->id, fay.id);
  EXPECT_EQ(found->email, "fay@example.com");
  // The expiry is stored to the microsecond.
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(expires.time_since_epoch()).count();
  EXPECT_EQ(value("SELECT (extract(epoch FROM expires_at) * 1000000)::bigint FROM sessions"),
            std::to_string(micros));

  EXPECT_FALSE(session(*d, "hash-unknown").has_value());
  EXPECT_FALSE(session(*d, "").has_value());

  ASSERT_TRUE(d->revokeSession("hash-live").ok());
  EXPECT_FALSE(session(*d, "hash-live").has_value());
  EXPECT_NE(value("SELECT revoked_at FROM sessions WHERE token_hash = 'hash-live'"), "<null>");
  EXPECT_TRUE(d->revokeSession("hash-live").ok()) << "revoking twice is fine";
  EXPECT_TRUE(d->revokeSession("hash-unknown").ok()) << "revoking an unknown session is fine";
}

TEST_F(UserDirectoryTest, ExpiredSessionsAreNotFound) {
  auto d = directory();
  ASSERT_TRUE(d);
  const AuthUser gil = user(*d, "gil@example.com");
  ASSERT_TRUE(d->createSession("hash-past", gil.id, Clock::now() - 1s).ok());
  EXPECT_FALSE(session(*d, "hash-past").has_value());
  ASSERT_TRUE(d->createSession("hash-soon", gil.id, Clock::now() + 1h).ok());
  ASSERT_TRUE(session(*d, "hash-soon").has_value());
  sql("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE token_hash = "
      "'hash-soon'");
  EXPECT_FALSE(session(*d, "hash-soon").has_value());
}

TEST_F(UserDirectoryTest, SessionErrors) {
  auto d = directory();
  ASSERT_TRUE(d);
  const AuthUser hal = user(*d, "hal@example.com");
  const auto later = Clock::now() + 1h;
  auto ghost = d->createSession("h1", "00000000-0000-4000-8000-000000000000", later);
  ASSERT_FALSE(ghost.ok());
  EXPECT_EQ(ghost.error().code, ErrorCode::kNotFound) << ghost.error().message;
  auto not_uuid = d->createSession("h1", "1; DROP TABLE users", later);
  ASSERT_FALSE(not_uuid.ok());
  EXPECT_EQ(not_uuid.error().code, ErrorCode::kNotFound);
  ASSERT_TRUE(d->createSession("h1", hal.id, later).ok());
  auto twice = d->createSession("h1", hal.id, later);
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().code, ErrorCode::kAlreadyExists);
  // Deleting the user takes the sessions with it.
  sql("DELETE FROM users WHERE id = '" + hal.id + "'");
  EXPECT_EQ(value("SELECT count(*) FROM sessions"), "0");
}

TEST_F(UserDirectoryTest, PurgeDeletesOnlyLongDeadSessions) {
  auto d = directory();
  ASSERT_TRUE(d);
  const AuthUser ida = user(*d, "ida@example.com");
  for (const char* hash :
       {"live", "expired-recently", "expired-long-ago", "revoked-recently", "revoked-long-ago"}) {
    ASSERT_TRUE(d->createSession(hash, ida.id, Clock::now() + 1h).ok());
  }
  sql("UPDATE sessions SET expires_at = now() - interval '1 hour' "
      "WHERE token_hash = 'expired-recently'");
  sql("UPDATE sessions SET expires_at = now() - interval '2 days' "
      "WHERE token_hash = 'expired-long-ago'");
  sql("UPDATE sessions SET revoked_at = now() - interval '1 hour' "
      "WHERE token_hash = 'revoked-recently'");
  sql("UPDATE sessions SET revoked_at = now() - interval '2 days' "
      "WHERE token_hash = 'revoked-long-ago'");
  auto purged = d->purgeExpiredSessions();
  ASSERT_TRUE(purged.ok()) << purged.error().message;
  EXPECT_EQ(purged.value(), 2u);
  EXPECT_EQ(value("SELECT string_agg(token_hash, ',' ORDER BY token_hash) FROM sessions"),
            "expired-recently,live,revoked-recently");
  auto again = d->purgeExpiredSessions();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.value(), 0u);
}

// 8 threads through a pool of 4: every call succeeds and sees its own writes.
TEST_F(UserDirectoryTest, ConcurrentUseFromEightThreads) {
  auto d = directory(4);
  ASSERT_TRUE(d);
  constexpr int kThreads = 8;
  constexpr int kRounds = 25;
  std::latch start(kThreads);
  std::atomic<int> failures{0};
  std::vector<std::string> first_error(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const auto fail = [&](const std::string& message) {
        if (first_error[t].empty()) first_error[t] = message;
        ++failures;
      };
      start.arrive_and_wait();
      auto me = d->createUser("user" + std::to_string(t) + "@example.com", "cred");
      if (!me) return fail(me.error().message);
      for (int i = 0; i < kRounds; ++i) {
        const std::string hash = "t" + std::to_string(t) + "-" + std::to_string(i);
        if (auto r = d->createSession(hash, me.value().id, Clock::now() + 1h); !r) {
          fail(r.error().message);
          continue;
        }
        auto found = d->findSession(hash);
        if (!found || !found.value() || found.value()->id != me.value().id) {
          fail(found ? "session not found: " + hash : found.error().message);
        }
        if (i % 5 == 0) {
          if (auto r = d->revokeSession(hash); !r) fail(r.error().message);
        }
        auto shared = d->findOrCreateUser("shared@example.com");
        if (!shared) fail(shared.error().message);
        auto lookup = d->findUserByEmail("USER" + std::to_string(t) + "@EXAMPLE.COM");
        if (!lookup || !lookup.value()) fail("user lookup failed");
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& e : first_error) EXPECT_TRUE(e.empty()) << e;
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(value("SELECT count(*) FROM users"), std::to_string(kThreads + 1));
  EXPECT_EQ(value("SELECT count(*) FROM sessions"), std::to_string(kThreads * kRounds));
  EXPECT_EQ(value("SELECT count(*) FROM sessions WHERE revoked_at IS NOT NULL"),
            std::to_string(kThreads * kRounds / 5));
  EXPECT_LE(
      std::stoi(value("SELECT count(*) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND backend_type = 'client backend' "
                      "AND pid <> pg_backend_pid()")),
      4)
      << "no more connections than the pool holds";
}

TEST_F(UserDirectoryTest, KilledConnectionsAreReplacedTransparently) {
  auto d = directory(2);
  ASSERT_TRUE(d);
  const AuthUser jo = user(*d, "jo@example.com");
  sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
      "WHERE datname = current_database() AND pid <> pg_backend_pid()");
  std::this_thread::sleep_for(100ms);
  auto found = d->findUserByEmail("jo@example.com");
  ASSERT_TRUE(found.ok()) << found.error().message;
  ASSERT_TRUE(found.value().has_value());
  EXPECT_EQ(found.value()->user.id, jo.id);
}

TEST_F(UserDirectoryTest, APostgresRestartHealsByItself) {
  auto d = directory(2);
  ASSERT_TRUE(d);
  const AuthUser kai = user(*d, "kai@example.com");
  ASSERT_TRUE(d->createSession("restart", kai.id, Clock::now() + 1h).ok());

  ASSERT_TRUE(pg_->stop().ok());
  delete pg_;
  pg_ = nullptr;
  auto down = d->findSession("restart");
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(down.error().message.find("user directory: findSession: database unavailable"),
            std::string::npos)
      << down.error().message;

  const std::string restarted = startServer();
  ASSERT_TRUE(restarted.empty()) << restarted;
  ASSERT_EQ(pg_->connectionString(), *conninfo_);
  const auto up = session(*d, "restart");
  ASSERT_TRUE(up.has_value());
  EXPECT_EQ(up->id, kai.id);
  auto created = d->createUser("lou@example.com", "cred");
  EXPECT_TRUE(created.ok()) << created.error().message;
}

TEST_F(UserDirectoryTest, ConnectRefusesWhatCannotWork) {
  auto size = PgUserDirectory::connect(*conninfo_, 0);
  ASSERT_FALSE(size.ok());
  EXPECT_EQ(size.error().code, ErrorCode::kInvalidArgument);
  auto nowhere =
      PgUserDirectory::connect("host=" + (*dir_ / "no-such-socket-dir").string() + " dbname=x");
  ASSERT_FALSE(nowhere.ok());
  EXPECT_EQ(nowhere.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(nowhere.error().message.find("user directory: connect: database unavailable"),
            std::string::npos)
      << nowhere.error().message;
}

TEST(NormalizeEmail, TrimsAndRefuses) {
  auto ok = normalizeEmail("  Zoe@Example.org\t");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok.value(), "Zoe@Example.org");
  for (const char* bad :
       {"", "zoe", "zoe@", "@example.org", "zoe@example", "zoe@@example.org", "zo e@example.org",
        "zoe@example..org", "zoe@.example.org", "zoe@example.org.", "\xc0\xaf@example.org"}) {
    auto r = normalizeEmail(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(r.error().message, "email is not a valid address");
  }
}

}  // namespace
}  // namespace vessel
