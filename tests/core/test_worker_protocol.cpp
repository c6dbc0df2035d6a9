// Remote-worker protocol: secrets and strict JSON codecs (every bad shape refused).
#include <gtest/gtest.h>

#include <set>

#include "vessel/worker_protocol.hpp"

namespace {

using namespace vessel;
using namespace vessel::protocol;

TEST(JobSecret, RandomHexAndHashedWithSha256) {
  auto a = newJobSecret();
  auto b = newJobSecret();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a.value().size(), 64u);
  EXPECT_NE(a.value(), b.value());
  EXPECT_EQ(a.value().find_first_not_of("0123456789abcdef"), std::string::npos);
  // FIPS 180-2 test vector.
  EXPECT_EQ(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_NE(sha256Hex(a.value()), a.value());
}

TEST(JobSecret, ConstantTimeCompare) {
  EXPECT_TRUE(secretsEqual("abcdef", "abcdef"));
  EXPECT_FALSE(secretsEqual("abcdef", "abcdeg"));
  EXPECT_FALSE(secretsEqual("abcdef", "abcde"));
  EXPECT_FALSE(secretsEqual("", "a"));
}

TEST(Protocol, ClaimResponseRoundTrip) {
  ClaimResponse r;
  r.job = {42, 2, 3, "up-id", "user-id", "user-id/up-id/original", "hls-aac", "w"};
  r.job_secret = std::string(64, 'a');
  auto parsed = parseClaimResponse(toJson(r).dump());
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed.value().job.job_id, 42);
  EXPECT_EQ(parsed.value().job.attempt, 2);
  EXPECT_EQ(parsed.value().job.storage_key, "user-id/up-id/original");
  EXPECT_EQ(parsed.value().job_secret, r.job_secret);
}

TEST(Protocol, ProgressAcceptsRangeAndRefusesBadShapes) {
  auto ok = parseProgressRequest(R"({"attempt": 1, "progress": 0.5})");
  ASSERT_TRUE(ok.ok());
  EXPECT_DOUBLE_EQ(ok.value().progress, 0.5);
  for (const char* bad :
       {"", "[]", "not json", R"({"attempt": 1})", R"({"progress": 0.5})",
        R"({"attempt": "1", "progress": 0.5})", R"({"attempt": 0, "progress": 0.5})",
        R"({"attempt": 1, "progress": 1.5})", R"({"attempt": 1, "progress": -0.1})",
        R"({"attempt": 1, "progress": "half"})",
        R"({"attempt": 1, "progress": 0.5, "extra": true})"}) {
    auto r = parseProgressRequest(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << bad;
    }
  }
}

TEST(Protocol, CompleteRoundTripAndValidation) {
  CompleteRequest c;
  c.attempt = 1;
  c.outcome.duration_s = 12.5;
  c.outcome.master_key = "u/up/master.m3u8";
  c.outcome.probe = {{"codec", "mp3"}, {"title", "Song"}};
  auto parsed = parseCompleteRequest(toJson(c).dump());
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed.value().outcome.probe.at("title"), "Song");
  for (const char* bad :
       {R"({"attempt": 1, "duration_s": 0, "master_key": "u/m.m3u8"})",
        R"({"attempt": 1, "duration_s": 3, "master_key": "../etc/passwd"})",
        R"({"attempt": 1, "duration_s": 3, "master_key": "/abs"})",
        R"({"attempt": 1, "duration_s": 3, "master_key": "u/m.m3u8", "probe": {"evil": "x"}})",
        R"({"attempt": 1, "duration_s": 3, "master_key": "u/m.m3u8", "probe": {"title": 5}})",
        R"({"attempt": 1, "duration_s": 3, "master_key": "u/m.m3u8", "probe": []})"}) {
    EXPECT_FALSE(parseCompleteRequest(bad).ok()) << bad;
  }
}

TEST(Protocol, FailCarriesTheCodeThatDecidesRetry) {
  FailRequest f{1, Error{ErrorCode::kTimeout, "stalled"}};
  auto parsed = parseFailRequest(toJson(f).dump());
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed.value().error.code, ErrorCode::kTimeout);
  EXPECT_TRUE(isTransient(parsed.value().error.code));
  EXPECT_FALSE(parseFailRequest(R"({"attempt": 1, "code": "bogus", "message": "x"})").ok());
  EXPECT_FALSE(parseFailRequest(R"({"attempt": 1, "code": "timeout"})").ok());
  EXPECT_FALSE(parseFailRequest(std::string(70 * 1024, ' ')).ok());
}

TEST(Protocol, ReleaseRequestIsStrict) {
  auto ok = parseReleaseRequest(toJson(ReleaseRequest{3}).dump());
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok.value().attempt, 3);
  for (const char* bad : {"", "[]", "{}", R"({"attempt": 0})", R"({"attempt": "1"})",
                          R"({"attempt": 1, "x": 2})", R"({"attempt": 1.5})"}) {
    EXPECT_FALSE(parseReleaseRequest(bad).ok()) << bad;
  }
}

}  // namespace
