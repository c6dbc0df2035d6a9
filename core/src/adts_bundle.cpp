// Implementation of vesseladtsbundle (see adts_bundle.hpp for why it exists).
#include "adts_bundle.hpp"

#include <gst/gst.h>

#include <mutex>

namespace vessel::gst {
namespace {

constexpr guint64 kDefaultSegmentNs = 6 * GST_SECOND;
constexpr guint kDefaultMaxBytes = 8 * 1024;
constexpr guint64 kDefaultMaxDurationNs = GST_SECOND;

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
};

struct VesselAdtsBundleClass {
  GstElementClass parent_class;
};

enum { PROP_0, PROP_SEGMENT_NS, PROP_MAX_BYTES, PROP_MAX_DURATION_NS, PROP_SPLIT_TARGET };

GType vessel_adts_bundle_get_type();
#define VESSEL_ADTS_BUNDLE(obj) (reinterpret_cast<VesselAdtsBundle*>(obj))

G_DEFINE_TYPE(VesselAdtsBundle, vessel_adts_bundle, GST_TYPE_ELEMENT)

GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE(
    "sink", GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("audio/mpeg, mpegversion=(int)4, stream-format=(string)adts, framed=(boolean)true"));
GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("audio/mpeg, mpegversion=(int)4, stream-format=(string)adts, framed=(boolean)true"));

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

GstFlowReturn chain(GstPad* /*pad*/, GstObject* parent, GstBuffer* buffer) {
  auto* self = VESSEL_ADTS_BUNDLE(parent);
  GstClockTime pts = GST_BUFFER_PTS(buffer);
  GstClockTime rt = GST_CLOCK_TIME_NONE;
  if (GST_CLOCK_TIME_IS_VALID(pts)) {
    rt = gst_segment_to_running_time(&self->segment, GST_FORMAT_TIME, pts);
  }
  GstClockTime dur = GST_BUFFER_DURATION(buffer);
  gsize size = gst_buffer_get_size(buffer);
  GstFlowReturn ret = GST_FLOW_OK;

  bool boundary = GST_CLOCK_TIME_IS_VALID(rt) && rt >= self->next_boundary;
  bool first = self->frames == 0;
  if (self->pending) {
    bool too_big = self->pending_bytes + size > self->max_bytes;
    bool too_long = GST_CLOCK_TIME_IS_VALID(pts) && GST_CLOCK_TIME_IS_VALID(self->pending_start) &&
                    pts + (GST_CLOCK_TIME_IS_VALID(dur) ? dur : 0) - self->pending_start >
                        self->max_duration_ns;
    if (boundary || too_big || too_long) ret = pushPending(self);
    if (ret != GST_FLOW_OK) {
      gst_buffer_unref(buffer);
      return ret;
    }
  }
  if (boundary || first) {
    if (boundary && !first && self->split_target) {
      // Ask splitmuxsink to cut exactly at this frame.
      g_signal_emit_by_name(self->split_target, "split-at-running-time", rt);
    }
    while (GST_CLOCK_TIME_IS_VALID(rt) && rt >= self->next_boundary) {
      self->next_boundary += self->segment_ns;
    }
    GST_OBJECT_LOCK(self);
    self->segment_starts->push_back(first ? 0 : rt);
    GST_OBJECT_UNLOCK(self);
  }

  if (!self->pending) {
    self->pending = buffer;
    self->pending_start = pts;
  } else {
    self->pending = gst_buffer_append(self->pending, buffer);
  }
  self->pending_bytes += size;
  if (GST_CLOCK_TIME_IS_VALID(pts)) {
    self->pending_end = pts + (GST_CLOCK_TIME_IS_VALID(dur) ? dur : 0);
  }
  GST_OBJECT_LOCK(self);
  self->frames++;
  if (GST_CLOCK_TIME_IS_VALID(rt)) self->end = rt + (GST_CLOCK_TIME_IS_VALID(dur) ? dur : 0);
  GST_OBJECT_UNLOCK(self);
  return GST_FLOW_OK;
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
      break;
    default:
      break;
  }
  // Keep serialized events in order with the data we still hold.
  if (GST_EVENT_IS_SERIALIZED(event) && GST_EVENT_TYPE(event) != GST_EVENT_FLUSH_STOP) {
    if (pushPending(self) != GST_FLOW_OK && GST_EVENT_TYPE(event) != GST_EVENT_EOS) {
      // Downstream is flushing or erroring; the event still goes through below.
    }
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
    case PROP_SEGMENT_NS: g_value_set_uint64(value, self->segment_ns); break;
    case PROP_MAX_BYTES: g_value_set_uint(value, self->max_bytes); break;
    case PROP_MAX_DURATION_NS: g_value_set_uint64(value, self->max_duration_ns); break;
    case PROP_SPLIT_TARGET: g_value_set_object(value, self->split_target); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
}

void finalize(GObject* object) {
  auto* self = VESSEL_ADTS_BUNDLE(object);
  gst_clear_buffer(&self->pending);
  gst_clear_object(&self->split_target);
  delete self->segment_starts;
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
      g_param_spec_uint64("max-duration", "Max duration", "Longest bundle in ns", 1,
                          G_MAXUINT64, kDefaultMaxDurationNs, flags));
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
