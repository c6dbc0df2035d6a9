// The auth plugins (local, trusted-header) loaded from their built files through
// the real plugin host and config schema, against an in-memory UserDirectory
// that records what it was asked to store; plus the local plugin's scrypt
// encoding and base64, called directly.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "vessel/auth.hpp"
#include "vessel/plugin_host.hpp"
#include "vessel/runtime.hpp"
#include "vessel/worker_protocol.hpp"

#ifdef VESSEL_TEST_AUTH_LOCAL
#include "password_hash.hpp"
#endif

namespace vessel {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::system_clock;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::filesystem::path pluginFile(const std::string& folder) {
  return std::filesystem::path(env("VESSEL_TEST_PLUGIN_DIR")) / folder /
         ("libvessel-" + folder + ".so");
}

std::string lower(std::string s) {
  for (char& c : s) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  return s;
}

// --- the directory double -----------------------------------------------------

// Keeps users by lower-cased email and sessions by token hash, as the
// PostgreSQL directory does, and exposes both so tests can see exactly what a
// plugin stored. `failing` makes every call answer kUnavailable.
class MemoryDirectory final : public UserDirectory {
 public:
  struct SessionRow {
    std::string user_id;
    Clock::time_point expires_at;
    bool revoked = false;
  };

  Result<AuthUser> createUser(std::string_view email,
                              std::string_view credential) noexcept override {
    std::lock_guard lock(mutex);
    ++calls;
    if (failing) return down();
    const std::string key = lower(std::string(email));
    if (users.count(key)) {
      return makeError(ErrorCode::kAlreadyExists, "email " + std::string(email) + " is taken");
    }
    StoredUser u{AuthUser{newId(), std::string(email)}, std::string(credential)};
    users[key] = u;
    return u.user;
  }

  Result<std::optional<StoredUser>> findUserByEmail(std::string_view email) noexcept override {
    std::lock_guard lock(mutex);
    ++calls;
    if (failing) return down();
    const auto it = users.find(lower(std::string(email)));
    if (it == users.end()) return std::optional<StoredUser>();
    return std::optional<StoredUser>(it->second);
  }

  Result<AuthUser> findOrCreateUser(std::string_view email) noexcept override {
    std::lock_guard lock(mutex);
    ++calls;
    if (failing) return down();
    const std::string key = lower(std::string(email));
    auto it = users.find(key);
    if (it == users.end()) {
      it = users.emplace(key, StoredUser{AuthUser{newId(), std::string(email)}, ""}).first;
    }
    return it->second.user;
  }

  Result<void> createSession(std::string_view token_hash, std::string_view user_id,
                             Clock::time_point expires_at) noexcept override {
    std::lock_guard lock(mutex);
    ++calls;
    if (failing) return down();
    sessions[std::string(token_hash)] = SessionRow{std::string(user_id), expires_at, false};
    return {};
  }

  Result<std::optional<AuthUser>> findSession(std::string_view token_hash) noexcept override {
    std::lock_guard lock(mutex);
    ++calls;
    ++session_lookups;
    if (failing) return down();
    const auto it = sessions.find(std::string(token_hash));
    if (it == sessions.end() || it->second.revoked || it->second.expires_at <= Clock::now()) {
      return std::optional<AuthUser>();
    }
    for (const auto& [key, u] : users) {
      if (u.user.id == it->second.user_id) return std::optional<AuthUser>(u.user);
    }
    return std::optional<AuthUser>();
  }

  Result<void> revokeSession(std::string_view token_hash) noexcept override {
    std::lock_guard lock(mutex);
    ++calls;
    if (failing) return down();
    const auto it = sessions.find(std::string(token_hash));
    if (it != sessions.end()) it->second.revoked = true;
    return {};
  }

  std::mutex mutex;
  std::map<std::string, StoredUser> users;
  std::map<std::string, SessionRow> sessions;
  int calls = 0;
  int session_lookups = 0;
  bool failing = false;

