// GStreamer RAII helpers and error conversion.
#include "vessel/gst.hpp"

#include <mutex>

#include "adts_bundle.hpp"

namespace vessel::gst {

namespace {

std::string takeString(gchar* s) {
  std::string out = s ? s : "";
  g_free(s);
  return out;
}

std::string composeWhat(const std::string& element, const std::string& message,
                        const std::string& debug) {
  std::string what = element.empty() ? message : element + ": " + message;
  if (!debug.empty()) what += " (" + debug + ")";
  return what;
}

}  // namespace

GstError::GstError(std::string element, std::string message, std::string debug)
    : std::runtime_error(composeWhat(element, message, debug)),
      element_(std::move(element)),
      message_(std::move(message)),
      debug_(std::move(debug)) {}

void ensureInitialized() {
  static std::once_flag once;
  static std::string failure;
  std::call_once(once, [] {
    GError* error = nullptr;
    if (!gst_init_check(nullptr, nullptr, &error)) {
      failure = error ? error->message : "gst_init_check failed";
      g_clear_error(&error);
      return;
    }
    if (!registerAdtsBundle()) failure = "cannot register the vesseladtsbundle element";
  });
  if (!failure.empty()) throw GstError("gstreamer", failure, "");
}

ElementRef makeElement(const char* factory, const char* name) {
  GstElement* element = gst_element_factory_make(factory, name);
  if (!element) {
    throw GstError(factory, "GStreamer element not available",
                   "install the GStreamer plugin that provides it (see README)");
  }
  return sinkRef(element);
}

void link(GstElement* src, GstElement* sink) {
  if (!gst_element_link(src, sink)) {
    throw GstError(GST_ELEMENT_NAME(src), std::string("cannot link to ") + GST_ELEMENT_NAME(sink),
                   "");
  }
}

void linkFiltered(GstElement* src, GstElement* sink, GstCaps* caps) {
  if (!gst_element_link_filtered(src, sink, caps)) {
    throw GstError(GST_ELEMENT_NAME(src),
                   std::string("cannot link to ") + GST_ELEMENT_NAME(sink) + " with caps " +
                       takeString(gst_caps_to_string(caps)),
                   "");
  }
}

GstError errorFromMessage(GstMessage* message) {
  GError* error = nullptr;
  gchar* debug = nullptr;
  if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_ERROR) {
    gst_message_parse_error(message, &error, &debug);
  } else if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_WARNING) {
    gst_message_parse_warning(message, &error, &debug);
  }
  std::string text = error ? error->message : "unknown GStreamer error";
  g_clear_error(&error);
  std::string element = GST_MESSAGE_SRC(message) ? GST_MESSAGE_SRC_NAME(message) : "";
  return GstError(element, text, takeString(debug));
}

Pipeline::Pipeline(const char* name) : pipeline_(sinkRef(gst_pipeline_new(name))) {
  if (!pipeline_) throw GstError("pipeline", "cannot create pipeline", "");
}

Pipeline::~Pipeline() {
  if (pipeline_) gst_element_set_state(pipeline_.get(), GST_STATE_NULL);
}

void Pipeline::add(const ElementRef& element) {
  if (!gst_bin_add(bin(), element.get())) {  // the bin takes its own ref: ours is not floating
    throw GstError(GST_ELEMENT_NAME(element.get()), "cannot add element to pipeline", "");
  }
}

void Pipeline::setState(GstState state) {
  GstStateChangeReturn ret = gst_element_set_state(pipeline_.get(), state);
  if (ret != GST_STATE_CHANGE_FAILURE) return;
  // Report the first error the bus has for us; it names the failing element.
  BusRef b = bus();
  MessageRef msg = MessageRef::adopt(gst_bus_pop_filtered(b.get(), GST_MESSAGE_ERROR));
  if (msg) throw errorFromMessage(msg.get());
  throw GstError(GST_ELEMENT_NAME(pipeline_.get()),
                 std::string("cannot change state to ") + gst_element_state_get_name(state), "");
}

BusRef Pipeline::bus() const { return adoptRef(gst_element_get_bus(pipeline_.get())); }

gint64 Pipeline::positionNs() const {
  gint64 pos = -1;
  if (!gst_element_query_position(pipeline_.get(), GST_FORMAT_TIME, &pos)) return -1;
  return pos;
}

}  // namespace vessel::gst
