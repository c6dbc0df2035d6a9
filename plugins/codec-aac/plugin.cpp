// Codec plugin `aac`: AAC-LC through libav's encoder (GStreamer's avenc_aac),
// framed as ADTS by aacparse, for MPEG-TS HLS segments. CODECS = "mp4a.40.2".
//
// Config keys (section [codec.aac]):
//   encoder   GStreamer element to use (default "avenc_aac")
//   mid_side  M/S stereo: "off" (default) or "force". libav's own default is
//             "auto" (search per band), but gst-libav exposes the option as a
//             boolean and maps "auto" to "force", which costs ~2.5x CPU at
//             256 kbit/s (measured: 5.5 s vs 2.1 s for 2 min of stereo).
//             "off" matches `ffmpeg -c:a aac -aac_ms 0`.
//
// Example:
//   [codec.aac]
//   encoder = "avenc_aac"
//   mid_side = "off"
//
// Equivalent launch line for one rung:
//   ... ! audio/x-raw,format=F32LE,layout=interleaved,rate=44100,channels=2
//       ! avenc_aac bitrate=128000 aac-ms=false ! aacparse
//       ! audio/mpeg,mpegversion=4,stream-format=adts ! ...
#include "vessel/plugin.hpp"

#include <gst/gst.h>

#include <boost/dll/alias.hpp>
#include <string>
#include <vector>

#include "vessel/codec.hpp"

namespace {

class AacCodec final : public vessel::Codec {
 public:
  AacCodec(std::string encoder, bool force_mid_side)
      : encoder_(std::move(encoder)), force_mid_side_(force_mid_side) {}

  std::string rawFormatCaps() const noexcept override {
    return "audio/x-raw,format=(string)F32LE,layout=(string)interleaved";
  }

  vessel::Result<GstElement*> makeEncoder(const vessel::Rung& rung) noexcept override {
    GstElement* bin = gst_bin_new(nullptr);
    GstElement* enc = gst_element_factory_make(encoder_.c_str(), nullptr);
    GstElement* parse = gst_element_factory_make("aacparse", nullptr);
    GstElement* filter = gst_element_factory_make("capsfilter", nullptr);
    if (!enc || !parse || !filter) {
      for (GstElement* e : {enc, parse, filter}) {
        if (e) gst_object_unref(gst_object_ref_sink(e));
      }
      gst_object_unref(gst_object_ref_sink(bin));
      return vessel::makeError(vessel::ErrorCode::kConfig,
                               "GStreamer element '" + encoder_ +
                                   "' or aacparse is missing (install gstreamer1.0-libav and "
                                   "gstreamer1.0-plugins-good)");
    }
    // gst-libav 1.22 exposes libav's int64 "b" option as a gint property; varargs must
    // carry exactly the property's type.
    GParamSpec* bitrate = g_object_class_find_property(G_OBJECT_GET_CLASS(enc), "bitrate");
    if (bitrate && bitrate->value_type == G_TYPE_INT64) {
      g_object_set(enc, "bitrate", static_cast<gint64>(rung.bitrate_bps), nullptr);
    } else {
      g_object_set(enc, "bitrate", static_cast<gint>(rung.bitrate_bps), nullptr);
    }
    if (g_object_class_find_property(G_OBJECT_GET_CLASS(enc), "aac-ms")) {
      g_object_set(enc, "aac-ms", force_mid_side_ ? TRUE : FALSE, nullptr);
    }
    // Rung options: `coder` picks libav's quantizer search ("twoloop", its default,
    // "fast" or "anmr"); see docs/transcode.md for why the default ladder keeps
    // twoloop.
    for (const auto& [key, value] : rung.options) {
      std::string problem;
      if (key != "coder") {
        problem = "unknown option '" + key + "' (the aac codec knows: coder)";
      } else if (GParamSpec* spec =
                     g_object_class_find_property(G_OBJECT_GET_CLASS(enc), "aac-coder");
                 !spec || !G_IS_PARAM_SPEC_ENUM(spec)) {
        problem = "encoder '" + encoder_ + "' has no coder choice (aac-coder)";
      } else if (!g_enum_get_value_by_nick(G_PARAM_SPEC_ENUM(spec)->enum_class, value.c_str())) {
        problem = "option coder = '" + value + "' is not one of: anmr, twoloop, fast";
      } else {
        gst_util_set_object_arg(G_OBJECT(enc), "aac-coder", value.c_str());
      }
      if (!problem.empty()) {
        for (GstElement* e : {enc, parse, filter}) gst_object_unref(gst_object_ref_sink(e));
        gst_object_unref(gst_object_ref_sink(bin));
        return vessel::makeError(vessel::ErrorCode::kConfig,
                                 "codec 'aac', rung '" + rung.name + "': " + problem);
      }
    }
    GstCaps* caps =
        gst_caps_from_string("audio/mpeg,mpegversion=(int)4,stream-format=(string)adts");
    g_object_set(filter, "caps", caps, nullptr);
    gst_caps_unref(caps);
    gst_bin_add_many(GST_BIN(bin), enc, parse, filter, nullptr);
    if (!gst_element_link_many(enc, parse, filter, nullptr)) {
      gst_object_unref(gst_object_ref_sink(bin));
      return vessel::makeError(vessel::ErrorCode::kInternal,
                               "cannot link " + encoder_ + " ! aacparse");
    }
    GstPad* sink = gst_element_get_static_pad(enc, "sink");
    GstPad* src = gst_element_get_static_pad(filter, "src");
    gst_element_add_pad(bin, gst_ghost_pad_new("sink", sink));
    gst_element_add_pad(bin, gst_ghost_pad_new("src", src));
    gst_object_unref(sink);
    gst_object_unref(src);
    return bin;  // floating, as the interface says
  }

  std::string hlsCodecs(const vessel::Rung& /*rung*/) const noexcept override {
    return "mp4a.40.2";
  }

 private:
  std::string encoder_;
  bool force_mid_side_;
};

const std::vector<vessel::ConfigField>* fields() noexcept {
  static const std::vector<vessel::ConfigField> kFields = {
      {"encoder",
       vessel::ConfigType::kString,
       std::string("avenc_aac"),
       "GStreamer AAC encoder element",
       false,
       {},
       {},
       {}},
      {"mid_side",
       vessel::ConfigType::kString,
       std::string("off"),
       "M/S stereo coding: off or force",
       false,
       {},
       {},
       {"off", "force"}},
  };
  return &kFields;
}

void* create(const vessel::Config& config, std::string& error) noexcept {
  try {
    return static_cast<vessel::Codec*>(
        new AacCodec(config.getString("encoder"), config.getString("mid_side") == "force"));
  } catch (const std::exception& e) {
    error = e.what();
    return nullptr;
  }
}

void destroy(void* object) noexcept { delete static_cast<vessel::Codec*>(object); }

}  // namespace

VESSEL_PLUGIN(vessel::PluginKind::kCodec, "aac", "0.1.0", "AAC-LC via avenc_aac (mp4a.40.2)",
              fields, create, destroy)
