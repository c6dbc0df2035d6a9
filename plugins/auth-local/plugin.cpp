// auth/local: accounts with an email and a password, kept in the host's user
// directory, and opaque session tokens.
//
// Passwords are hashed with scrypt (OpenSSL 3) at the OWASP parameters N=2^17,
// r=8, p=1 (128 MiB and a few hundred milliseconds per hash), a 16-byte random
// salt, stored as "scrypt$N$r$p$salt$hash" so that changing the parameters
// leaves old hashes verifiable. A login for an unknown email runs scrypt once
// against a dummy hash and fails with the same message as a wrong password, so
// neither the answer nor its timing tells which emails have accounts.
//
// A session token is 256 random bits, base64url without padding (43
// characters); the directory stores only its SHA-256 (lower-case hex), so a
// copy of the sessions table lets nobody in. authenticate() uses the bearer
// token when the request has one, the cookie token otherwise; a missing,
// unknown, revoked or expired token is "not signed in", not an error.
//
// Config keys (section [auth.local]):
//   scrypt_n             int  131072   scrypt cost N, a power of two (tests use ~1024)
//   scrypt_r             int  8        scrypt block size r
//   scrypt_p             int  1        scrypt parallelism p
//   session_ttl_s        int  2592000  session lifetime in seconds (30 days)
//   min_password_length  int  10       minimum password length in characters
//
// Example:
//   [auth]
//   plugin = "local"
//   [auth.local]
//   scrypt_n = 131072
//   scrypt_r = 8
//   scrypt_p = 1
//   session_ttl_s = 2592000
//   min_password_length = 10
#include "vessel/plugin.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "password_hash.hpp"
#include "vessel/auth.hpp"
#include "vessel/config.hpp"
#include "vessel/log.hpp"
#include "vessel/user_directory.hpp"
#include "vessel/worker_protocol.hpp"

namespace {

using vessel::AuthRequest;
using vessel::AuthUser;
using vessel::Error;
using vessel::ErrorCode;
using vessel::makeError;
using vessel::Result;
using vessel::Session;
using vessel::UserDirectory;

constexpr std::size_t kMaxPasswordBytes = 1024;
constexpr std::size_t kTokenBytes = 32;
constexpr std::size_t kTokenChars = 43;  // base64url of 32 bytes, unpadded
constexpr const char* kBadCredentials = "invalid email or password";

struct LocalAuthOptions {
  vessel::plugins::ScryptParams scrypt;
  std::chrono::seconds session_ttl{30 * 24 * 3600};
  std::size_t min_password_length = 10;
};

// Code points, counting every byte that does not continue a UTF-8 sequence.
std::size_t characterCount(std::string_view s) {
  std::size_t n = 0;
  for (const char c : s) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  }
  return n;
}

Error internal(const std::exception& e) {
  return makeError(ErrorCode::kInternal, std::string("auth local: ") + e.what());
}

// Only a string that could be one of our tokens reaches the directory.
bool looksLikeToken(std::string_view token) {
  if (token.size() != kTokenChars) return false;
  for (const char c : token) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

class LocalAuth final : public vessel::Auth {
 public:
  LocalAuth(LocalAuthOptions options, std::string dummy_hash)
      : options_(options), dummy_hash_(std::move(dummy_hash)) {}

  Result<AuthUser> registerUser(UserDirectory& users, std::string_view email,
                                std::string_view password) noexcept override {
    try {
      Result<std::string> address = vessel::normalizeEmail(email);
      if (!address) return std::move(address).error();
      if (characterCount(password) < options_.min_password_length) {
        return makeError(ErrorCode::kInvalidArgument,
                         "password must be at least " +
                             std::to_string(options_.min_password_length) + " characters");
      }
      if (password.size() > kMaxPasswordBytes) {
        return makeError(
            ErrorCode::kInvalidArgument,
            "password must be at most " + std::to_string(kMaxPasswordBytes) + " bytes");
      }
      Result<std::string> credential = vessel::plugins::hashPassword(password, options_.scrypt);
      if (!credential) return std::move(credential).error();
      return users.createUser(address.value(), credential.value());
    } catch (const std::exception& e) {
      return internal(e);
    }
  }

  Result<Session> login(UserDirectory& users, std::string_view email,
                        std::string_view password) noexcept override {
    try {
      const Error refused = makeError(ErrorCode::kUnauthenticated, kBadCredentials);
      // No password this long was ever accepted; refusing it before scrypt
      // caps the work one request can ask for.
      if (password.size() > kMaxPasswordBytes) return refused;
      Result<std::string> address = vessel::normalizeEmail(email);
      Result<std::optional<vessel::StoredUser>> found =
          address ? users.findUserByEmail(address.value())
                  : Result<std::optional<vessel::StoredUser>>(std::nullopt);
      if (!found) return std::move(found).error();
      const std::optional<vessel::StoredUser>& stored = found.value();

      // Exactly one scrypt on every path: the user's own hash, else the dummy.
      bool matched = false;
      if (stored && !stored->credential.empty()) {
        Result<bool> verified = vessel::plugins::verifyPassword(password, stored->credential);
        if (verified) {
          matched = verified.value();
        } else {
          vessel::log::warn("auth local: stored credential is unusable; refusing the login",
                            {{"user_id", stored->user.id}, {"reason", verified.error().message}});
          if (verified.error().code == ErrorCode::kInvalidArgument) {
            (void)vessel::plugins::verifyPassword(password, dummy_hash_);
          }
        }
      } else {
        (void)vessel::plugins::verifyPassword(password, dummy_hash_);
      }
      if (!matched) return refused;

      std::array<unsigned char, kTokenBytes> raw{};
      if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) {
        return makeError(ErrorCode::kInternal, "auth local: RAND_bytes failed: no session token");
      }
      Session session;
      session.token = vessel::plugins::base64Encode(
          std::string_view(reinterpret_cast<const char*>(raw.data()), raw.size()), true);
      OPENSSL_cleanse(raw.data(), raw.size());
      session.user = stored->user;
      session.expires_at = std::chrono::time_point_cast<std::chrono::system_clock::duration>(
          std::chrono::system_clock::now() + options_.session_ttl);
      Result<void> created = users.createSession(vessel::protocol::sha256Hex(session.token),
                                                 session.user.id, session.expires_at);
      if (!created) return std::move(created).error();
      return session;
    } catch (const std::exception& e) {
      return internal(e);
    }
  }

  Result<void> logout(UserDirectory& users, std::string_view token) noexcept override {
    try {
      if (token.empty()) return makeError(ErrorCode::kUnauthenticated, "no session token");
      // A string that is not one of our tokens names no session: nothing to revoke.
      if (!looksLikeToken(token)) return Result<void>();
      return users.revokeSession(vessel::protocol::sha256Hex(token));
    } catch (const std::exception& e) {
      return internal(e);
    }
  }

  Result<std::optional<AuthUser>> authenticate(UserDirectory& users,
                                               const AuthRequest& request) noexcept override {
    try {
      // A bearer token the client chose to send decides; the cookie is only
      // consulted without one, so a bad bearer token never falls back to it.
      const std::string_view token =
          request.bearer_token.empty() ? request.cookie_token : request.bearer_token;
      if (!looksLikeToken(token)) return std::optional<AuthUser>();
      return users.findSession(vessel::protocol::sha256Hex(token));
    } catch (const std::exception& e) {
      return internal(e);
    }
  }

 private:
  LocalAuthOptions options_;
  std::string dummy_hash_;  // what an unknown email's password is checked against
};

