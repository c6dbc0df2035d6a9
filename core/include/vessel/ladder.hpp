// Ladders as data: the rungs, codec and segmenting of one output pipeline,
// declared in pipelines/<name>.toml and never in code.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "vessel/result.hpp"

namespace vessel {

struct Rung {
  std::string name;   ///< directory name of the rung, e.g. "128k"
  std::string codec;  ///< codec plugin name, e.g. "aac"
  std::int64_t bitrate_bps = 0;
  std::int32_t sample_rate_hz = 0;
  std::int32_t channels = 0;
  /// Codec-specific settings from the rung's `options` table (e.g. {"coder": "fast"}
  /// for aac); the codec plugin checks them and refuses ones it does not know.
  std::map<std::string, std::string> options;
};

struct Ladder {
  std::string name;  ///< e.g. "hls-aac"
  std::string description;
  std::string container;  ///< "mpegts" (the only one hlssink2 writes)
  double segment_duration_s = 0;
  std::vector<Rung> rungs;
};

/// Parses a ladder file; errors name the file, key and reason.
Result<Ladder> parseLadder(std::string_view toml_text, std::string_view origin);
Result<Ladder> loadLadderFile(const std::filesystem::path& path);

/// Finds "<name>.toml" in `search_dirs` (first match wins). kNotFound lists the
/// pipelines that do exist.
Result<Ladder> findLadder(std::string_view name,
                          const std::vector<std::filesystem::path>& search_dirs);

/// Names of every ladder file in `search_dirs`.
std::vector<std::string> listLadders(const std::vector<std::filesystem::path>& search_dirs);

}  // namespace vessel