 private:
  static Error down() { return makeError(ErrorCode::kUnavailable, "directory is down"); }
  std::string newId() {
    char id[37];
    std::snprintf(id, sizeof id, "00000000-0000-4000-8000-%012d", ++next_id_);
    return id;
  }
  int next_id_ = 0;
};

// --- host plumbing ------------------------------------------------------------

// Loads one auth plugin file and builds it from `toml` validated against the
// core schema plus the plugin's own keys, as a server does.
struct LoadedAuth {
  PluginHost host;
  Result<Config> config = makeError(ErrorCode::kInternal, "not loaded");
  Result<std::shared_ptr<Auth>> auth = makeError(ErrorCode::kInternal, "not loaded");
};

std::unique_ptr<LoadedAuth> loadAuth(const std::string& folder, const std::string& name,
                                     const std::string& toml) {
  auto loaded = std::make_unique<LoadedAuth>();
  auto info = loaded->host.load(pluginFile(folder));
  if (!info) {
    loaded->auth = info.error();
    return loaded;
  }
  ConfigSchema schema = Runtime::coreSchema();
  loaded->host.addToSchema(schema);
  loaded->config = Config::parse(schema, toml, "test.toml",
                                 [](const std::string&) { return std::optional<std::string>(); });
  if (!loaded->config) {
    loaded->auth = loaded->config.error();
    return loaded;
  }
  loaded->auth = loaded->host.createAuth(name, loaded->config.value());
  return loaded;
}

#ifdef VESSEL_TEST_AUTH_LOCAL

// --- auth/local -----------------------------------------------------------------

AuthRequest bearer(std::string_view token) {
  AuthRequest r;
  r.bearer_token = token;
  r.peer_address = "127.0.0.1";
  return r;
}

constexpr const char* kFastScrypt = "[auth.local]\nscrypt_n = 1024\nscrypt_r = 8\nscrypt_p = 1\n";
constexpr const char* kPassword = "correct horse battery";

class LocalAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    loaded_ = loadAuth(
        "auth-local", "local",
        std::string("[auth]\nplugin = \"local\"\n") + kFastScrypt + "session_ttl_s = 3600\n");
    ASSERT_TRUE(loaded_->auth.ok()) << loaded_->auth.error().message;
    auth_ = loaded_->auth.value();
  }

  AuthUser registered(const std::string& email, const std::string& password = kPassword) {
    auto u = auth_->registerUser(dir_, email, password);
    EXPECT_TRUE(u.ok()) << (u.ok() ? "" : u.error().message);
    return u.ok() ? u.value() : AuthUser{};
  }

  Session loggedIn(const std::string& email, const std::string& password = kPassword) {
    auto s = auth_->login(dir_, email, password);
    EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
    return s.ok() ? s.value() : Session{};
  }

  std::optional<AuthUser> who(const AuthRequest& request) {
    auto r = auth_->authenticate(dir_, request);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    return r.ok() ? r.value() : std::nullopt;
  }

  MemoryDirectory dir_;
  std::unique_ptr<LoadedAuth> loaded_;
  std::shared_ptr<Auth> auth_;
};

TEST_F(LocalAuthTest, RegisterLoginAuthenticate) {
  const AuthUser ann = registered("  Ann@Example.com\n");
  EXPECT_EQ(ann.email, "Ann@Example.com") << "surrounding whitespace is trimmed, case kept";
  const Session s = loggedIn("ann@example.COM");
  EXPECT_EQ(s.user.id, ann.id);
  EXPECT_EQ(s.token.size(), 43u);
  EXPECT_EQ(s.token.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                      "0123456789-_"),
            std::string::npos)
      << s.token;
  const auto me = who(bearer(s.token));
  ASSERT_TRUE(me.has_value());
  EXPECT_EQ(me->id, ann.id);
  EXPECT_NE(loggedIn("ann@example.com").token, s.token) << "every login gets a fresh token";
}

TEST_F(LocalAuthTest, WrongPasswordAndUnknownEmailGetTheSameAnswer) {
  registered("bob@example.com");
  auto wrong = auth_->login(dir_, "bob@example.com", "correct horse battery!");
  ASSERT_FALSE(wrong.ok());
  auto unknown = auth_->login(dir_, "nobody@example.com", kPassword);
  ASSERT_FALSE(unknown.ok());
  auto malformed = auth_->login(dir_, "not an email", kPassword);
  ASSERT_FALSE(malformed.ok());
  for (const auto* r : {&wrong, &unknown, &malformed}) {
    EXPECT_EQ(r->error().code, ErrorCode::kUnauthenticated);
    EXPECT_EQ(r->error().message, "invalid email or password");
  }
  EXPECT_TRUE(dir_.sessions.empty());
}

