// auth/trusted-header: for running behind a single-sign-on proxy (oauth2-proxy,
// Authelia, Pomerium, ...) that has already authenticated the user and passes
// their email in a request header. The user is created in the host's user
// directory, without a password, the first time their email is seen.
//
// Only requests whose TCP peer is one of `trusted_proxies` are believed: anyone
// else who sends the header is simply not signed in. Addresses compare as
// addresses, so "::ffff:127.0.0.1" (a dual-stack socket) matches "127.0.0.1".
// The proxy must overwrite or strip the header on what it forwards; otherwise
// a client can name any user. There are no passwords or sessions here:
// register, login and logout answer kUnsupportedInput.
//
// Config keys (section [auth.trusted-header]):
//   header           string  "X-Forwarded-Email"      header carrying the user's email
//   trusted_proxies  list    ["127.0.0.1", "::1"]     peer IPs (v4 or v6) allowed to set it
//
// Example:
//   [auth]
//   plugin = "trusted-header"
//   [auth.trusted-header]
//   header = "X-Forwarded-Email"
//   trusted_proxies = ["127.0.0.1", "::1"]
#include "vessel/plugin.hpp"

#include <arpa/inet.h>

#include <array>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include "vessel/auth.hpp"
#include "vessel/config.hpp"
#include "vessel/user_directory.hpp"

namespace {

using vessel::AuthRequest;
using vessel::AuthUser;
using vessel::ErrorCode;
using vessel::makeError;
using vessel::Result;
using vessel::Session;
using vessel::UserDirectory;

constexpr const char* kManagedElsewhere =
    "accounts are managed by the SSO proxy (auth plugin trusted-header)";

// An IP address as 16 bytes; IPv4 as its IPv4-mapped IPv6 form, so both
// spellings of a v4 peer compare equal.
using IpAddress = std::array<unsigned char, 16>;

std::optional<IpAddress> parseIp(const std::string& text) {
  IpAddress ip{};
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    ip[10] = 0xFF;
    ip[11] = 0xFF;
    std::memcpy(ip.data() + 12, &v4, 4);
    return ip;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    std::memcpy(ip.data(), &v6, 16);
    return ip;
  }
  return std::nullopt;
}

class TrustedHeaderAuth final : public vessel::Auth {
 public:
  TrustedHeaderAuth(std::string header, std::vector<IpAddress> trusted)
      : header_(std::move(header)), trusted_(std::move(trusted)) {}

  Result<AuthUser> registerUser(UserDirectory&, std::string_view,
                                std::string_view) noexcept override {
    return makeError(ErrorCode::kUnsupportedInput, kManagedElsewhere);
  }

  Result<Session> login(UserDirectory&, std::string_view, std::string_view) noexcept override {
    return makeError(ErrorCode::kUnsupportedInput, kManagedElsewhere);
  }

  Result<void> logout(UserDirectory&, std::string_view) noexcept override {
    return makeError(ErrorCode::kUnsupportedInput, kManagedElsewhere);
  }

  Result<std::optional<AuthUser>> authenticate(UserDirectory& users,
                                               const AuthRequest& request) noexcept override {
    try {
      const std::optional<IpAddress> peer = parseIp(std::string(request.peer_address));
      if (!peer || !trusted(*peer) || !request.header) return std::optional<AuthUser>();
      const std::optional<std::string> email = request.header(header_);
      if (!email) return std::optional<AuthUser>();
      Result<std::string> address = vessel::normalizeEmail(*email);
      if (!address) return std::optional<AuthUser>();
      Result<AuthUser> user = users.findOrCreateUser(address.value());
      if (!user) return std::move(user).error();
      return std::optional<AuthUser>(std::move(user).value());
    } catch (const std::exception& e) {
      return makeError(ErrorCode::kInternal, std::string("auth trusted-header: ") + e.what());
    }
  }

 private:
  bool trusted(const IpAddress& peer) const {
    for (const IpAddress& ip : trusted_) {
      if (ip == peer) return true;
    }
    return false;
  }

  std::string header_;
  std::vector<IpAddress> trusted_;
};

const std::vector<vessel::ConfigField>* fields() noexcept {
  static const std::vector<vessel::ConfigField> kFields = {
      {"header",
       vessel::ConfigType::kString,
       std::string("X-Forwarded-Email"),
       "Request header in which the proxy passes the signed-in user's email",
       false,
       {},
       {},
       {}},
      {"trusted_proxies",
       vessel::ConfigType::kStringList,
       std::vector<std::string>{"127.0.0.1", "::1"},
       "Peer IP addresses whose header is believed (the SSO proxy)",
       false,
       {},
       {},
       {}},
  };
  return &kFields;
}

void* create(const vessel::Config& config, std::string& error) noexcept {
  try {
    const std::string& header = config.getString("header");
    if (header.empty()) {
      error = "header must not be empty";
      return nullptr;
    }
    for (const char c : header) {
      // An HTTP field name is a token: no spaces, separators or control characters.
      if (c <= ' ' || c >= 0x7F || std::strchr("\"(),/:;<=>?@[\\]{}", c) != nullptr) {
        error = "header '" + header + "' is not a valid HTTP header name";
        return nullptr;
      }
    }
    std::vector<IpAddress> trusted;
    for (const std::string& text : config.getStringList("trusted_proxies")) {
      const std::optional<IpAddress> ip = parseIp(text);
      if (!ip) {
        error = "trusted_proxies: '" + text + "' is not an IP address";
        return nullptr;
      }
      trusted.push_back(*ip);
    }
    return static_cast<vessel::Auth*>(new TrustedHeaderAuth(header, std::move(trusted)));
  } catch (const std::exception& e) {
    error = e.what();
    return nullptr;
  }
}

void destroy(void* object) noexcept { delete static_cast<vessel::Auth*>(object); }

}  // namespace

VESSEL_PLUGIN(vessel::PluginKind::kAuth, "trusted-header", "0.1.0",
              "Trusts the user's email from a header set by an SSO proxy", fields, create, destroy)
