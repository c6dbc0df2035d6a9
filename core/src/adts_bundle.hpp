// vesseladtsbundle: packs consecutive framed AAC (ADTS) buffers into one buffer
// per PES, flushing at every segment boundary.
//
// Why: mpegtsmux writes one PES per input buffer. One AAC frame per PES costs two
// 188-byte TS packets for ~190 bytes of audio at 64 kbit/s, doubling the bytes on
// the wire. Several ADTS frames in one PES are valid (ISO 13818-1 / what ffmpeg
// writes). The element also starts a new bundle, and asks the downstream
// splitmuxsink to split, at the first frame at or after each multiple of the
// segment duration, so segments are exact and independent of bundle size.
#pragma once

#include <gst/gst.h>

#include <vector>

namespace vessel::gst {

/// Registers the element with GStreamer (static, not a plugin file). Idempotent.
bool registerAdtsBundle();

struct AdtsBundleStats {
  std::vector<GstClockTime> segment_starts_ns;  ///< running time of each segment's first frame
  GstClockTime end_ns = GST_CLOCK_TIME_NONE;    ///< end of the last frame
  guint64 frames = 0;
  guint64 bundles = 0;
};

/// Snapshot of what the element has passed so far (thread-safe).
AdtsBundleStats adtsBundleStats(GstElement* element);

}  // namespace vessel::gst
