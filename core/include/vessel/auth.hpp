// The auth plugin interface: who is calling, and how accounts and sessions are
// made. A plugin holds the policy (how passwords are hashed, what a token looks
// like, which header a proxy sets); the host holds the persistence and hands it
// in as a UserDirectory (PostgreSQL in the server, an in-memory one in tests),
// so plugins never open a database themselves.
//
// Error codes the server maps to HTTP:
//   kInvalidArgument → 400 (bad email, short password)   kAlreadyExists → 409
//   kUnauthenticated → 401 (bad credentials, bad token)  kUnsupportedInput → 404
//   (the plugin does not offer this operation, e.g. register behind an SSO proxy)
//   kUnavailable → 503 (the directory is down)           anything else → 500
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "vessel/result.hpp"

namespace vessel {

struct AuthUser {
  std::string id;  ///< uuid
  std::string email;
};

/// A user row as the directory stores it; `credential` is opaque to the host
/// (the local plugin keeps its encoded scrypt hash there; empty = no password).
struct StoredUser {
  AuthUser user;
  std::string credential;
};

/// Persistence the host provides to auth plugins. Thread-safe; every method is
/// noexcept. Emails are compared case-insensitively.
class UserDirectory {
 public:
  virtual ~UserDirectory() = default;

  /// kAlreadyExists when the email is taken.
  virtual Result<AuthUser> createUser(std::string_view email,
                                      std::string_view credential) noexcept = 0;
  virtual Result<std::optional<StoredUser>> findUserByEmail(std::string_view email) noexcept = 0;
  /// For plugins that trust an upstream identity (SSO proxy): the user with this
  /// email, created without a credential on first sight.
  virtual Result<AuthUser> findOrCreateUser(std::string_view email) noexcept = 0;

  /// Stores a session under the hash of its token (never the token itself).
  virtual Result<void> createSession(std::string_view token_hash, std::string_view user_id,
                                     std::chrono::system_clock::time_point expires_at) noexcept = 0;
  /// The user of a live (unexpired, unrevoked) session, or nullopt.
  virtual Result<std::optional<AuthUser>> findSession(std::string_view token_hash) noexcept = 0;
  /// Revokes a session; revoking an unknown one succeeds.
  virtual Result<void> revokeSession(std::string_view token_hash) noexcept = 0;
};

/// What the server knows about a request when asking who sent it.
struct AuthRequest {
  std::string_view bearer_token;  ///< from `Authorization: Bearer …`, empty if none
  std::string_view cookie_token;  ///< from the session cookie, empty if none
  std::string_view peer_address;  ///< the TCP peer, e.g. "127.0.0.1"
  /// Any request header by (case-insensitive) name.
  std::function<std::optional<std::string>(std::string_view name)> header;
};

struct Session {
  std::string token;  ///< returned to the client once; only its hash is stored
  AuthUser user;
  std::chrono::system_clock::time_point expires_at;
};

class Auth {
 public:
  virtual ~Auth() = default;

  /// Creates an account. kInvalidArgument for a malformed email or a password
  /// the policy refuses (with a message saying which), kAlreadyExists if taken.
  virtual Result<AuthUser> registerUser(UserDirectory& users, std::string_view email,
                                        std::string_view password) noexcept = 0;
  /// kUnauthenticated for an unknown email or a wrong password alike (same
  /// message, comparable time).
  virtual Result<Session> login(UserDirectory& users, std::string_view email,
                                std::string_view password) noexcept = 0;
  /// Revokes the session behind `token`.
  virtual Result<void> logout(UserDirectory& users, std::string_view token) noexcept = 0;
  /// The caller of a request, or nullopt when it carries no valid credentials.
  virtual Result<std::optional<AuthUser>> authenticate(UserDirectory& users,
                                                       const AuthRequest& request) noexcept = 0;
};

}  // namespace vessel