// An unknown email must cost one scrypt like a wrong password does; without
// the dummy hash it would answer in microseconds instead of milliseconds.
TEST_F(LocalAuthTest, UnknownEmailTakesAsLongAsAWrongPassword) {
  auto slow = loadAuth("auth-local", "local", "[auth.local]\nscrypt_n = 16384\n");
  ASSERT_TRUE(slow->auth.ok()) << slow->auth.error().message;
  Auth& auth = *slow->auth.value();
  ASSERT_TRUE(auth.registerUser(dir_, "carol@example.com", kPassword).ok());
  // Interleaved, medians of seven: a burst of load elsewhere hits both sides.
  std::vector<double> known_ms, unknown_ms;
  const auto time = [&](const char* email, std::vector<double>& into) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = auth.login(dir_, email, "wrong password here");
    into.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    EXPECT_FALSE(r.ok());
  };
  for (int i = 0; i < 7; ++i) {
    time("carol@example.com", known_ms);
    time("dave@example.com", unknown_ms);
  }
  std::sort(known_ms.begin(), known_ms.end());
  std::sort(unknown_ms.begin(), unknown_ms.end());
  const double known = known_ms[3];
  const double unknown = unknown_ms[3];
  EXPECT_GT(known, 1.0) << "scrypt with N=16384 should take milliseconds";
  EXPECT_GT(unknown, known / 3) << "known " << known << " ms, unknown " << unknown << " ms";
  EXPECT_LT(unknown, known * 3) << "known " << known << " ms, unknown " << unknown << " ms";
}

TEST_F(LocalAuthTest, PasswordPolicy) {
  const auto refused = [&](const std::string& email, const std::string& password) {
    auto r = auth_->registerUser(dir_, email, password);
    EXPECT_FALSE(r.ok()) << email;
    return r.ok() ? Error{} : r.error();
  };
  Error e = refused("a@example.com", "short");
  EXPECT_EQ(e.code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(e.message, "password must be at least 10 characters");
  EXPECT_EQ(refused("b@example.com", "123456789").code, ErrorCode::kInvalidArgument);
  // Nine characters in eighteen bytes: counted as characters, not bytes.
  e = refused("c@example.com",
              "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
              "\xc3\xa9");
  EXPECT_EQ(e.message, "password must be at least 10 characters");
  e = refused("d@example.com", std::string(1025, 'x'));
  EXPECT_EQ(e.code, ErrorCode::kInvalidArgument);
  EXPECT_TRUE(dir_.users.empty()) << "a refused password creates nothing";

  registered("e@example.com", "1234567890");
  registered("f@example.com", std::string(1024, 'x'));
  registered("g@example.com",
             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
             "\xc3\xa9\xc3\xa9");
  loggedIn("g@example.com",
           "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
           "\xc3\xa9\xc3\xa9");
}

TEST_F(LocalAuthTest, MinPasswordLengthIsConfigurable) {
  auto strict =
      loadAuth("auth-local", "local", std::string(kFastScrypt) + "min_password_length = 16\n");
  ASSERT_TRUE(strict->auth.ok()) << strict->auth.error().message;
  auto r = strict->auth.value()->registerUser(dir_, "a@example.com", "fifteen chars!!");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "password must be at least 16 characters");
}

TEST_F(LocalAuthTest, BadEmailsAreRefused) {
  const std::vector<std::string> bad = {
      "",
      "   ",
      "plain",
      "@example.com",
      "ann@",
      "ann@example",
      "ann@@example.com",
      "ann@b@example.com",
      "ann smith@example.com",
      "ann@exa mple.com",
      "ann@.example.com",
      "ann@example.com.",
      "ann@example..com",
      std::string("ann\x01@example.com"),
      std::string("ann\x7f@example.com"),
      std::string("ann@example.com\0x", 17),
      "\xff\xfe@example.com",
      std::string(243, 'a') + "@example.com",  // 255 bytes
  };
  for (const std::string& email : bad) {
    auto r = auth_->registerUser(dir_, email, kPassword);
    ASSERT_FALSE(r.ok()) << "accepted '" << email << "'";
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << email;
    EXPECT_EQ(r.error().message, "email is not a valid address") << email;
  }
  EXPECT_TRUE(dir_.users.empty());
  registered(std::string(242, 'a') + "@example.com");  // 254 bytes: the limit
  registered("\tx.y+tag@sub.example.co.uk ");
  registered("j\xc3\xbcrgen@example.de");
}

