// Fuzz target: JSON request bodies as the API reads them (server/src/app.hpp
// parseObject + requireString), driven the way POST /api/v1/uploads and the
// auth routes use them. Properties: no crash or UB; a refusal is a 400 whose
// body is JSON with an error code; an accepted string is 1..max bytes of strict
// UTF-8 without control characters.
#include <cstdint>
#include <string>
#include <variant>

#include "app.hpp"
#include "fuzz_check.hpp"

namespace {

using vessel::fuzz::bytes;
using vessel::http::Response;

void checkRefusal(const Response& r) {
  FUZZ_CHECK(r.status == 400, "a body refusal is a 400");
  auto body = nlohmann::json::parse(r.body, nullptr, false);
  FUZZ_CHECK(!body.is_discarded() && body.contains("error") && body["error"].contains("code"),
             "a refusal carries a JSON error");
}

void checkString(const nlohmann::json& obj, const char* name, std::size_t max_bytes) {
  auto v = vessel::server::requireString(obj, name, max_bytes);
  if (auto* r = std::get_if<Response>(&v)) {
    checkRefusal(*r);
    return;
  }
  const std::string& s = std::get<std::string>(v);
  FUZZ_CHECK(!s.empty() && s.size() <= max_bytes, "accepted string length");
  FUZZ_CHECK(vessel::fuzz::strictUtf8(s), "accepted string is UTF-8");
  for (char c : s) {
    FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f, "no control characters");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body = bytes(data, size);
  // POST /api/v1/uploads
  auto upload = vessel::server::parseObject(body, {"filename", "content_type", "size"});
  if (auto* r = std::get_if<Response>(&upload)) {
    checkRefusal(*r);
  } else {
    const nlohmann::json& j = std::get<nlohmann::json>(upload);
    FUZZ_CHECK(j.is_object(), "parseObject returns an object");
    for (const auto& [key, value] : j.items()) {
      FUZZ_CHECK(key == "filename" || key == "content_type" || key == "size", "only allowed keys");
    }
    checkString(j, "filename", 255);
    checkString(j, "content_type", 100);
    if (auto it = j.find("size"); it != j.end() && it->is_number_integer()) {
      (void)it->get<std::int64_t>();
    }
  }
  // POST /api/v1/auth/register and /login; /internal/v1/jobs/claim's {"worker"}.
  auto creds = vessel::server::parseObject(body, {"email", "password"});
  if (auto* r = std::get_if<Response>(&creds)) checkRefusal(*r);
  auto claim = vessel::server::parseObject(body, {"worker"});
  if (auto* j = std::get_if<nlohmann::json>(&claim)) checkString(*j, "worker", 200);
  return 0;
}
