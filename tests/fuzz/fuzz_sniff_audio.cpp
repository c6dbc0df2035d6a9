// Fuzz target: the audio sniffer (server/src/signing.hpp sniffAudio) that reads
// the first bytes of every uploaded file. Properties: no crash or UB (no read
// past the bytes it was given); the answer is one of the declared format names
// and depends only on the first 12 bytes.
#include <cstdint>
#include <set>
#include <string>

#include "fuzz_check.hpp"
#include "signing.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using vessel::server::sniffAudio;
  // An exact-size heap copy so ASan sees any read past the end.
  const std::string head(reinterpret_cast<const char*>(data), size);
  const auto got = sniffAudio(std::string_view(head.data(), head.size()));
  static const std::set<std::string> kNames = {"mp3",  "wav", "flac",     "ogg",
                                               "aiff", "mp4", "matroska", "aac"};
  if (got) FUZZ_CHECK(kNames.count(*got) == 1, "a declared format name");
  if (size > 12) {
    const std::string prefix = head.substr(0, 12);
    FUZZ_CHECK(sniffAudio(prefix) == got, "decided by the first 12 bytes");
  }
  return 0;
}