TEST_F(LocalAuthTest, DuplicateEmailInAnyCaseIsRefused) {
  registered("Erin@Example.com");
  for (const char* again : {"Erin@Example.com", "erin@example.com", " ERIN@EXAMPLE.COM"}) {
    auto r = auth_->registerUser(dir_, again, "another password");
    ASSERT_FALSE(r.ok()) << again;
    EXPECT_EQ(r.error().code, ErrorCode::kAlreadyExists) << again;
  }
  EXPECT_EQ(dir_.users.size(), 1u);
  loggedIn("erin@example.com");  // the original password still works
}

TEST_F(LocalAuthTest, OnlyHashesAreStored) {
  const AuthUser frank = registered("frank@example.com");
  const Session s = loggedIn("frank@example.com");
  // The password: a scrypt encoding with the configured parameters, never the text.
  const std::string& credential = dir_.users.at("frank@example.com").credential;
  EXPECT_EQ(credential.rfind("scrypt$1024$8$1$", 0), 0u) << credential;
  EXPECT_EQ(credential.find(kPassword), std::string::npos);
  // The token: stored as the lower-hex SHA-256 of itself, nowhere in plain.
  ASSERT_EQ(dir_.sessions.size(), 1u);
  const auto& [hash, row] = *dir_.sessions.begin();
  EXPECT_EQ(hash, protocol::sha256Hex(s.token));
  EXPECT_EQ(hash.size(), 64u);
  EXPECT_EQ(hash.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(hash.find(s.token), std::string::npos);
  EXPECT_EQ(row.user_id, frank.id);
  // Expiry is the configured session_ttl_s (3600) from now.
  EXPECT_EQ(row.expires_at, s.expires_at);
  const auto ttl = s.expires_at - Clock::now();
  EXPECT_GT(ttl, 3590s);
  EXPECT_LE(ttl, 3600s);
}

TEST_F(LocalAuthTest, LogoutRevokesOnlyThatSession) {
  registered("gina@example.com");
  const Session phone = loggedIn("gina@example.com");
  const Session laptop = loggedIn("gina@example.com");
  ASSERT_TRUE(auth_->logout(dir_, phone.token).ok());
  EXPECT_FALSE(who(bearer(phone.token)).has_value());
  EXPECT_TRUE(who(bearer(laptop.token)).has_value());
  EXPECT_TRUE(dir_.sessions.at(protocol::sha256Hex(phone.token)).revoked);
  EXPECT_TRUE(auth_->logout(dir_, phone.token).ok()) << "logging out twice is fine";
  EXPECT_TRUE(auth_->logout(dir_, "not-a-token").ok());
  auto none = auth_->logout(dir_, "");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, ErrorCode::kUnauthenticated);
}

TEST_F(LocalAuthTest, ExpiredSessionIsRefused) {
  registered("hal@example.com");
  const Session s = loggedIn("hal@example.com");
  ASSERT_TRUE(who(bearer(s.token)).has_value());
  dir_.sessions.at(protocol::sha256Hex(s.token)).expires_at = Clock::now() - 1s;
  EXPECT_FALSE(who(bearer(s.token)).has_value());
}

TEST_F(LocalAuthTest, BearerBeatsCookie) {
  const AuthUser ivy = registered("ivy@example.com");
  const AuthUser jon = registered("jon@example.com");
  const Session a = loggedIn("ivy@example.com");
  const Session b = loggedIn("jon@example.com");
  AuthRequest both = bearer(a.token);
  both.cookie_token = b.token;
  auto me = who(both);
  ASSERT_TRUE(me.has_value());
  EXPECT_EQ(me->id, ivy.id);

  AuthRequest cookie_only;
  cookie_only.cookie_token = b.token;
  me = who(cookie_only);
  ASSERT_TRUE(me.has_value());
  EXPECT_EQ(me->id, jon.id);

  // A bearer token that fails does not fall back to the cookie.
  const std::string unknown_token(43, 'A');  // AuthRequest holds views: keep it alive
  AuthRequest bad_bearer = bearer(unknown_token);
  bad_bearer.cookie_token = b.token;
  EXPECT_FALSE(who(bad_bearer).has_value());
}

TEST_F(LocalAuthTest, MalformedTokensNeverReachTheDirectory) {
  registered("kim@example.com");
  const Session s = loggedIn("kim@example.com");
  for (const std::string& t : {std::string(), s.token.substr(1), s.token + "A",
                               s.token.substr(0, 42) + "=", s.token.substr(0, 42) + "+"}) {
    EXPECT_FALSE(who(bearer(t)).has_value()) << t;
  }
  EXPECT_EQ(dir_.session_lookups, 0);
  EXPECT_FALSE(who(AuthRequest{}).has_value());
}

