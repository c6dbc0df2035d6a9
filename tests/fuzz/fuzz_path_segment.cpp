// Fuzz target: one percent-encoded path segment (server/src/http.hpp
// decodeSegment), what every route's {id} and /media/ path goes through.
// Properties: no crash or UB; the result never holds a NUL and no escape
// decodes to '/' or '\' (no path tricks through %2F / %5C); it is never longer
// than the input; percent-encoding the result and decoding it again gives it back.
#include <cstdint>
#include <string>

#include "fuzz_check.hpp"
#include "http.hpp"

namespace {

std::string percentEncode(std::string_view s) {
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
  const std::string_view seg = vessel::fuzz::bytes(data, size);
  const auto d = vessel::http::decodeSegment(seg);
  if (!d) return 0;
  FUZZ_CHECK(d->find('\0') == std::string::npos, "no NUL");
  FUZZ_CHECK(d->size() <= seg.size(), "never longer than the input");
  if (seg.find('%') == std::string_view::npos) FUZZ_CHECK(*d == seg, "no escapes, no change");
  // A '/' or '\' in the output came in raw (the router splits on '/' first).
  std::size_t raw_slashes = 0, out_slashes = 0;
  for (char c : seg) raw_slashes += (c == '/' || c == '\\');
  for (char c : *d) out_slashes += (c == '/' || c == '\\');
  FUZZ_CHECK(out_slashes <= raw_slashes, "no escape decodes to a slash");
  if (out_slashes == 0) {
    const auto back = vessel::http::decodeSegment(percentEncode(*d));
    FUZZ_CHECK(back && *back == *d, "percent-encoding round trip");
  }
  return 0;
}
