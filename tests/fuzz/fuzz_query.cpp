// Fuzz target: the raw query string of every request (server/src/http.hpp
// parseQuery), e.g. ?limit=…&cursor=…&expires=…&sig=…. Properties: no crash or
// UB; no NUL in any key or value; an accepted query re-encoded (every byte
// percent-escaped but the unreserved ones) parses back to the same map.
#include <cstdint>
#include <map>
#include <string>

#include "fuzz_check.hpp"
#include "http.hpp"

namespace {

std::string escape(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') || u == '-' ||
        u == '.' || u == '_' || u == '~') {
      out += c;
    } else {
      out += '%';
      out += hex[u >> 4];
      out += hex[u & 15];
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using Map = std::map<std::string, std::string, std::less<>>;
  Map q;
  if (!vessel::http::parseQuery(vessel::fuzz::bytes(data, size), q)) return 0;
  std::string again;
  for (const auto& [k, v] : q) {
    FUZZ_CHECK(k.find('\0') == std::string::npos && v.find('\0') == std::string::npos, "no NUL");
    if (!again.empty()) again += '&';
    again += escape(k) + "=" + escape(v);
  }
  Map back;
  FUZZ_CHECK(vessel::http::parseQuery(again, back), "a re-encoded query parses");
  FUZZ_CHECK(back == q, "re-encoding round trip");
  return 0;
}