TEST_F(LocalAuthTest, DirectoryFailuresAreErrorsNotRefusals) {
  registered("lee@example.com");
  const Session s = loggedIn("lee@example.com");
  dir_.failing = true;
  auto login = auth_->login(dir_, "lee@example.com", kPassword);
  ASSERT_FALSE(login.ok());
  EXPECT_EQ(login.error().code, ErrorCode::kUnavailable);
  auto who = auth_->authenticate(dir_, bearer(s.token));
  ASSERT_FALSE(who.ok());
  EXPECT_EQ(who.error().code, ErrorCode::kUnavailable);
  auto reg = auth_->registerUser(dir_, "max@example.com", kPassword);
  ASSERT_FALSE(reg.ok());
  EXPECT_EQ(reg.error().code, ErrorCode::kUnavailable);
}

TEST_F(LocalAuthTest, UsersWithoutAUsableCredentialCannotLogIn) {
  // Made by the trusted-header plugin (no password), or a damaged row.
  ASSERT_TRUE(dir_.findOrCreateUser("sso@example.com").ok());
  ASSERT_TRUE(dir_.createUser("bad@example.com", "scrypt$garbage").ok());
  ASSERT_TRUE(dir_.createUser("huge@example.com",
                              "scrypt$1048576$32$16$AAAAAAAAAAA=$"
                              "AAAAAAAAAAAAAAAAAAAAAA==")
                  .ok());
  for (const char* email : {"sso@example.com", "bad@example.com", "huge@example.com"}) {
    auto r = auth_->login(dir_, email, "");
    ASSERT_FALSE(r.ok()) << email;
    EXPECT_EQ(r.error().code, ErrorCode::kUnauthenticated) << email;
    EXPECT_EQ(r.error().message, "invalid email or password") << email;
  }
  EXPECT_TRUE(dir_.sessions.empty());
}

TEST(LocalAuthConfig, KeysAreValidatedLikeOtherPluginSections) {
  auto unknown_key = loadAuth("auth-local", "local", "[auth.local]\nscrypt_x = 1\n");
  ASSERT_FALSE(unknown_key->auth.ok());
  EXPECT_NE(unknown_key->auth.error().message.find("auth.local.scrypt_x"), std::string::npos)
      << unknown_key->auth.error().message;

  auto out_of_range = loadAuth("auth-local", "local", "[auth.local]\nsession_ttl_s = 1\n");
  ASSERT_FALSE(out_of_range->auth.ok());
  EXPECT_NE(out_of_range->auth.error().message.find("session_ttl_s"), std::string::npos);

  auto not_power = loadAuth("auth-local", "local", "[auth.local]\nscrypt_n = 1000\n");
  ASSERT_FALSE(not_power->auth.ok());
  EXPECT_EQ(not_power->auth.error().code, ErrorCode::kConfig);
  EXPECT_NE(not_power->auth.error().message.find("power of two"), std::string::npos)
      << not_power->auth.error().message;

  // OpenSSL's own limit (N < 2^(16 r)) is found at creation, not at the first login.
  auto too_big_for_r =
      loadAuth("auth-local", "local", "[auth.local]\nscrypt_n = 65536\nscrypt_r = 1\n");
  ASSERT_FALSE(too_big_for_r->auth.ok());
  EXPECT_EQ(too_big_for_r->auth.error().code, ErrorCode::kConfig);

  auto defaults = loadAuth("auth-local", "local", "");
  ASSERT_TRUE(defaults->config.ok());
  EXPECT_EQ(defaults->config.value().getString("auth.plugin"), "local");
  EXPECT_EQ(defaults->config.value().getInt("auth.local.scrypt_n"), 131072);
  EXPECT_EQ(defaults->config.value().getInt("auth.local.session_ttl_s"), 30 * 24 * 3600);
  EXPECT_EQ(defaults->config.value().getInt("auth.local.min_password_length"), 10);
}

// --- the scrypt encoding and base64 ---------------------------------------------

std::string unhex(std::string_view hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out += static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16));
  }
  return out;
}

