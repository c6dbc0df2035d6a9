// SigV4 over OpenSSL's one-shot digests (EVP_Digest, HMAC); see sigv4.hpp.
#include "sigv4.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <stdexcept>

namespace vessel::plugins::s3 {

namespace {

std::string digest(const EVP_MD* md, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out, &len, md, nullptr) != 1) {
    throw std::runtime_error("EVP_Digest failed");
  }
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

/// Trimall: leading/trailing whitespace removed, inner runs collapsed to one space.
std::string trimAll(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  bool pending_space = false;
  for (const char c : value) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(c);
  }
  return out;
}

/// Lower-case name → trimmed value, sorted by name; repeated names joined with ','.
Pairs canonicalHeaderPairs(const Pairs& headers) {
  Pairs sorted;
  sorted.reserve(headers.size());
  for (const auto& [name, value] : headers) sorted.emplace_back(lower(name), trimAll(value));
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  Pairs merged;
  for (auto& [name, value] : sorted) {
    if (!merged.empty() && merged.back().first == name) {
      merged.back().second += ',';
      merged.back().second += value;
    } else {
      merged.emplace_back(std::move(name), std::move(value));
    }
  }
  return merged;
}

}  // namespace

std::string hexEncode(std::string_view raw) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size() * 2);
  for (const char c : raw) {
    const auto byte = static_cast<unsigned char>(c);
    out.push_back(kDigits[byte >> 4]);
    out.push_back(kDigits[byte & 0xf]);
  }
  return out;
}

std::string sha256(std::string_view data) { return digest(EVP_sha256(), data); }

std::string sha256Hex(std::string_view data) { return hexEncode(sha256(data)); }

std::string hmacSha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), out,
           &len) == nullptr) {
    throw std::runtime_error("HMAC-SHA256 failed");
  }
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::string md5Base64(std::string_view data) {
  const std::string raw = digest(EVP_md5(), data);
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(raw.data()),
                                static_cast<int>(raw.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string uriEncode(std::string_view text, bool keep_slash) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size() * 3);
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte) || c == '-' || c == '.' || c == '_' || c == '~' ||
        (keep_slash && c == '/')) {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kDigits[byte >> 4]);
      out.push_back(kDigits[byte & 0xf]);
    }
  }
  return out;
}

std::string amzDate(std::chrono::system_clock::time_point when) {
  const std::time_t t = std::chrono::system_clock::to_time_t(when);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[17];
  std::strftime(buffer, sizeof buffer, "%Y%m%dT%H%M%SZ", &tm);
  return buffer;
}

std::string canonicalQuery(const Pairs& query) {
  Pairs encoded;
  encoded.reserve(query.size());
  for (const auto& [name, value] : query) {
    encoded.emplace_back(uriEncode(name, false), uriEncode(value, false));
  }
  std::sort(encoded.begin(), encoded.end());
  std::string out;
  for (const auto& [name, value] : encoded) {
    if (!out.empty()) out.push_back('&');
    out += name;
    out.push_back('=');
    out += value;
  }
  return out;
}

std::string signedHeaderNames(const Pairs& headers) {
  std::string out;
  for (const auto& [name, value] : canonicalHeaderPairs(headers)) {
    if (!out.empty()) out.push_back(';');
    out += name;
  }
  return out;
}

std::string canonicalRequest(const CanonicalInput& input) {
  std::string out = input.method;
  out.push_back('\n');
  out += input.canonical_uri.empty() ? "/" : input.canonical_uri;
  out.push_back('\n');
  out += canonicalQuery(input.query);
  out.push_back('\n');
  for (const auto& [name, value] : canonicalHeaderPairs(input.headers)) {
    out += name;
    out.push_back(':');
    out += value;
    out.push_back('\n');
  }
  out.push_back('\n');
  out += signedHeaderNames(input.headers);
  out.push_back('\n');
  out += input.payload_hash;
  return out;
}

std::string credentialScope(std::string_view date, std::string_view region,
                            std::string_view service) {
  std::string out(date);
  out.push_back('/');
  out += region;
  out.push_back('/');
  out += service;
  out += "/aws4_request";
  return out;
}

std::string stringToSign(std::string_view amz_date, std::string_view scope,
                         std::string_view canonical_request) {
  std::string out(kAlgorithm);
  out.push_back('\n');
  out += amz_date;
  out.push_back('\n');
  out += scope;
  out.push_back('\n');
  out += sha256Hex(canonical_request);
  return out;
}

std::string signingKey(std::string_view secret, std::string_view date, std::string_view region,
                       std::string_view service) {
  std::string key = "AWS4";
  key += secret;
  const std::string k_date = hmacSha256(key, date);
  const std::string k_region = hmacSha256(k_date, region);
  const std::string k_service = hmacSha256(k_region, service);
  return hmacSha256(k_service, "aws4_request");
}

std::string signature(std::string_view signing_key, std::string_view string_to_sign) {
  return hexEncode(hmacSha256(signing_key, string_to_sign));
}

Signer::Signer(std::string access_key_id, std::string secret_access_key, std::string region,
               std::string service)
    : access_key_id_(std::move(access_key_id)),
      secret_access_key_(std::move(secret_access_key)),
      region_(std::move(region)),
      service_(std::move(service)) {}

std::string Signer::authorization(const CanonicalInput& input, std::string_view amz_date) const {
  const std::string_view date = amz_date.substr(0, 8);
  const std::string scope = credentialScope(date, region_, service_);
  const std::string to_sign = stringToSign(amz_date, scope, canonicalRequest(input));
  std::string out(kAlgorithm);
  out += " Credential=";
  out += access_key_id_;
  out.push_back('/');
  out += scope;
  out += ",SignedHeaders=";
  out += signedHeaderNames(input.headers);
  out += ",Signature=";
  out += signature(signingKey(secret_access_key_, date, region_, service_), to_sign);
  return out;
}

std::string Signer::presignQuery(CanonicalInput input, std::string_view amz_date,
                                 std::int64_t expires_s) const {
  const std::string_view date = amz_date.substr(0, 8);
  const std::string scope = credentialScope(date, region_, service_);
  input.query.emplace_back("X-Amz-Algorithm", std::string(kAlgorithm));
  input.query.emplace_back("X-Amz-Credential", access_key_id_ + "/" + scope);
  input.query.emplace_back("X-Amz-Date", std::string(amz_date));
  input.query.emplace_back("X-Amz-Expires", std::to_string(expires_s));
  input.query.emplace_back("X-Amz-SignedHeaders", signedHeaderNames(input.headers));
  input.payload_hash = std::string(kUnsignedPayload);
  const std::string to_sign = stringToSign(amz_date, scope, canonicalRequest(input));
  std::string out = canonicalQuery(input.query);
  out += "&X-Amz-Signature=";
  out += signature(signingKey(secret_access_key_, date, region_, service_), to_sign);
  return out;
}

}  // namespace vessel::plugins::s3
