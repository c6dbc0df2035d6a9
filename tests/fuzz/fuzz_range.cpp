// Fuzz target: the Range header of GET /media/… (server/src/signing.hpp
// parseRange) against an object of any size. Properties: no crash or UB (no
// overflow); an accepted range lies inside the object (first <= last < size);
// "unsatisfiable" never comes with a range; the suffix form ends at the last
// byte; a well-formed "bytes=a-b" inside the object is taken as written.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <string>

#include "fuzz_check.hpp"
#include "signing.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  // Small sizes matter most (0, 1, around the numbers in the header); sometimes huge.
  const std::uint64_t object_size = in.ConsumeBool()
                                        ? in.ConsumeIntegralInRange<std::uint64_t>(0, 4096)
                                        : in.ConsumeIntegral<std::uint64_t>();
  const std::string header = in.ConsumeRemainingBytesAsString();

  bool unsatisfiable = true;
  const auto r = vessel::server::parseRange(header, object_size, unsatisfiable);
  if (r) {
    FUZZ_CHECK(!unsatisfiable, "a range is not also unsatisfiable");
    FUZZ_CHECK(r->first <= r->last && r->last < object_size, "the range lies inside the object");
    if (header.starts_with("bytes=-"))
      FUZZ_CHECK(r->last == object_size - 1, "suffix ends at the end");
  }
  // Build a well-formed header from the numbers and check it is taken as written.
  FuzzedDataProvider again(data, size);
  const auto a = again.ConsumeIntegralInRange<std::uint64_t>(0, 1'000'000);
  const auto b = again.ConsumeIntegralInRange<std::uint64_t>(0, 1'000'000);
  const std::string form = "bytes=" + std::to_string(a) + "-" + std::to_string(b);
  bool unsat = false;
  const auto w = vessel::server::parseRange(form, object_size, unsat);
  if (a <= b && a < object_size) {
    FUZZ_CHECK(w && w->first == a && w->last == std::min(b, object_size - 1),
               "bytes=a-b as written");
  } else if (a <= b) {
    FUZZ_CHECK(!w && unsat, "bytes=a-b past the end is unsatisfiable");
  } else {
    FUZZ_CHECK(!w && !unsat, "bytes=a-b with a > b is ignored");
  }
  return 0;
}