TEST(PasswordHash, RoundTrip) {
  const plugins::ScryptParams params{1024, 8, 1};
  auto encoded = plugins::hashPassword("hunter2 but longer", params);
  ASSERT_TRUE(encoded.ok()) << encoded.error().message;
  auto parsed = plugins::parsePasswordHash(encoded.value());
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed.value().params.n, 1024u);
  EXPECT_EQ(parsed.value().params.r, 8u);
  EXPECT_EQ(parsed.value().params.p, 1u);
  EXPECT_EQ(parsed.value().salt.size(), 16u);
  EXPECT_EQ(parsed.value().hash.size(), 32u);
  EXPECT_EQ(plugins::encodePasswordHash(parsed.value()), encoded.value());

  auto right = plugins::verifyPassword("hunter2 but longer", encoded.value());
  ASSERT_TRUE(right.ok());
  EXPECT_TRUE(right.value());
  auto wrong = plugins::verifyPassword("hunter2 but longer!", encoded.value());
  ASSERT_TRUE(wrong.ok());
  EXPECT_FALSE(wrong.value());

  auto again = plugins::hashPassword("hunter2 but longer", params);
  ASSERT_TRUE(again.ok());
  EXPECT_NE(again.value(), encoded.value()) << "each hash has its own salt";
}

// RFC 7914 section 12, third vector: proves it is scrypt, with N, r, p in place.
TEST(PasswordHash, MatchesTheRfc7914Vector) {
  plugins::PasswordHash h;
  h.params = plugins::ScryptParams{16384, 8, 1};
  h.salt = "SodiumChloride";
  h.hash = unhex(
      "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2"
      "d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887");
  const std::string encoded = plugins::encodePasswordHash(h);
  auto ok = plugins::verifyPassword("pleaseletmein", encoded);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_TRUE(ok.value());
  auto no = plugins::verifyPassword("pleaseletmeout", encoded);
  ASSERT_TRUE(no.ok());
  EXPECT_FALSE(no.value());
}

TEST(PasswordHash, ParsingRefusesGarbage) {
  const std::string salt = "c2FsdHNhbHRzYWx0c2FsdA==";                      // 16 bytes
  const std::string hash = "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g=";  // 32 bytes
  ASSERT_TRUE(plugins::parsePasswordHash("scrypt$1024$8$1$" + salt + "$" + hash).ok());
  const std::vector<std::string> garbage = {
      "",
      "scrypt",
      "scrypt$$$$$",
      "bcrypt$1024$8$1$" + salt + "$" + hash,
      "SCRYPT$1024$8$1$" + salt + "$" + hash,
      "scrypt$1024$8$1$" + salt,
      "scrypt$1024$8$1$" + salt + "$" + hash + "$",
      "scrypt$1024$8$1$" + salt + "$" + hash + "$x",
      "scrypt$1000$8$1$" + salt + "$" + hash,                  // N not a power of two
      "scrypt$1$8$1$" + salt + "$" + hash,                     // N too small
      "scrypt$2097152$8$1$" + salt + "$" + hash,               // N too big
      "scrypt$1048576$16$1$" + salt + "$" + hash,              // 2 GiB
      "scrypt$01024$8$1$" + salt + "$" + hash,                 // leading zero
      "scrypt$+1024$8$1$" + salt + "$" + hash,                 // sign
      "scrypt$-1024$8$1$" + salt + "$" + hash,                 // sign
      "scrypt$ 1024$8$1$" + salt + "$" + hash,                 // space
      "scrypt$1024x$8$1$" + salt + "$" + hash,                 // trailing junk
      "scrypt$18446744073709551616$8$1$" + salt + "$" + hash,  // overflows 64 bits
      "scrypt$1024$0$1$" + salt + "$" + hash,                  // r = 0
      "scrypt$1024$33$1$" + salt + "$" + hash,                 // r too big
      "scrypt$1024$8$0$" + salt + "$" + hash,                  // p = 0
      "scrypt$1024$8$17$" + salt + "$" + hash,                 // p too big
      "scrypt$1024$8$1$$" + hash,                              // no salt
      "scrypt$1024$8$1$c2FsdA==$" + hash,                      // 4-byte salt
      "scrypt$1024$8$1$" + salt + "$aGFzaA==",                 // 4-byte hash
      "scrypt$1024$8$1$" + salt + "$" + hash.substr(0, 43),    // padding missing
      "scrypt$1024$8$1$" + salt + "$" + hash.substr(0, 43) + "!",
      "scrypt$1024$8$1$" + salt + "$" + hash.substr(0, 42) + "h=",  // non-zero trailing bits
      "scrypt$1024$8$1$" + salt.substr(0, 22) + "\n=$" + hash,
  };
  for (const std::string& g : garbage) {
    auto parsed = plugins::parsePasswordHash(g);
    EXPECT_FALSE(parsed.ok()) << "accepted '" << g << "'";
    if (!parsed.ok()) {
      EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument) << g;
    }
    EXPECT_FALSE(plugins::verifyPassword("anything at all", g).ok()) << g;
  }
}

