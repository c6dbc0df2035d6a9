// Unit tests for vessel's HLS playlist writer: exact media/master playlist text,
// TARGETDURATION rounding, and the RFC 8216 §4.3.4.2 peak and average bit rates.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "vessel/playlist.hpp"

namespace vessel {
namespace {

SegmentInfo seg(std::string uri, double duration_s, std::uint64_t bytes) {
  SegmentInfo s;
  s.uri = std::move(uri);
  s.duration_s = duration_s;
  s.bytes = bytes;
  return s;
}

SegmentInfo seg(double duration_s, std::uint64_t bytes) { return seg("s.ts", duration_s, bytes); }

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

/// Bit rate of `bytes` over `duration_s`, rounded up as the writer does.
std::uint64_t bps(double bytes, double duration_s) {
  return static_cast<std::uint64_t>(std::ceil(bytes * 8 / duration_s));
}

// ---- Media playlist ---------------------------------------------------------

TEST(MediaPlaylist, HasEveryRequiredTagInOrder) {
  const std::string text =
      writeMediaPlaylist({seg("segment_000.ts", 6.0, 1000), seg("segment_001.ts", 6.0, 1000),
                          seg("segment_002.ts", 2.5, 1000)});
  EXPECT_EQ(text,
            "#EXTM3U\n"
            "#EXT-X-VERSION:3\n"
            "#EXT-X-TARGETDURATION:6\n"
            "#EXT-X-MEDIA-SEQUENCE:0\n"
            "#EXT-X-PLAYLIST-TYPE:VOD\n"
            "#EXT-X-INDEPENDENT-SEGMENTS\n"
            "#EXTINF:6.000,\n"
            "segment_000.ts\n"
            "#EXTINF:6.000,\n"
            "segment_001.ts\n"
            "#EXTINF:2.500,\n"
            "segment_002.ts\n"
            "#EXT-X-ENDLIST\n");
}

TEST(MediaPlaylist, StartsWithExtM3uAndEndsWithEndList) {
  const auto l = lines(writeMediaPlaylist({seg("a.ts", 4.0, 1), seg("b.ts", 3.0, 1)}));
  ASSERT_FALSE(l.empty());
  EXPECT_EQ(l.front(), "#EXTM3U");
  EXPECT_EQ(l.back(), "#EXT-X-ENDLIST");
  // Each EXTINF is immediately followed by its URI, in segment order.
  std::vector<std::string> uris;
  for (std::size_t i = 0; i + 1 < l.size(); ++i) {
    if (l[i].rfind("#EXTINF:", 0) == 0) uris.push_back(l[i + 1]);
  }
  EXPECT_EQ(uris, (std::vector<std::string>{"a.ts", "b.ts"}));
}

TEST(MediaPlaylist, ExtinfHasThreeDecimals) {
  const std::string text =
      writeMediaPlaylist({seg("a.ts", 5.99999, 1), seg("b.ts", 1.23456, 1), seg("c.ts", 4.0, 1)});
  EXPECT_NE(text.find("#EXTINF:6.000,\na.ts\n"), std::string::npos) << text;
  EXPECT_NE(text.find("#EXTINF:1.235,\nb.ts\n"), std::string::npos) << text;
  EXPECT_NE(text.find("#EXTINF:4.000,\nc.ts\n"), std::string::npos) << text;
}

TEST(MediaPlaylist, EmptyPlaylistIsStillComplete) {
  EXPECT_EQ(writeMediaPlaylist({}),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"
            "#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-ENDLIST\n");
}

// RFC 8216 §4.3.3.1: every EXTINF *as written*, rounded to the nearest integer, must be
// ≤ TARGETDURATION. A client only sees the printed 3-decimal value.
TEST(MediaPlaylist, PrintedExtinfRoundsToAtMostTargetDuration) {
  for (double d : {6.0, 6.4, 6.49, 6.499, 6.4994, 6.4996, 6.4999, 6.5, 0.2, 1.4999}) {
    const auto l = lines(writeMediaPlaylist({seg("a.ts", 4.0, 1), seg("b.ts", d, 1)}));
    int target = -1;
    double longest_printed = 0;
    for (const auto& line : l) {
      if (line.rfind("#EXT-X-TARGETDURATION:", 0) == 0) target = std::stoi(line.substr(22));
      if (line.rfind("#EXTINF:", 0) == 0) {
        longest_printed = std::max(longest_printed, std::stod(line.substr(8)));
      }
    }
    EXPECT_LE(std::lround(longest_printed), target)
        << "duration " << d << " printed as " << longest_printed << " with TARGETDURATION "
        << target;
  }
}

// ---- TARGETDURATION ---------------------------------------------------------

TEST(TargetDuration, IsMaxOfRoundedExtinf) {
  EXPECT_EQ(targetDurationS({seg(6.49, 1)}), 6);
  EXPECT_EQ(targetDurationS({seg(6.5, 1)}), 7);
  EXPECT_EQ(targetDurationS({seg(2.0, 1), seg(6.49, 1), seg(3.0, 1)}), 6);
  EXPECT_EQ(targetDurationS({seg(2.0, 1), seg(6.5, 1), seg(3.0, 1)}), 7);
  EXPECT_EQ(targetDurationS({seg(4.0, 1), seg(4.0, 1)}), 4);
}

TEST(TargetDuration, IsAtLeastOne) {
  EXPECT_EQ(targetDurationS({}), 1);
  EXPECT_EQ(targetDurationS({seg(0.2, 1)}), 1);
  EXPECT_EQ(targetDurationS({seg(0.0, 1)}), 1);
}

TEST(TargetDuration, AppearsInMediaPlaylist) {
  EXPECT_NE(writeMediaPlaylist({seg(6.49, 1)}).find("#EXT-X-TARGETDURATION:6\n"),
            std::string::npos);
  EXPECT_NE(writeMediaPlaylist({seg(6.5, 1)}).find("#EXT-X-TARGETDURATION:7\n"), std::string::npos);
}

// ---- Peak bit rate (RFC 8216 §4.3.4.2) --------------------------------------

TEST(PeakBitrate, EmptyIsZero) { EXPECT_EQ(peakBitrateBps({}), 0u); }

TEST(PeakBitrate, UniformSegmentsGiveTheirRate) {
  // 6 s at 96 000 bytes = 128 000 bit/s each.
  EXPECT_EQ(peakBitrateBps({seg(6, 96000), seg(6, 96000), seg(6, 96000)}), 128000u);
}

TEST(PeakBitrate, TinyLastSegmentIsMergedWithItsPredecessor) {
  // Target 6 s; the 0.5 s tail alone (8 Mbit/s) is shorter than half a target, so it
  // only counts together with the previous 6 s segment (6.5 s ≤ 9 s).
  const std::vector<SegmentInfo> s = {seg(6, 600000), seg(6, 600000), seg(0.5, 500000)};
  ASSERT_EQ(targetDurationS(s), 6);
  const std::uint64_t expected = bps(600000.0 + 500000.0, 6.5);
  EXPECT_EQ(peakBitrateBps(s), expected);
  EXPECT_LT(peakBitrateBps(s), bps(500000, 0.5));  // the tail alone would be 8 Mbit/s
}

TEST(PeakBitrate, OneHeavySegmentDominates) {
  // Windows of two 6 s segments (12 s) exceed 1.5 × target, so the heavy one stands alone.
  const std::vector<SegmentInfo> s = {seg(6, 100000), seg(6, 900000), seg(6, 100000),
                                      seg(6, 100000)};
  EXPECT_EQ(peakBitrateBps(s), 1200000u);
}

TEST(PeakBitrate, HeavySegmentAmongShortOnesStillDominates) {
  // Target 6 s, 4 s segments: a single 4 s (≥ 3 s) window is allowed.
  const std::vector<SegmentInfo> s = {seg(6, 60000), seg(4, 40000), seg(4, 400000), seg(4, 40000)};
  EXPECT_EQ(peakBitrateBps(s), bps(400000, 4));
}

TEST(PeakBitrate, ShortSegmentsAreCombinedUntilHalfATarget) {
  // Target 6 s; the 2 s segments are too short alone, but together (4 s) form a window.
  // Adding the following 6 s segment would make 10 s > 9 s.
  const std::vector<SegmentInfo> s = {seg(6, 60000), seg(2, 200000), seg(2, 200000), seg(6, 60000)};
  EXPECT_EQ(peakBitrateBps(s), bps(400000, 4));
}

TEST(PeakBitrate, WindowOfExactlyHalfTargetCounts) {
  // 3.0 s is exactly 0.5 × 6 s: the heavy tail counts on its own.
  const std::vector<SegmentInfo> s = {seg(6, 60000), seg(3.0, 300000)};
  EXPECT_EQ(peakBitrateBps(s), bps(300000, 3.0));
}

TEST(PeakBitrate, WindowJustUnderHalfTargetIsMerged) {
  const std::vector<SegmentInfo> s = {seg(6, 60000), seg(2.9, 290000)};
  EXPECT_EQ(peakBitrateBps(s), bps(60000.0 + 290000.0, 8.9));
}

TEST(PeakBitrate, SingleShortSegmentFallsBackToAverage) {
  // 0.4 s is shorter than half the (minimum) 1 s target: no window qualifies.
  const std::vector<SegmentInfo> one = {seg(0.4, 1000)};
  EXPECT_EQ(peakBitrateBps(one), averageBitrateBps(one));
  EXPECT_EQ(peakBitrateBps(one), 20000u);
  const std::vector<SegmentInfo> two = {seg(0.2, 1000), seg(0.2, 3000)};
  EXPECT_EQ(peakBitrateBps(two), averageBitrateBps(two));
  EXPECT_EQ(peakBitrateBps(two), 80000u);
}

TEST(PeakBitrate, IsNeverBelowAverage) {
  const std::vector<SegmentInfo> s = {seg(6, 48000), seg(6, 96000), seg(5.5, 70000),
                                      seg(6.2, 100000), seg(1.1, 30000)};
  EXPECT_GE(peakBitrateBps(s), averageBitrateBps(s));
}

TEST(PeakBitrate, RoundsUp) {
  // 1000 bytes over 3 s = 2666.67 bit/s.
  EXPECT_EQ(peakBitrateBps({seg(3, 1000)}), 2667u);
}

// ---- Average bit rate -------------------------------------------------------

TEST(AverageBitrate, IsTotalBitsOverTotalDuration) {
  EXPECT_EQ(averageBitrateBps({seg(6, 750000), seg(4, 250000)}), 800000u);
  EXPECT_EQ(averageBitrateBps({seg(6, 96000), seg(6, 96000), seg(3, 48000)}), 128000u);
}

TEST(AverageBitrate, RoundsUp) { EXPECT_EQ(averageBitrateBps({seg(3, 1)}), 3u); }

TEST(AverageBitrate, EmptyOrZeroDurationIsZero) {
  EXPECT_EQ(averageBitrateBps({}), 0u);
  EXPECT_EQ(averageBitrateBps({seg(0, 1000)}), 0u);
}

// ---- Master playlist --------------------------------------------------------

VariantInfo variant(std::string uri, std::uint64_t peak, std::uint64_t average) {
  VariantInfo v;
  v.uri = std::move(uri);
  v.peak_bps = peak;
  v.average_bps = average;
  v.codecs = "mp4a.40.2";
  return v;
}

TEST(MasterPlaylist, OneStreamInfPerVariantInOrder) {
  const std::string text = writeMasterPlaylist(
      {variant("64k/playlist.m3u8", 70123, 64456), variant("128k/playlist.m3u8", 140001, 128002)});
  EXPECT_EQ(text,
            "#EXTM3U\n"
            "#EXT-X-VERSION:3\n"
            "#EXT-X-INDEPENDENT-SEGMENTS\n"
            "#EXT-X-STREAM-INF:BANDWIDTH=70123,AVERAGE-BANDWIDTH=64456,CODECS=\"mp4a.40.2\"\n"
            "64k/playlist.m3u8\n"
            "#EXT-X-STREAM-INF:BANDWIDTH=140001,AVERAGE-BANDWIDTH=128002,CODECS=\"mp4a.40.2\"\n"
            "128k/playlist.m3u8\n");
}

TEST(MasterPlaylist, KeepsGivenOrderAndPairsEachStreamInfWithItsUri) {
  const std::vector<VariantInfo> vs = {variant("256k/p.m3u8", 4, 3), variant("64k/p.m3u8", 2, 1),
                                       variant("128k/p.m3u8", 3, 2)};
  const auto l = lines(writeMasterPlaylist(vs));
  ASSERT_EQ(l.size(), 3 + 2 * vs.size());
  EXPECT_EQ(l[0], "#EXTM3U");
  EXPECT_EQ(l[2], "#EXT-X-INDEPENDENT-SEGMENTS");
  for (std::size_t i = 0; i < vs.size(); ++i) {
    const std::string& inf = l[3 + 2 * i];
    EXPECT_EQ(inf.rfind("#EXT-X-STREAM-INF:", 0), 0u) << inf;
    EXPECT_NE(inf.find("BANDWIDTH=" + std::to_string(vs[i].peak_bps)), std::string::npos);
    EXPECT_NE(inf.find("AVERAGE-BANDWIDTH=" + std::to_string(vs[i].average_bps)),
              std::string::npos);
    EXPECT_NE(inf.find("CODECS=\"mp4a.40.2\""), std::string::npos);
    EXPECT_EQ(l[4 + 2 * i], vs[i].uri);
  }
}

// Two hours of 129- and 130-frame segments at 22.05 kHz: rounding each EXTINF
// alone drifts by +0.2 s; the printed values must sum to the exact total.
TEST(MediaPlaylist, PrintedExtinfSumDoesNotDriftOverLongInputs) {
  std::vector<SegmentInfo> segs;
  double exact = 0;
  for (int i = 0; i < 1200; ++i) {
    double d = (i % 5 == 0 ? 130 : 129) * 1024.0 / 22050.0;
    segs.push_back({"s.ts", d, 1000});
    exact += d;
  }
  const std::string text = writeMediaPlaylist(segs);
  double printed = 0;
  std::size_t pos = 0;
  int count = 0;
  while ((pos = text.find("#EXTINF:", pos)) != std::string::npos) {
    pos += 8;
    const double v = std::stod(text.substr(pos));
    EXPECT_GT(v, 5.9);
    EXPECT_LT(v, 6.1);
    printed += v;
    ++count;
  }
  EXPECT_EQ(count, 1200);
  EXPECT_NEAR(printed, exact, 0.001);
}

}  // namespace
}  // namespace vessel
