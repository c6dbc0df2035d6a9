// One job's transcode: decode once, convert once per output format, fan out to
// one encoder + HLS segmenter per rung, write through a Storage.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "vessel/codec.hpp"
#include "vessel/ladder.hpp"
#include "vessel/playlist.hpp"
#include "vessel/result.hpp"
#include "vessel/storage.hpp"

namespace vessel {

struct TranscodeRequest {
  std::string input_path;  ///< a local file GStreamer can read
  Ladder ladder;
  /// Codec plugins by name; every rung's `codec` must be here.
  std::map<std::string, std::shared_ptr<Codec>> codecs;
  std::shared_ptr<Storage> storage;
  /// Key prefix for every output ("" or ending in '/'), e.g. "u1/<upload>/".
  std::string prefix;
  /// Source duration if known (from probe), for progress; 0 = unknown.
  double source_duration_s = 0;
  /// No media progress for this long → fail with kTimeout (retryable).
  std::chrono::milliseconds stall_timeout{30000};
  /// Called from the transcoding thread with 0..1, at most a few times a second.
  std::function<void(double progress)> on_progress;
  /// Set to true from any thread to stop; the result is then kCancelled.
  const std::atomic<bool>* cancel = nullptr;
  /// When set and true at the time of a failure, what was written is left in
  /// place (a worker that lost its lease must not delete the files the newer
  /// attempt is writing under the same keys).
  const std::atomic<bool>* keep_outputs_on_failure = nullptr;
};

struct RungOutput {
  std::string name;
  std::string playlist_key;
  std::vector<SegmentInfo> segments;
  std::uint64_t peak_bps = 0;
  std::uint64_t average_bps = 0;
  std::uint64_t bytes = 0;
};

struct TranscodeResult {
  double duration_s = 0;  ///< media duration of the output (sum of EXTINF)
  std::vector<RungOutput> rungs;
  std::string master_key;
  std::vector<std::string> keys;  ///< every key written, master last
  std::string decoder;            ///< GStreamer factory that decoded the input ("avdec_mp3float")
};

/// Runs the whole ladder. master.m3u8 is written last, only after every segment
/// and media playlist was committed. On failure, the keys this call wrote are
/// removed (best effort) and the Error says why; it never throws.
Result<TranscodeResult> transcodeLadder(const TranscodeRequest& request) noexcept;

}  // namespace vessel
