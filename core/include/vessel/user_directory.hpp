// The host side of auth: the PostgreSQL UserDirectory (users and sessions
// tables) that the server hands to the auth plugin, and the one email rule
// every plugin and the directory share.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "vessel/auth.hpp"
#include "vessel/result.hpp"

namespace vessel {

/// The address with surrounding whitespace removed, if it is one we accept:
/// at most 254 bytes, exactly one '@', a non-empty local part, a domain with a
/// dot (not first or last, no empty label), and no spaces or control
/// characters. Case is kept (comparisons are case-insensitive elsewhere).
/// Otherwise kInvalidArgument "email is not a valid address".
Result<std::string> normalizeEmail(std::string_view email) noexcept;

/// UserDirectory over the `users` and `sessions` tables (migrations 0001 and
/// 0003) through a small pool of connections, so one instance serves every
/// request thread. Statements are prepared per connection, values always bound.
///
/// A connection that breaks (server restart, network) is dropped and a fresh
/// one opened on the next use; a call that finds its pooled connection dead
/// before anything ran retries once on a new one, so a PostgreSQL restart heals
/// without callers noticing once the server is back. While it is down, calls
/// fail with kUnavailable. SQL errors that can only be bugs are kInternal.
class PgUserDirectory final : public UserDirectory {
 public:
  /// Opens the first connection (so a bad conninfo fails here, kUnavailable);
  /// the others are opened when concurrent calls need them. pool_size 1..64.
  static Result<std::unique_ptr<PgUserDirectory>> connect(const std::string& conninfo,
                                                          int pool_size = 4) noexcept;
  ~PgUserDirectory() override;
  PgUserDirectory(const PgUserDirectory&) = delete;
  PgUserDirectory& operator=(const PgUserDirectory&) = delete;

  /// kInvalidArgument unless normalizeEmail accepts `email`; kAlreadyExists if
  /// the email is taken in any letter case.
  Result<AuthUser> createUser(std::string_view email,
                              std::string_view credential) noexcept override;
  Result<std::optional<StoredUser>> findUserByEmail(std::string_view email) noexcept override;
  /// Idempotent, also under concurrent first sights of the same email.
  Result<AuthUser> findOrCreateUser(std::string_view email) noexcept override;

  /// kNotFound when `user_id` names no user; kAlreadyExists for a hash in use.
  Result<void> createSession(std::string_view token_hash, std::string_view user_id,
                             std::chrono::system_clock::time_point expires_at) noexcept override;
  Result<std::optional<AuthUser>> findSession(std::string_view token_hash) noexcept override;
  Result<void> revokeSession(std::string_view token_hash) noexcept override;

  /// Deletes sessions that expired, or were revoked, more than a day ago (the
  /// day keeps recent ones around for inspection). Returns how many went.
  Result<std::uint64_t> purgeExpiredSessions() noexcept;

 private:
  struct Impl;
  explicit PgUserDirectory(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace vessel
