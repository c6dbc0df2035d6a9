// Remote-worker protocol: strict JSON codecs and the job secret.
#include "vessel/worker_protocol.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <initializer_list>
#include <set>

namespace vessel::protocol {
namespace {

using nlohmann::json;

std::string hex(const unsigned char* data, std::size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(digits[data[i] >> 4]);
    out.push_back(digits[data[i] & 15]);
  }
  return out;
}

Error bad(const std::string& what) { return Error{ErrorCode::kInvalidArgument, what}; }

// Parses an object and refuses fields outside `allowed`.
Result<json> object(std::string_view body, std::initializer_list<const char*> allowed) {
  if (body.size() > 64 * 1024) return bad("body larger than 64 KiB");
  json j = json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded()) return bad("body is not valid JSON");
  if (!j.is_object()) return bad("body must be a JSON object");
  std::set<std::string> ok(allowed.begin(), allowed.end());
  for (const auto& [k, v] : j.items()) {
    if (!ok.count(k)) return bad("unknown field '" + k + "'");
  }
  return j;
}

Result<std::int32_t> attemptOf(const json& j) {
  auto it = j.find("attempt");
  if (it == j.end() || !it->is_number_integer()) return bad("'attempt' must be an integer");
  auto v = it->get<std::int64_t>();
  if (v < 1 || v > 1000) return bad("'attempt' out of range");
  return static_cast<std::int32_t>(v);
}

std::optional<ErrorCode> codeByName(const std::string& name) {
  for (int c = static_cast<int>(ErrorCode::kInvalidArgument);
       c <= static_cast<int>(ErrorCode::kUnauthenticated); ++c) {
    if (name == errorCodeName(static_cast<ErrorCode>(c))) return static_cast<ErrorCode>(c);
  }
  return std::nullopt;
}

}  // namespace

Result<std::string> newJobSecret() noexcept {
  unsigned char buf[32];
  if (RAND_bytes(buf, sizeof buf) != 1) {
    return makeError(ErrorCode::kInternal, "RAND_bytes failed");
  }
  return hex(buf, sizeof buf);
}

std::string sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return hex(md, len);
}

