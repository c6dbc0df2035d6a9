// Probe: what is in an audio file (GstDiscoverer), refusing anything that is not audio.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "vessel/result.hpp"

namespace vessel {

struct ProbeResult {
  double duration_s = 0;
  std::string codec;  ///< short name: mp3, aac, flac, vorbis, opus, pcm_s16le, ...
  int sample_rate = 0;
  int channels = 0;
  std::optional<std::int64_t> bit_rate;     ///< bits/s, nominal or derived from size
  std::string container;                    ///< mp3, wav, ogg, mp4, flac, ...
  std::map<std::string, std::string> tags;  ///< title, artist, album, genre, date, track, ...
};

/// Probes a local file. kNotFound (missing), kUnsupportedInput (empty, not audio,
/// no decoder), kCorruptInput (audio that cannot be read), kTimeout.
Result<ProbeResult> probeFile(
    const std::string& path, std::chrono::milliseconds timeout = std::chrono::seconds(15)) noexcept;

nlohmann::json toJson(const ProbeResult& probe);

}  // namespace vessel
