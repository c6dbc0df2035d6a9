// HLS playlist writing (RFC 8216): VOD media playlists and the master playlist,
// with bandwidth figures measured from the segments actually written.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vessel {

struct SegmentInfo {
  std::string uri;        ///< relative to the playlist, e.g. "segment_000.ts"
  double duration_s = 0;  ///< exact media duration of the segment
  std::uint64_t bytes = 0;
};

/// A complete VOD media playlist: VERSION 3, integer TARGETDURATION ≥ every
/// EXTINF rounded to the nearest integer, MEDIA-SEQUENCE 0, PLAYLIST-TYPE VOD,
/// INDEPENDENT-SEGMENTS, ENDLIST.
std::string writeMediaPlaylist(const std::vector<SegmentInfo>& segments);

/// TARGETDURATION for these segments (at least 1).
int targetDurationS(const std::vector<SegmentInfo>& segments);

/// Peak segment bit rate as RFC 8216 §4.3.4.2 defines it: the largest bit rate of
/// any run of consecutive segments lasting 0.5–1.5 × the target duration.
std::uint64_t peakBitrateBps(const std::vector<SegmentInfo>& segments);
/// Total bytes × 8 / total duration.
std::uint64_t averageBitrateBps(const std::vector<SegmentInfo>& segments);

struct VariantInfo {
  std::string uri;  ///< e.g. "128k/playlist.m3u8"
  std::uint64_t peak_bps = 0;
  std::uint64_t average_bps = 0;
  std::string codecs;  ///< e.g. "mp4a.40.2"
};

/// Master playlist with one EXT-X-STREAM-INF per variant, in the given order.
std::string writeMasterPlaylist(const std::vector<VariantInfo>& variants);

}  // namespace vessel
