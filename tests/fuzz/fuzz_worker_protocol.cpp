// Fuzz target: the remote-worker protocol bodies (core/include/vessel/
// worker_protocol.hpp parse*). Properties: no crash, no exception, no UB; every
// accepted body survives toJson → dump → parse unchanged.
#include <cstdint>
#include <string>

#include "fuzz_check.hpp"
#include "vessel/worker_protocol.hpp"

namespace {

using namespace vessel::protocol;

template <typename T, typename Parse>
T reparse(const T& value, Parse parse) {
  const std::string text = toJson(value).dump();
  auto again = parse(text);
  FUZZ_CHECK(again.ok(), "an accepted body re-parses after toJson");
  return again.value();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body = vessel::fuzz::bytes(data, size);

  if (auto r = parseClaimResponse(body); r.ok()) {
    const ClaimResponse& a = r.value();
    FUZZ_CHECK(a.job.attempt >= 1 && a.job.attempt <= 1000, "claim attempt range");
    FUZZ_CHECK(a.job_secret.size() == 64, "job secret length");
    const ClaimResponse b = reparse(a, parseClaimResponse);
    FUZZ_CHECK(a.job.job_id == b.job.job_id && a.job.attempt == b.job.attempt &&
                   a.job.max_attempts == b.job.max_attempts && a.job.upload_id == b.job.upload_id &&
                   a.job.user_id == b.job.user_id && a.job.storage_key == b.job.storage_key &&
                   a.job.pipeline == b.job.pipeline && a.job_secret == b.job_secret,
               "claim round trip");
  }
  if (auto r = parseProgressRequest(body); r.ok()) {
    FUZZ_CHECK(r.value().progress >= 0 && r.value().progress <= 1, "progress range");
    const ProgressRequest b = reparse(r.value(), parseProgressRequest);
    FUZZ_CHECK(b.attempt == r.value().attempt && b.progress == r.value().progress,
               "progress round trip");
  }
  if (auto r = parseCompleteRequest(body); r.ok()) {
    const CompleteRequest& a = r.value();
    FUZZ_CHECK(vessel::isValidKey(a.outcome.master_key), "master key is a valid storage key");
    const CompleteRequest b = reparse(a, parseCompleteRequest);
    FUZZ_CHECK(b.attempt == a.attempt && b.outcome.duration_s == a.outcome.duration_s &&
                   b.outcome.master_key == a.outcome.master_key &&
                   b.outcome.probe == a.outcome.probe,
               "complete round trip");
  }
  if (auto r = parseFailRequest(body); r.ok()) {
    const FailRequest b = reparse(r.value(), parseFailRequest);
    FUZZ_CHECK(b.attempt == r.value().attempt && b.error.code == r.value().error.code &&
                   b.error.message == r.value().error.message,
               "fail round trip");
  }
  if (auto r = parseReleaseRequest(body); r.ok()) {
    FUZZ_CHECK(reparse(r.value(), parseReleaseRequest).attempt == r.value().attempt,
               "release round trip");
  }
  return 0;
}