TEST(PasswordHash, Base64FollowsRfc4648) {
  const std::vector<std::pair<std::string, std::string>> vectors = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, coded] : vectors) {
    EXPECT_EQ(plugins::base64Encode(plain), coded);
    EXPECT_EQ(plugins::base64Decode(coded), plain) << coded;
    std::string url = coded;
    url.erase(url.find_last_not_of('=') + 1);
    EXPECT_EQ(plugins::base64Encode(plain, true), url);
    EXPECT_EQ(plugins::base64Decode(url, true), plain) << url;
  }
  EXPECT_EQ(plugins::base64Encode("\xfb\xff", true), "-_8");
  EXPECT_EQ(plugins::base64Encode("\xfb\xff"), "+/8=");
  for (const char* bad : {"Zg=", "Zg", "Zh==", "Zm9v\n", "Z===", "=Zm9", "-_8="}) {
    EXPECT_FALSE(plugins::base64Decode(bad).has_value()) << bad;
  }
  for (const char* bad : {"Zg==", "Z", "+/8", "Zh"}) {
    EXPECT_FALSE(plugins::base64Decode(bad, true).has_value()) << bad;
  }
}

#endif  // VESSEL_TEST_AUTH_LOCAL

#ifdef VESSEL_TEST_AUTH_TRUSTED_HEADER

// --- auth/trusted-header -----------------------------------------------------------

class TrustedHeaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    loaded_ =
        loadAuth("auth-trusted-header", "trusted-header", "[auth]\nplugin = \"trusted-header\"\n");
    ASSERT_TRUE(loaded_->auth.ok()) << loaded_->auth.error().message;
    auth_ = loaded_->auth.value();
  }

  // A request from `peer` whose headers are `headers` (looked up case-insensitively).
  static AuthRequest request(std::string_view peer, std::map<std::string, std::string> headers) {
    AuthRequest r;
    r.peer_address = peer;
    r.header = [headers = std::move(headers)](std::string_view name) {
      for (const auto& [k, v] : headers) {
        if (lower(k) == lower(std::string(name))) return std::optional<std::string>(v);
      }
      return std::optional<std::string>();
    };
    return r;
  }

  std::optional<AuthUser> who(Auth& auth, const AuthRequest& r) {
    auto u = auth.authenticate(dir_, r);
    EXPECT_TRUE(u.ok()) << (u.ok() ? "" : u.error().message);
    return u.ok() ? u.value() : std::nullopt;
  }

  MemoryDirectory dir_;
  std::unique_ptr<LoadedAuth> loaded_;
  std::shared_ptr<Auth> auth_;
};

TEST_F(TrustedHeaderTest, TrustsTheProxysHeader) {
  const auto first = who(*auth_, request("127.0.0.1", {{"X-Forwarded-Email", "Nia@Example.com"}}));
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->email, "Nia@Example.com");
  ASSERT_EQ(dir_.users.size(), 1u);
  EXPECT_EQ(dir_.users.begin()->second.credential, "") << "no password for SSO users";
  for (const char* peer : {"::1", "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1"}) {
    const auto again = who(*auth_, request(peer, {{"x-forwarded-email", "nia@example.com"}}));
    ASSERT_TRUE(again.has_value()) << peer;
    EXPECT_EQ(again->id, first->id) << peer;
  }
  EXPECT_EQ(dir_.users.size(), 1u);
}

TEST_F(TrustedHeaderTest, IgnoresUntrustedPeers) {
  for (const char* peer : {"10.0.0.7", "127.0.0.2", "::2", "", "localhost", "127.0.0.1:8080"}) {
    EXPECT_FALSE(who(*auth_, request(peer, {{"X-Forwarded-Email", "eve@example.com"}}))) << peer;
  }
  EXPECT_EQ(dir_.calls, 0) << "an untrusted request must not create or look up anyone";
}