const std::vector<vessel::ConfigField>* fields() noexcept {
  static const std::vector<vessel::ConfigField> kFields = {
      {"scrypt_n",
       vessel::ConfigType::kInt,
       std::int64_t{1} << 17,
       "scrypt cost N (a power of two); 2^17 is OWASP's recommendation",
       false,
       2,
       std::int64_t{1} << 20,
       {}},
      {"scrypt_r",
       vessel::ConfigType::kInt,
       std::int64_t{8},
       "scrypt block size r",
       false,
       1,
       32,
       {}},
      {"scrypt_p",
       vessel::ConfigType::kInt,
       std::int64_t{1},
       "scrypt parallelism p",
       false,
       1,
       16,
       {}},
      {"session_ttl_s",
       vessel::ConfigType::kInt,
       std::int64_t{30} * 24 * 3600,
       "Session lifetime in seconds",
       false,
       60,
       std::int64_t{366} * 24 * 3600,
       {}},
      {"min_password_length",
       vessel::ConfigType::kInt,
       std::int64_t{10},
       "Minimum password length in characters (Unicode code points)",
       false,
       8,
       128,
       {}},
  };
  return &kFields;
}

void* create(const vessel::Config& config, std::string& error) noexcept {
  try {
    LocalAuthOptions options;
    options.scrypt.n = static_cast<std::uint64_t>(config.getInt("scrypt_n"));
    options.scrypt.r = static_cast<std::uint64_t>(config.getInt("scrypt_r"));
    options.scrypt.p = static_cast<std::uint64_t>(config.getInt("scrypt_p"));
    options.session_ttl = std::chrono::seconds(config.getInt("session_ttl_s"));
    options.min_password_length = static_cast<std::size_t>(config.getInt("min_password_length"));
    // Hashing the dummy password checks the parameters with OpenSSL itself
    // (e.g. r=1 caps N below 2^16), so a bad combination fails at startup.
    std::array<unsigned char, 16> random{};
    if (RAND_bytes(random.data(), static_cast<int>(random.size())) != 1) {
      error = "RAND_bytes failed";
      return nullptr;
    }
    Result<std::string> dummy = vessel::plugins::hashPassword(
        vessel::plugins::base64Encode(
            std::string_view(reinterpret_cast<const char*>(random.data()), random.size())),
        options.scrypt);
    if (!dummy) {
      error = dummy.error().message;
      return nullptr;
    }
    return static_cast<vessel::Auth*>(new LocalAuth(options, std::move(dummy).value()));
  } catch (const std::exception& e) {
    error = e.what();
    return nullptr;
  }
}

void destroy(void* object) noexcept { delete static_cast<vessel::Auth*>(object); }

}  // namespace

VESSEL_PLUGIN(vessel::PluginKind::kAuth, "local", "0.1.0",
              "Accounts with email and password (scrypt), opaque session tokens", fields, create,
              destroy)
