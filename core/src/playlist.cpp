// Playlist text generation; pure functions, unit-tested in tests/core/test_playlist.cpp.
#include "vessel/playlist.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

namespace vessel {

namespace {

// EXTINF values in whole milliseconds, rounded so that their running sum tracks
// the exact running sum: rounding each one alone drifts (1200 segments of 129 or
// 130 AAC frames at 22.05 kHz drifted +0.33 s over 2 h).
std::vector<long long> printedDurationsMs(const std::vector<SegmentInfo>& segments) {
  std::vector<long long> out;
  out.reserve(segments.size());
  double exact = 0;
  long long printed = 0;
  for (const auto& s : segments) {
    exact += s.duration_s;
    long long cumulative = std::llround(exact * 1000);
    out.push_back(cumulative - printed);
    printed = cumulative;
  }
  return out;
}

}  // namespace

int targetDurationS(const std::vector<SegmentInfo>& segments) {
  long long target = 1;
  // Round what we print, not the exact value: a client sees "6.500".
  for (long long ms : printedDurationsMs(segments)) target = std::max(target, (ms + 500) / 1000);
  return static_cast<int>(target);
}

std::string writeMediaPlaylist(const std::vector<SegmentInfo>& segments) {
  std::string out;
  out += "#EXTM3U\n#EXT-X-VERSION:3\n";
  out += "#EXT-X-TARGETDURATION:" + std::to_string(targetDurationS(segments)) + "\n";
  out += "#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n";
  const std::vector<long long> ms = printedDurationsMs(segments);
  char line[64];
  for (std::size_t i = 0; i < segments.size(); ++i) {
    std::snprintf(line, sizeof line, "#EXTINF:%lld.%03lld,\n", ms[i] / 1000, ms[i] % 1000);
    out += line;
    out += segments[i].uri + "\n";
  }
  out += "#EXT-X-ENDLIST\n";
  return out;
}

std::uint64_t peakBitrateBps(const std::vector<SegmentInfo>& segments) {
  if (segments.empty()) return 0;
  const double target = targetDurationS(segments);
  double peak = 0;
  bool any = false;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    double dur = 0;
    double bytes = 0;
    for (std::size_t j = i; j < segments.size(); ++j) {
      dur += segments[j].duration_s;
      bytes += static_cast<double>(segments[j].bytes);
      if (dur > 1.5 * target) break;
      if (dur >= 0.5 * target && dur > 0) {
        peak = std::max(peak, bytes * 8 / dur);
        any = true;
      }
    }
  }
  if (!any) return averageBitrateBps(segments);  // whole stream shorter than half a target
  return static_cast<std::uint64_t>(std::ceil(peak));
}

std::uint64_t averageBitrateBps(const std::vector<SegmentInfo>& segments) {
  double dur = 0;
  double bytes = 0;
  for (const auto& s : segments) {
    dur += s.duration_s;
    bytes += static_cast<double>(s.bytes);
  }
  return dur > 0 ? static_cast<std::uint64_t>(std::ceil(bytes * 8 / dur)) : 0;
}

std::string writeMasterPlaylist(const std::vector<VariantInfo>& variants) {
  std::string out = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n";
  for (const auto& v : variants) {
    out += "#EXT-X-STREAM-INF:BANDWIDTH=" + std::to_string(v.peak_bps) +
           ",AVERAGE-BANDWIDTH=" + std::to_string(v.average_bps) + ",CODECS=\"" + v.codecs +
           "\"\n" + v.uri + "\n";
  }
  return out;
}

}  // namespace vessel
