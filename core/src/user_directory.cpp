// PgUserDirectory: users and sessions on PostgreSQL (libpqxx 6.4) through a
// small connection pool, and the shared email rule.
//
// Every statement is prepared on each connection when it is opened and every
// value is bound. Each call borrows one connection for one transaction (or one
// statement) and gives it back, so request threads share a handful of
// connections and never wait on each other for longer than a statement.
#include "vessel/user_directory.hpp"

#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <pqxx/pqxx>
#include <utility>
#include <vector>

namespace vessel {

namespace {

constexpr std::size_t kMaxEmailBytes = 254;
constexpr int kMaxPoolSize = 64;
// A call waits this long for a free connection before reporting the directory
// unavailable rather than hanging a request thread.
constexpr std::chrono::seconds kAcquireTimeout{10};

// --- statements -------------------------------------------------------------

constexpr const char* kCreateUser = "ud_create_user";
constexpr const char* kCreateUserSql =
    "INSERT INTO users (email, password_hash) VALUES ($1, $2) RETURNING id::text, email";

constexpr const char* kFindUser = "ud_find_user";
constexpr const char* kFindUserSql =
    "SELECT id::text, email, password_hash FROM users WHERE lower(email) = lower($1)";

// Does nothing (returns no row) when the email exists in any case; the caller
// then reads the existing row in a new statement, which sees a row a
// concurrent insert just committed.
constexpr const char* kInsertUserIfNew = "ud_insert_user_if_new";
constexpr const char* kInsertUserIfNewSql =
    "INSERT INTO users (email) VALUES ($1) ON CONFLICT ((lower(email))) DO NOTHING "
    "RETURNING id::text, email";

// Expiry travels as microseconds since the Unix epoch, so no time zone or
// text format is involved.
constexpr const char* kCreateSession = "ud_create_session";
constexpr const char* kCreateSessionSql =
    "INSERT INTO sessions (token_hash, user_id, expires_at) "
    "VALUES ($1, $2::uuid, timestamptz 'epoch' + $3::bigint * interval '1 microsecond')";

constexpr const char* kFindSession = "ud_find_session";
constexpr const char* kFindSessionSql =
    "SELECT u.id::text, u.email FROM sessions s JOIN users u ON u.id = s.user_id "
    "WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now()";

constexpr const char* kRevokeSession = "ud_revoke_session";
constexpr const char* kRevokeSessionSql =
    "UPDATE sessions SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL";

constexpr const char* kPurgeSessions = "ud_purge_sessions";
constexpr const char* kPurgeSessionsSql =
    "DELETE FROM sessions WHERE expires_at < now() - interval '1 day' "
    "OR revoked_at < now() - interval '1 day'";

constexpr std::pair<const char*, const char*> kStatements[] = {
    {kCreateUser, kCreateUserSql},           {kFindUser, kFindUserSql},
    {kInsertUserIfNew, kInsertUserIfNewSql}, {kCreateSession, kCreateSessionSql},
    {kFindSession, kFindSessionSql},         {kRevokeSession, kRevokeSessionSql},
    {kPurgeSessions, kPurgeSessionsSql},
};

// --- helpers ----------------------------------------------------------------

bool isUuid(std::string_view s) noexcept {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

bool isSpace(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF): the text columns of a UTF8 database refuse anything else.
bool isUtf8(std::string_view s) noexcept {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    std::size_t extra = 0;
    char32_t cp = 0;
    if (b < 0x80) {
      ++i;
      continue;
    } else if (b >= 0xC2 && b <= 0xDF) {
      extra = 1;
      cp = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
      extra = 2;
      cp = b & 0x0F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      extra = 3;
      cp = b & 0x07;
    } else {
      return false;
    }
    if (s.size() - i <= extra) return false;
    for (std::size_t k = 1; k <= extra; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    if ((extra == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (extra == 3 && (cp < 0x10000 || cp > 0x10FFFF))) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::int64_t epochMicros(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

bool isConnectionState(const std::string& state) {
  // Class 08 (connection exception), 57P01-03 (server shutting down or
  // starting up): the connection is gone or about to be.
  return state.rfind("08", 0) == 0 || state == "57P01" || state == "57P02" || state == "57P03";
}

bool isTransientState(const std::string& state) {
  // Serialization failure, deadlock, lock not available, class 53
  // (insufficient resources: too many connections, disk full, out of memory).
  return state == "40001" || state == "40P01" || state == "55P03" || state.rfind("53", 0) == 0;
}

}  // namespace

Result<std::string> normalizeEmail(std::string_view email) noexcept {
  const Error invalid{ErrorCode::kInvalidArgument, "email is not a valid address"};
  while (!email.empty() && isSpace(email.front())) email.remove_prefix(1);
  while (!email.empty() && isSpace(email.back())) email.remove_suffix(1);
  if (email.empty() || email.size() > kMaxEmailBytes || !isUtf8(email)) return invalid;
  for (const char c : email) {
    const auto b = static_cast<unsigned char>(c);
    if (b <= 0x20 || b == 0x7F) return invalid;
  }
  const std::size_t at = email.find('@');
  if (at == std::string_view::npos || at == 0 ||
      email.find('@', at + 1) != std::string_view::npos) {
    return invalid;
  }
  const std::string_view domain = email.substr(at + 1);
  if (domain.find('.') == std::string_view::npos || domain.front() == '.' || domain.back() == '.' ||
      domain.find("..") != std::string_view::npos) {
    return invalid;
  }
  try {
    return std::string(email);
  } catch (const std::exception&) {
    return makeError(ErrorCode::kInternal, "out of memory");
  }
}

// --- Impl -------------------------------------------------------------------

struct PgUserDirectory::Impl {
  std::string conninfo;
  std::size_t pool_size = 0;
  std::mutex mutex;
  std::condition_variable returned;
  // Connections not lent out; a null entry is a slot whose connection is opened
  // on its next use (never opened yet, or dropped because it broke).
  std::vector<std::unique_ptr<pqxx::connection>> idle;

  std::unique_ptr<pqxx::connection> open() const {
    auto c = std::make_unique<pqxx::connection>(conninfo);
    for (const auto& [name, sql] : kStatements) c->prepare(name, sql);
    return c;
  }

  // Borrows a connection (preferring an open one); false after kAcquireTimeout.
  bool take(std::unique_ptr<pqxx::connection>& out) {
    std::unique_lock lock(mutex);
    if (!returned.wait_for(lock, kAcquireTimeout, [this] { return !idle.empty(); })) return false;
    auto it = idle.end() - 1;
    for (auto i = idle.begin(); i != idle.end(); ++i) {
      if (*i) it = i;
    }
    out = std::move(*it);
    idle.erase(it);
    return true;
  }

  void give(std::unique_ptr<pqxx::connection> c) noexcept {
    {
      std::lock_guard lock(mutex);
      idle.push_back(std::move(c));  // capacity reserved for pool_size: cannot throw
    }
    returned.notify_one();
  }

  // Gives the borrowed connection back (null if it broke) however the call ends.
  struct Lease {
    Impl& impl;
    std::unique_ptr<pqxx::connection> conn;
    ~Lease() { impl.give(std::move(conn)); }
  };

  // Runs `body(connection)` on a borrowed connection and turns every exception
  // into an Error, so that none leaves the directory. A pooled connection found
  // dead is replaced and the body run once more: it failed before anything
  // ran (or inside a transaction the server rolled back), so this is safe.
  template <typename T, typename F>
  Result<T> run(const char* what, F&& body) noexcept {
    const auto where = [what] { return std::string("user directory: ") + what + ": "; };
    try {
      std::unique_ptr<pqxx::connection> borrowed;
      if (!take(borrowed)) {
        return makeError(ErrorCode::kUnavailable, where() + "all " + std::to_string(pool_size) +
                                                      " database connections stayed busy for " +
                                                      std::to_string(kAcquireTimeout.count()) +
                                                      " s");
      }
      Lease lease{*this, std::move(borrowed)};
      while (true) {
        const bool reused = lease.conn != nullptr;
        try {
          if (!lease.conn) lease.conn = open();
          return body(*lease.conn);
        } catch (const pqxx::broken_connection& e) {
          lease.conn.reset();
          if (reused) continue;
          return makeError(ErrorCode::kUnavailable,
                           where() + "database unavailable: " + trimmed(e.what()));
        } catch (const pqxx::in_doubt_error& e) {
          lease.conn.reset();
          return makeError(ErrorCode::kUnavailable,
                           where() + "database connection lost during commit, outcome unknown: " +
                               trimmed(e.what()));
        } catch (const pqxx::sql_error& e) {
          const std::string state = e.sqlstate();
          const std::string detail = trimmed(e.what()) + " (SQLSTATE " + state + ")";
          if (isConnectionState(state) || !lease.conn || !lease.conn->is_open()) {
            lease.conn.reset();
            if (reused) continue;
            return makeError(ErrorCode::kUnavailable, where() + "database unavailable: " + detail);
          }
          if (isTransientState(state)) {
            return makeError(ErrorCode::kUnavailable, where() + "database busy: " + detail);
          }
          return makeError(ErrorCode::kInternal, where() + detail);
        }
      }
    } catch (const std::exception& e) {
      return makeError(ErrorCode::kInternal, where() + trimmed(e.what()));
    } catch (...) {
      return makeError(ErrorCode::kInternal, where() + "unknown exception");
    }
  }
};

// --- PgUserDirectory --------------------------------------------------------

PgUserDirectory::PgUserDirectory(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PgUserDirectory::~PgUserDirectory() = default;

Result<std::unique_ptr<PgUserDirectory>> PgUserDirectory::connect(const std::string& conninfo,
                                                                  int pool_size) noexcept {
  if (pool_size < 1 || pool_size > kMaxPoolSize) {
    return makeError(ErrorCode::kInvalidArgument, "user directory: pool_size must be 1.." +
                                                      std::to_string(kMaxPoolSize) + ", got " +
                                                      std::to_string(pool_size));
  }
  try {
    auto impl = std::make_unique<Impl>();
    impl->conninfo = conninfo;
    impl->pool_size = static_cast<std::size_t>(pool_size);
    impl->idle.reserve(impl->pool_size);
    impl->idle.resize(impl->pool_size);
    // Open one now so that a wrong conninfo or a server that is down is reported here.
    Result<void> opened =
        impl->run<void>("connect", [](pqxx::connection&) { return Result<void>(); });
    if (!opened) return std::move(opened).error();
    return std::unique_ptr<PgUserDirectory>(new PgUserDirectory(std::move(impl)));
  } catch (const std::exception& e) {
    return makeError(ErrorCode::kInternal, std::string("user directory: connect: ") + e.what());
  }
}

Result<AuthUser> PgUserDirectory::createUser(std::string_view email,
                                             std::string_view credential) noexcept {
  Result<std::string> normal = normalizeEmail(email);
  if (!normal) return std::move(normal).error();
  const std::string& address = normal.value();
  return impl_->run<AuthUser>("createUser", [&](pqxx::connection& c) -> Result<AuthUser> {
    pqxx::work txn(c);
    pqxx::result r;
    try {
      r = txn.exec_prepared(kCreateUser, address, std::string(credential));
    } catch (const pqxx::unique_violation&) {
      return makeError(ErrorCode::kAlreadyExists,
                       "an account with email " + address + " already exists");
    }
    txn.commit();
    return AuthUser{r[0][0].as<std::string>(), r[0][1].as<std::string>()};
  });
}

Result<std::optional<StoredUser>> PgUserDirectory::findUserByEmail(
    std::string_view email) noexcept {
  using Found = std::optional<StoredUser>;
  std::string address;
  try {
    address = std::string(email);
  } catch (const std::exception&) {
    return makeError(ErrorCode::kInternal, "user directory: findUserByEmail: out of memory");
  }
  return impl_->run<Found>("findUserByEmail", [&](pqxx::connection& c) -> Result<Found> {
    pqxx::nontransaction txn(c);
    const pqxx::result r = txn.exec_prepared(kFindUser, address);
    if (r.empty()) return Found();
    return Found(StoredUser{AuthUser{r[0][0].as<std::string>(), r[0][1].as<std::string>()},
                            r[0][2].as<std::string>()});
  });
}

Result<AuthUser> PgUserDirectory::findOrCreateUser(std::string_view email) noexcept {
  Result<std::string> normal = normalizeEmail(email);
  if (!normal) return std::move(normal).error();
  const std::string& address = normal.value();
  return impl_->run<AuthUser>("findOrCreateUser", [&](pqxx::connection& c) -> Result<AuthUser> {
    pqxx::work txn(c);
    // Read committed: each statement sees rows committed before it started, so
    // the SELECT after a conflicting INSERT finds the row that won. Only a
    // delete in between can make both miss; a second round settles that.
    for (int round = 0; round < 2; ++round) {
      pqxx::result r = txn.exec_prepared(kInsertUserIfNew, address);
      if (r.empty()) r = txn.exec_prepared(kFindUser, address);
      if (!r.empty()) {
        AuthUser user{r[0][0].as<std::string>(), r[0][1].as<std::string>()};
        txn.commit();
        return user;
      }
    }
    return makeError(ErrorCode::kUnavailable, "user directory: findOrCreateUser: " + address +
                                                  " was deleted while being created; try again");
  });
}

Result<void> PgUserDirectory::createSession(
    std::string_view token_hash, std::string_view user_id,
    std::chrono::system_clock::time_point expires_at) noexcept {
  if (token_hash.empty()) {
    return makeError(ErrorCode::kInvalidArgument, "user directory: createSession: empty hash");
  }
  if (!isUuid(user_id)) {
    return makeError(ErrorCode::kNotFound,
                     "user directory: createSession: no user " + std::string(user_id));
  }
  const std::int64_t expires_us = epochMicros(expires_at);
  return impl_->run<void>("createSession", [&](pqxx::connection& c) -> Result<void> {
    pqxx::work txn(c);
    try {
      txn.exec_prepared(kCreateSession, std::string(token_hash), std::string(user_id), expires_us);
    } catch (const pqxx::foreign_key_violation&) {
      return makeError(ErrorCode::kNotFound,
                       "user directory: createSession: no user " + std::string(user_id));
    } catch (const pqxx::unique_violation&) {
      return makeError(ErrorCode::kAlreadyExists,
                       "user directory: createSession: a session with this token hash exists");
    }
    txn.commit();
    return Result<void>();
  });
}

Result<std::optional<AuthUser>> PgUserDirectory::findSession(std::string_view token_hash) noexcept {
  using Found = std::optional<AuthUser>;
  if (token_hash.empty()) return Found();
  return impl_->run<Found>("findSession", [&](pqxx::connection& c) -> Result<Found> {
    pqxx::nontransaction txn(c);
    const pqxx::result r = txn.exec_prepared(kFindSession, std::string(token_hash));
    if (r.empty()) return Found();
    return Found(AuthUser{r[0][0].as<std::string>(), r[0][1].as<std::string>()});
  });
}

Result<void> PgUserDirectory::revokeSession(std::string_view token_hash) noexcept {
  if (token_hash.empty()) return Result<void>();
  return impl_->run<void>("revokeSession", [&](pqxx::connection& c) -> Result<void> {
    pqxx::work txn(c);
    txn.exec_prepared(kRevokeSession, std::string(token_hash));
    txn.commit();
    return Result<void>();
  });
}

Result<std::uint64_t> PgUserDirectory::purgeExpiredSessions() noexcept {
  return impl_->run<std::uint64_t>("purgeExpiredSessions",
                                   [&](pqxx::connection& c) -> Result<std::uint64_t> {
                                     pqxx::work txn(c);
                                     const pqxx::result r = txn.exec_prepared(kPurgeSessions);
                                     txn.commit();
                                     return static_cast<std::uint64_t>(r.affected_rows());
                                   });
}

}  // namespace vessel
