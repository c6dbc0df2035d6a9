// Implementation of vesseladtsbundle (see adts_bundle.hpp for why it exists).
#include "adts_bundle.hpp"

#include <gst/gst.h>

#include <mutex>

namespace vessel::gst {
namespace {

constexpr guint64 kDefaultSegmentNs = 6 * GST_SECOND;
constexpr guint kDefaultMaxBytes = 8 * 1024;
constexpr guint64 kDefaultMaxDurationNs = GST_SECOND;
// A last segment shorter than this joins the one before (which then stays under
// segment + 0.45 s, so its EXTINF still rounds to the segment length).
constexpr guint64 kDefaultMinTailNs = 450 * GST_MSECOND;

struct VesselAdtsBundle {
  GstElement parent;
  GstPad* sinkpad;
  GstPad* srcpad;
  // Properties (set before PLAYING).
  guint64 segment_ns;
  guint max_bytes;
  guint64 max_duration_ns;
  GstElement* split_target;  // splitmuxsink to tell where to split (owned ref) or null
  // Streaming state (streaming thread only, except stats under the object lock).
  GstSegment segment;
  GstBuffer* pending;
  GstClockTime pending_start;
  GstClockTime pending_end;
  guint pending_bytes;
  guint64 next_boundary;
  std::vector<GstClockTime>* segment_starts;
  GstClockTime end;
  guint64 frames;
  guint64 bundles;
  GstClockTime last_frame_ns;
  GstClockTime last_pts;
  guint64 min_tail_ns;
  std::vector<GstBuffer*>* held;  // frames of a segment not yet committed
  GstClockTime held_start_rt;
  guint64 held_ns;
};

struct VesselAdtsBundleClass {
  GstElementClass parent_class;
};

enum {
  PROP_0,
  PROP_SEGMENT_NS,
  PROP_MAX_BYTES,
  PROP_MAX_DURATION_NS,
  PROP_SPLIT_TARGET,
  PROP_MIN_TAIL_NS
};

GType vessel_adts_bundle_get_type();
#define VESSEL_ADTS_BUNDLE(obj) (reinterpret_cast<VesselAdtsBundle*>(obj))

G_DEFINE_TYPE(VesselAdtsBundle, vessel_adts_bundle, GST_TYPE_ELEMENT)

GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE(
    "sink", GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS(
        "audio/mpeg, mpegversion=(int)4, stream-format=(string)adts, framed=(boolean)true"));
GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS(
        "audio/mpeg, mpegversion=(int)4, stream-format=(string)adts, framed=(boolean)true"));

GstFlowReturn pushPending(VesselAdtsBundle* self) {
  if (!self->pending) return GST_FLOW_OK;
  GstBuffer* out = self->pending;
  self->pending = nullptr;
  GST_BUFFER_PTS(out) = self->pending_start;
  GST_BUFFER_DTS(out) = self->pending_start;
  if (GST_CLOCK_TIME_IS_VALID(self->pending_end) && self->pending_end >= self->pending_start) {
    GST_BUFFER_DURATION(out) = self->pending_end - self->pending_start;
  }
  self->pending_bytes = 0;
  GST_OBJECT_LOCK(self);
  self->bundles++;
  GST_OBJECT_UNLOCK(self);
  return gst_pad_push(self->srcpad, out);
}

// Adds one frame to the current bundle, pushing the bundle first if the frame
// would make it too big or too long.
GstFlowReturn addFrame(VesselAdtsBundle* self, GstBuffer* buffer) {
  GstClockTime pts = GST_BUFFER_PTS(buffer);
  GstClockTime dur = GST_BUFFER_DURATION(buffer);
  if (!GST_CLOCK_TIME_IS_VALID(dur)) dur = self->last_frame_ns;
  gsize size = gst_buffer_get_size(buffer);
  if (self->pending) {
    bool too_big = self->pending_bytes + size > self->max_bytes;
    bool too_long = GST_CLOCK_TIME_IS_VALID(pts) && GST_CLOCK_TIME_IS_VALID(self->pending_start) &&
                    pts + dur - self->pending_start > self->max_duration_ns;
    if (too_big || too_long) {
      GstFlowReturn ret = pushPending(self);
      if (ret != GST_FLOW_OK) {
        gst_buffer_unref(buffer);
        return ret;
      }
    }
  }
  if (!self->pending) {
    self->pending = buffer;
    self->pending_start = pts;
  } else {
    self->pending = gst_buffer_append(self->pending, buffer);
  }
  self->pending_bytes += size;
  if (GST_CLOCK_TIME_IS_VALID(pts)) self->pending_end = pts + dur;
  return GST_FLOW_OK;
}

// Starts the held segment for real: ends the previous bundle, tells splitmuxsink
// to cut at the held segment's first frame, then bundles the held frames.
GstFlowReturn commitHeld(VesselAdtsBundle* self, bool split) {
  GstFlowReturn ret = GST_FLOW_OK;
  if (split) {
    ret = pushPending(self);
    if (self->split_target) {
      g_signal_emit_by_name(self->split_target, "split-at-running-time", self->held_start_rt);
    }
    GST_OBJECT_LOCK(self);
    self->segment_starts->push_back(self->held_start_rt);
    GST_OBJECT_UNLOCK(self);
  }
  std::vector<GstBuffer*> held;
  held.swap(*self->held);
  self->held_ns = 0;
  for (GstBuffer* b : held) {
    if (ret == GST_FLOW_OK) {
      ret = addFrame(self, b);
    } else {
      gst_buffer_unref(b);
    }
  }
  return ret;
}

GstFlowReturn chain(GstPad* /*pad*/, GstObject* parent, GstBuffer* buffer) {
  auto* self = VESSEL_ADTS_BUNDLE(parent);
  GstClockTime pts = GST_BUFFER_PTS(buffer);
  GstClockTime rt = GST_CLOCK_TIME_NONE;
  if (GST_CLOCK_TIME_IS_VALID(pts)) {
    rt = gst_segment_to_running_time(&self->segment, GST_FORMAT_TIME, pts);
  }
  // aacparse leaves durations unset; a frame lasts until the next one starts,
  // and the last one as long as the one before it.
  GstClockTime dur = GST_BUFFER_DURATION(buffer);
  if (GST_CLOCK_TIME_IS_VALID(dur) && dur > 0) {
    self->last_frame_ns = dur;
  } else {
    if (GST_CLOCK_TIME_IS_VALID(pts) && GST_CLOCK_TIME_IS_VALID(self->last_pts) &&
        pts > self->last_pts) {
      self->last_frame_ns = pts - self->last_pts;
    }
    dur = self->last_frame_ns;
    GST_BUFFER_DURATION(buffer) = dur;
  }
  if (GST_CLOCK_TIME_IS_VALID(pts)) self->last_pts = pts;
  GST_OBJECT_LOCK(self);
  bool first = self->frames == 0;
  self->frames++;
  if (GST_CLOCK_TIME_IS_VALID(rt)) self->end = rt + dur;
  if (first) self->segment_starts->push_back(0);
  GST_OBJECT_UNLOCK(self);

  // A frame at or past the next boundary starts a new segment, but we hold that
  // segment's frames until it is at least min-tail long: if the stream ends
  // sooner, the tail joins the previous segment instead of making a sliver.
  bool starts_segment = false;
  if (self->held->empty() && !first && GST_CLOCK_TIME_IS_VALID(rt) && rt >= self->next_boundary) {
    while (rt >= self->next_boundary) self->next_boundary += self->segment_ns;
    self->held_start_rt = rt;
    starts_segment = true;
  }
  if (starts_segment || !self->held->empty()) {
    self->held->push_back(buffer);
    self->held_ns =
        GST_CLOCK_TIME_IS_VALID(rt) ? rt + dur - self->held_start_rt : self->held_ns + dur;
    if (self->held_ns >= self->min_tail_ns) return commitHeld(self, true);
    return GST_FLOW_OK;
  }
  return addFrame(self, buffer);
}

gboolean sinkEvent(GstPad* pad, GstObject* parent, GstEvent* event) {
  auto* self = VESSEL_ADTS_BUNDLE(parent);
  switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_SEGMENT:
      gst_event_copy_segment(event, &self->segment);
      break;
    case GST_EVENT_FLUSH_STOP:
      gst_clear_buffer(&self->pending);
      self->pending_bytes = 0;
      for (GstBuffer* b : *self->held) gst_buffer_unref(b);
      self->held->clear();
      self->held_ns = 0;
      break;
    default:
      break;
  }
  // At EOS, a held tail shorter than min-tail joins the previous segment (no
  // split), then everything we hold goes out before the EOS. Other serialized
  // events (tags, ...) may overtake held frames: their order against audio does
  // not matter to the segments we write.
  if (GST_EVENT_TYPE(event) == GST_EVENT_EOS) {
    if (!self->held->empty()) (void)commitHeld(self, false);
    (void)pushPending(self);  // a flow error here is reported by the pad that got it
  }
  return gst_pad_event_default(pad, parent, event);
}

