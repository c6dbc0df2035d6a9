// The codec plugin interface: builds the encoder half of one ladder rung.
#pragma once

#include <gst/gst.h>

#include <string>

#include "vessel/ladder.hpp"
#include "vessel/result.hpp"

namespace vessel {

class Codec {
 public:
  virtual ~Codec() = default;

  /// Raw audio caps the encoder wants as input, without rate and channels, e.g.
  /// "audio/x-raw,format=F32LE,layout=non-interleaved". The core converts once
  /// per distinct (caps, rate, channels) before fanning out to rungs.
  virtual std::string rawFormatCaps() const noexcept = 0;

  /// A new, floating GstElement (usually a bin) with one "sink" pad taking
  /// rawFormatCaps() at the rung's rate/channels and one "src" pad producing
  /// parsed, framed packets that hlssink2's mpegtsmux accepts.
  virtual Result<GstElement*> makeEncoder(const Rung& rung) noexcept = 0;

  /// The RFC 6381 CODECS value for the master playlist, e.g. "mp4a.40.2".
  virtual std::string hlsCodecs(const Rung& rung) const noexcept = 0;
};

}  // namespace vessel