bool secretsEqual(std::string_view a, std::string_view b) noexcept {
  // Length is not secret (fixed-size hex); the content comparison is constant-time.
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

json toJson(const ClaimResponse& r) {
  return {{"job_id", r.job.job_id},
          {"attempt", r.job.attempt},
          {"max_attempts", r.job.max_attempts},
          {"upload_id", r.job.upload_id},
          {"user_id", r.job.user_id},
          {"storage_key", r.job.storage_key},
          {"pipeline", r.job.pipeline},
          {"job_secret", r.job_secret}};
}

Result<ClaimResponse> parseClaimResponse(std::string_view body) noexcept {
  try {
    auto j = object(body, {"job_id", "attempt", "max_attempts", "upload_id", "user_id",
                           "storage_key", "pipeline", "job_secret"});
    if (!j.ok()) return j.error();
    const json& o = j.value();
    ClaimResponse r;
    for (const char* k : {"upload_id", "user_id", "storage_key", "pipeline", "job_secret"}) {
      if (!o.contains(k) || !o[k].is_string() || o[k].get<std::string>().empty()) {
        return bad(std::string("'") + k + "' must be a non-empty string");
      }
    }
    if (!o.contains("job_id") || !o["job_id"].is_number_integer())
      return bad("'job_id' must be an integer");
    auto attempt = attemptOf(o);
    if (!attempt.ok()) return attempt.error();
    // Checked before the conversion: a float such as 1e300 into int is UB.
    if (o.contains("max_attempts") &&
        (!o["max_attempts"].is_number_integer() || o["max_attempts"].get<std::int64_t>() < 0 ||
         o["max_attempts"].get<std::int64_t>() > INT32_MAX)) {
      return bad("'max_attempts' must be a non-negative integer");
    }
    r.job.job_id = o["job_id"].get<std::int64_t>();
    r.job.attempt = attempt.value();
    r.job.max_attempts = o.value("max_attempts", 0);
    r.job.upload_id = o["upload_id"];
    r.job.user_id = o["user_id"];
    r.job.storage_key = o["storage_key"];
    r.job.pipeline = o["pipeline"];
    r.job_secret = o["job_secret"];
    if (r.job_secret.size() != 64) return bad("'job_secret' must be 64 hex characters");
    return r;
  } catch (const std::exception& e) {
    return bad(std::string("claim response: ") + e.what());
  }
}

json toJson(const ProgressRequest& r) { return {{"attempt", r.attempt}, {"progress", r.progress}}; }

Result<ProgressRequest> parseProgressRequest(std::string_view body) noexcept {
  try {
    auto j = object(body, {"attempt", "progress"});
    if (!j.ok()) return j.error();
    auto attempt = attemptOf(j.value());
    if (!attempt.ok()) return attempt.error();
    const json& p = j.value().contains("progress") ? j.value()["progress"] : json();
    if (!p.is_number()) return bad("'progress' must be a number");
    double v = p.get<double>();
    if (!(v >= 0 && v <= 1)) return bad("'progress' must be between 0 and 1");
    return ProgressRequest{attempt.value(), v};
  } catch (const std::exception& e) {
    return bad(std::string("progress: ") + e.what());
  }
}

json toJson(const CompleteRequest& r) {
  json probe = json::object();
  for (const auto& [k, v] : r.outcome.probe) probe[k] = v;
  return {{"attempt", r.attempt},
          {"duration_s", r.outcome.duration_s},
          {"master_key", r.outcome.master_key},
          {"probe", probe}};
}

Result<CompleteRequest> parseCompleteRequest(std::string_view body) noexcept {
  try {
    auto j = object(body, {"attempt", "duration_s", "master_key", "probe"});
    if (!j.ok()) return j.error();
    const json& o = j.value();
    auto attempt = attemptOf(o);
    if (!attempt.ok()) return attempt.error();
    CompleteRequest r;
    r.attempt = attempt.value();
    if (!o.contains("duration_s") || !o["duration_s"].is_number()) {
      return bad("'duration_s' must be a number");
    }
    r.outcome.duration_s = o["duration_s"].get<double>();
    if (!(r.outcome.duration_s > 0 && r.outcome.duration_s < 7 * 24 * 3600.0)) {
      return bad("'duration_s' out of range");
    }
    if (!o.contains("master_key") || !o["master_key"].is_string() ||
        !isValidKey(o["master_key"].get<std::string>())) {
      return bad("'master_key' must be a valid storage key");
    }
    r.outcome.master_key = o["master_key"];
    if (o.contains("probe")) {
      if (!o["probe"].is_object()) return bad("'probe' must be an object");
      static const std::set<std::string> kProbeKeys = {
          "codec", "sample_rate", "channels", "bit_rate", "container", "title", "artist", "album"};
      for (const auto& [k, v] : o["probe"].items()) {
        if (!kProbeKeys.count(k)) return bad("unknown probe field '" + k + "'");
        if (!v.is_string() || v.get<std::string>().size() > 1024) {
          return bad("probe field '" + k + "' must be a string of at most 1024 bytes");
        }
        r.outcome.probe[k] = v.get<std::string>();
      }
    }
    return r;
  } catch (const std::exception& e) {
    return bad(std::string("complete: ") + e.what());
  }
}

json toJson(const FailRequest& r) {
  return {
      {"attempt", r.attempt}, {"code", errorCodeName(r.error.code)}, {"message", r.error.message}};
}

Result<FailRequest> parseFailRequest(std::string_view body) noexcept {
  try {
    auto j = object(body, {"attempt", "code", "message"});
    if (!j.ok()) return j.error();
    const json& o = j.value();
    auto attempt = attemptOf(o);
    if (!attempt.ok()) return attempt.error();
    if (!o.contains("code") || !o["code"].is_string()) return bad("'code' must be a string");
    auto code = codeByName(o["code"].get<std::string>());
    if (!code) return bad("unknown error code '" + o["code"].get<std::string>() + "'");
    if (!o.contains("message") || !o["message"].is_string() ||
        o["message"].get<std::string>().size() > 4096) {
      return bad("'message' must be a string of at most 4096 bytes");
    }
    return FailRequest{attempt.value(), Error{*code, o["message"].get<std::string>()}};
  } catch (const std::exception& e) {
    return bad(std::string("fail: ") + e.what());
  }
}

json toJson(const ReleaseRequest& r) { return {{"attempt", r.attempt}}; }

Result<ReleaseRequest> parseReleaseRequest(std::string_view body) noexcept {
  try {
    auto j = object(body, {"attempt"});
    if (!j.ok()) return j.error();
    auto attempt = attemptOf(j.value());
    if (!attempt.ok()) return attempt.error();
    return ReleaseRequest{attempt.value()};
  } catch (const std::exception& e) {
    return bad(std::string("release: ") + e.what());
  }
}

}  // namespace vessel::protocol