void setProperty(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  auto* self = VESSEL_ADTS_BUNDLE(object);
  switch (id) {
    case PROP_SEGMENT_NS:
      self->segment_ns = g_value_get_uint64(value);
      self->next_boundary = self->segment_ns;
      break;
    case PROP_MAX_BYTES:
      self->max_bytes = g_value_get_uint(value);
      break;
    case PROP_MAX_DURATION_NS:
      self->max_duration_ns = g_value_get_uint64(value);
      break;
    case PROP_MIN_TAIL_NS:
      self->min_tail_ns = g_value_get_uint64(value);
      break;
    case PROP_SPLIT_TARGET:
      gst_clear_object(&self->split_target);
      self->split_target = GST_ELEMENT(g_value_dup_object(value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
}

void getProperty(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  auto* self = VESSEL_ADTS_BUNDLE(object);
  switch (id) {
    case PROP_SEGMENT_NS:
      g_value_set_uint64(value, self->segment_ns);
      break;
    case PROP_MAX_BYTES:
      g_value_set_uint(value, self->max_bytes);
      break;
    case PROP_MAX_DURATION_NS:
      g_value_set_uint64(value, self->max_duration_ns);
      break;
    case PROP_SPLIT_TARGET:
      g_value_set_object(value, self->split_target);
      break;
    case PROP_MIN_TAIL_NS:
      g_value_set_uint64(value, self->min_tail_ns);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
}

void finalize(GObject* object) {
  auto* self = VESSEL_ADTS_BUNDLE(object);
  gst_clear_buffer(&self->pending);
  gst_clear_object(&self->split_target);
  delete self->segment_starts;
  for (GstBuffer* b : *self->held) gst_buffer_unref(b);
  delete self->held;
  G_OBJECT_CLASS(vessel_adts_bundle_parent_class)->finalize(object);
}

void vessel_adts_bundle_class_init(VesselAdtsBundleClass* klass) {
  auto* gobject_class = G_OBJECT_CLASS(klass);
  auto* element_class = GST_ELEMENT_CLASS(klass);
  gobject_class->set_property = setProperty;
  gobject_class->get_property = getProperty;
  gobject_class->finalize = finalize;
  auto flags = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_property(
      gobject_class, PROP_SEGMENT_NS,
      g_param_spec_uint64("segment-duration", "Segment duration", "Segment duration in ns", 1,
                          G_MAXUINT64, kDefaultSegmentNs, flags));
  g_object_class_install_property(
      gobject_class, PROP_MAX_BYTES,
      g_param_spec_uint("max-bytes", "Max bytes", "Largest bundle in bytes", 1, G_MAXUINT,
                        kDefaultMaxBytes, flags));
  g_object_class_install_property(
      gobject_class, PROP_MAX_DURATION_NS,
      g_param_spec_uint64("max-duration", "Max duration", "Longest bundle in ns", 1, G_MAXUINT64,
                          kDefaultMaxDurationNs, flags));
  g_object_class_install_property(
      gobject_class, PROP_MIN_TAIL_NS,
      g_param_spec_uint64("min-tail", "Minimum tail",
                          "A last segment shorter than this (ns) joins the previous one", 0,
                          G_MAXUINT64, kDefaultMinTailNs, flags));
  g_object_class_install_property(
      gobject_class, PROP_SPLIT_TARGET,
      g_param_spec_object("split-target", "Split target",
                          "splitmuxsink to send split-at-running-time to", GST_TYPE_ELEMENT,
                          flags));
  gst_element_class_set_static_metadata(element_class, "Vessel ADTS bundler", "Codec/Parser/Audio",
                                        "Packs AAC frames into segment-aligned PES-sized buffers",
                                        "Vessel");
  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
}

void vessel_adts_bundle_init(VesselAdtsBundle* self) {
  self->sinkpad = gst_pad_new_from_static_template(&sink_template, "sink");
  gst_pad_set_chain_function(self->sinkpad, chain);
  gst_pad_set_event_function(self->sinkpad, sinkEvent);
  GST_PAD_SET_PROXY_CAPS(self->sinkpad);
  gst_element_add_pad(GST_ELEMENT(self), self->sinkpad);
  self->srcpad = gst_pad_new_from_static_template(&src_template, "src");
  GST_PAD_SET_PROXY_CAPS(self->srcpad);
  gst_element_add_pad(GST_ELEMENT(self), self->srcpad);
  self->segment_ns = kDefaultSegmentNs;
  self->max_bytes = kDefaultMaxBytes;
  self->max_duration_ns = kDefaultMaxDurationNs;
  self->split_target = nullptr;
  gst_segment_init(&self->segment, GST_FORMAT_TIME);
  self->pending = nullptr;
  self->pending_start = GST_CLOCK_TIME_NONE;
  self->pending_end = GST_CLOCK_TIME_NONE;
  self->pending_bytes = 0;
  self->next_boundary = kDefaultSegmentNs;
  self->segment_starts = new std::vector<GstClockTime>();
  self->end = GST_CLOCK_TIME_NONE;
  self->frames = 0;
  self->bundles = 0;
  self->last_frame_ns = 0;
  self->last_pts = GST_CLOCK_TIME_NONE;
  self->min_tail_ns = kDefaultMinTailNs;
  self->held = new std::vector<GstBuffer*>();
  self->held_start_rt = GST_CLOCK_TIME_NONE;
  self->held_ns = 0;
}

}  // namespace

bool registerAdtsBundle() {
  static std::once_flag once;
  static bool ok = false;
  std::call_once(once, [] {
    ok = gst_element_register(nullptr, "vesseladtsbundle", GST_RANK_NONE,
                              vessel_adts_bundle_get_type());
  });
  return ok;
}

AdtsBundleStats adtsBundleStats(GstElement* element) {
  AdtsBundleStats stats;
  auto* self = VESSEL_ADTS_BUNDLE(element);
  GST_OBJECT_LOCK(self);
  stats.segment_starts_ns = *self->segment_starts;
  stats.end_ns = self->end;
  stats.frames = self->frames;
  stats.bundles = self->bundles;
  GST_OBJECT_UNLOCK(self);
  return stats;
}

}  // namespace vessel::gst