TEST_F(TrustedHeaderTest, NoHeaderOrABadEmailIsNotSignedIn) {
  EXPECT_FALSE(who(*auth_, request("127.0.0.1", {})));
  EXPECT_FALSE(who(*auth_, request("127.0.0.1", {{"X-Forwarded-User", "olga@example.com"}})));
  EXPECT_FALSE(who(*auth_, request("127.0.0.1", {{"X-Forwarded-Email", ""}})));
  EXPECT_FALSE(who(*auth_, request("127.0.0.1", {{"X-Forwarded-Email", "olga"}})));
  AuthRequest no_lookup;
  no_lookup.peer_address = "127.0.0.1";
  EXPECT_FALSE(who(*auth_, no_lookup));
  EXPECT_TRUE(dir_.users.empty());
}

TEST_F(TrustedHeaderTest, AccountOperationsBelongToTheProxy) {
  const std::string message = "accounts are managed by the SSO proxy (auth plugin trusted-header)";
  auto reg = auth_->registerUser(dir_, "pat@example.com", "a long enough password");
  ASSERT_FALSE(reg.ok());
  EXPECT_EQ(reg.error().code, ErrorCode::kUnsupportedInput);
  EXPECT_EQ(reg.error().message, message);
  auto login = auth_->login(dir_, "pat@example.com", "a long enough password");
  ASSERT_FALSE(login.ok());
  EXPECT_EQ(login.error().code, ErrorCode::kUnsupportedInput);
  EXPECT_EQ(login.error().message, message);
  auto logout = auth_->logout(dir_, "token");
  ASSERT_FALSE(logout.ok());
  EXPECT_EQ(logout.error().code, ErrorCode::kUnsupportedInput);
  EXPECT_EQ(logout.error().message, message);
  EXPECT_EQ(dir_.calls, 0);
}

TEST_F(TrustedHeaderTest, HeaderAndProxiesAreConfigurable) {
  auto custom = loadAuth("auth-trusted-header", "trusted-header",
                         "[auth.trusted-header]\nheader = \"X-Auth-Request-Email\"\n"
                         "trusted_proxies = [\"10.0.0.5\", \"fd00::5\"]\n");
  ASSERT_TRUE(custom->auth.ok()) << custom->auth.error().message;
  Auth& auth = *custom->auth.value();
  EXPECT_FALSE(who(auth, request("127.0.0.1", {{"X-Auth-Request-Email", "quinn@example.com"}})))
      << "the default proxies are replaced, not extended";
  EXPECT_FALSE(who(auth, request("10.0.0.5", {{"X-Forwarded-Email", "quinn@example.com"}})));
  EXPECT_TRUE(who(auth, request("10.0.0.5", {{"X-Auth-Request-Email", "quinn@example.com"}})));
  EXPECT_TRUE(who(auth, request("FD00:0::5", {{"X-Auth-Request-Email", "quinn@example.com"}})));
}

TEST_F(TrustedHeaderTest, DirectoryFailuresAreErrors) {
  dir_.failing = true;
  auto r =
      auth_->authenticate(dir_, request("127.0.0.1", {{"X-Forwarded-Email", "r@example.com"}}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
}

TEST(TrustedHeaderConfig, RefusesWhatCannotWork) {
  auto bad_ip = loadAuth("auth-trusted-header", "trusted-header",
                         "[auth.trusted-header]\ntrusted_proxies = [\"127.0.0.1\", \"proxy\"]\n");
  ASSERT_FALSE(bad_ip->auth.ok());
  EXPECT_EQ(bad_ip->auth.error().code, ErrorCode::kConfig);
  EXPECT_NE(bad_ip->auth.error().message.find("'proxy' is not an IP address"), std::string::npos)
      << bad_ip->auth.error().message;
  auto bad_header = loadAuth("auth-trusted-header", "trusted-header",
                             "[auth.trusted-header]\nheader = \"X Email\"\n");
  ASSERT_FALSE(bad_header->auth.ok());
  EXPECT_EQ(bad_header->auth.error().code, ErrorCode::kConfig);
  auto unknown_key =
      loadAuth("auth-trusted-header", "trusted-header", "[auth.trusted-header]\nheaders = \"X\"\n");
  ASSERT_FALSE(unknown_key->auth.ok());
  EXPECT_NE(unknown_key->auth.error().message.find("auth.trusted-header.headers"),
            std::string::npos)
      << unknown_key->auth.error().message;
}

#endif  // VESSEL_TEST_AUTH_TRUSTED_HEADER

}  // namespace
}  // namespace vessel
