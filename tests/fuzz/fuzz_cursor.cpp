// Fuzz target: the library's opaque keyset cursor (server/src/signing.hpp
// decodeCursor), the `cursor` query value of GET /api/v1/uploads. Properties:
// no crash or UB; a cursor is accepted only if it is exactly what encodeCursor
// makes of the pair it decodes to (one spelling per cursor); both parts are
// non-empty, control-free and the id has no '|'.
#include <cstdint>
#include <string>

#include "fuzz_check.hpp"
#include "signing.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace vessel::server;
  const std::string_view text = vessel::fuzz::bytes(data, size);

  if (auto c = decodeCursor(text)) {
    const auto& [sort_key, id] = *c;
    FUZZ_CHECK(!sort_key.empty() && !id.empty(), "both parts non-empty");
    FUZZ_CHECK(id.find('|') == std::string::npos, "the id has no separator");
    for (char ch : sort_key + id) {
      FUZZ_CHECK(static_cast<unsigned char>(ch) >= 0x20, "no control characters");
    }
    FUZZ_CHECK(encodeCursor(sort_key, id) == text, "one spelling per cursor");
  }

  // The other way: whatever the server encodes from a (sort key, id) it stored
  // decodes to the same pair (when short enough to be accepted at all).
  const auto bar = text.find('|');
  if (bar != std::string_view::npos) {
    const std::string sort_key(text.substr(0, bar)), id(text.substr(bar + 1));
    const std::string cursor = encodeCursor(sort_key, id);
    bool plain = !sort_key.empty() && !id.empty() && id.find('|') == std::string::npos;
    for (char ch : sort_key + id) plain = plain && static_cast<unsigned char>(ch) >= 0x20;
    if (plain && cursor.size() <= 200) {
      auto back = decodeCursor(cursor);
      FUZZ_CHECK(back && back->first == sort_key && back->second == id, "cursor round trip");
    }
  }
  return 0;
}
