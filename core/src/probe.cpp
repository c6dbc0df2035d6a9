// GstDiscoverer-based probe with clear refusals for non-audio input.
#include "vessel/probe.hpp"

#include <gst/pbutils/pbutils.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "vessel/gst.hpp"

namespace vessel {
namespace {

std::string capsName(GstCaps* caps) {
  if (!caps || gst_caps_is_empty(caps) || gst_caps_is_any(caps)) return {};
  return gst_structure_get_name(gst_caps_get_structure(caps, 0));
}

std::string codecName(GstCaps* caps) {
  if (!caps || gst_caps_is_empty(caps)) return "unknown";
  const GstStructure* s = gst_caps_get_structure(caps, 0);
  std::string name = gst_structure_get_name(s);
  if (name == "audio/mpeg") {
    int version = 0;
    gst_structure_get_int(s, "mpegversion", &version);
    if (version == 1) {
      int layer = 3;
      gst_structure_get_int(s, "layer", &layer);
      return "mp" + std::to_string(layer);
    }
    return "aac";
  }
  if (name == "audio/x-raw") {
    const char* format = gst_structure_get_string(s, "format");
    std::string f = format ? format : "unknown";
    for (auto& c : f) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return "pcm_" + f;
  }
  static const std::map<std::string, std::string> kNames = {
      {"audio/x-flac", "flac"},     {"audio/x-vorbis", "vorbis"},  {"audio/x-opus", "opus"},
      {"audio/x-alac", "alac"},     {"audio/x-wma", "wma"},        {"audio/x-ac3", "ac3"},
      {"audio/x-eac3", "eac3"},     {"audio/x-speex", "speex"},    {"audio/x-adpcm", "adpcm"},
      {"audio/x-alaw", "pcm_alaw"}, {"audio/x-mulaw", "pcm_mulaw"}};
  auto it = kNames.find(name);
  return it != kNames.end() ? it->second : name;
}

std::string containerName(const std::string& caps_name, const std::string& codec) {
  static const std::map<std::string, std::string> kNames = {
      {"audio/x-wav", "wav"},          {"application/ogg", "ogg"}, {"audio/ogg", "ogg"},
      {"video/quicktime", "mp4"},      {"audio/x-m4a", "mp4"},     {"application/x-id3", "mp3"},
      {"application/x-apetag", "mp3"}, {"audio/x-flac", "flac"},   {"video/x-matroska", "matroska"},
      {"audio/webm", "webm"},          {"video/webm", "webm"},     {"audio/x-aiff", "aiff"},
      {"video/x-ms-asf", "asf"},       {"audio/mpeg", "mp3"},      {"audio/x-adts", "adts"}};
  auto it = kNames.find(caps_name);
  if (it != kNames.end()) {
    if (it->second == "mp3" && codec == "aac") return "adts";
    return it->second;
  }
  return caps_name.empty() ? codec : caps_name;
}

void addTags(const GstTagList* list, std::map<std::string, std::string>& out) {
  if (!list) return;
  static const std::pair<const char*, const char*> kStringTags[] = {
      {GST_TAG_TITLE, "title"},
      {GST_TAG_ARTIST, "artist"},
      {GST_TAG_ALBUM, "album"},
      {GST_TAG_GENRE, "genre"},
      {GST_TAG_COMMENT, "comment"},
      {GST_TAG_COMPOSER, "composer"},
      {GST_TAG_ALBUM_ARTIST, "album_artist"}};
  for (const auto& [tag, key] : kStringTags) {
    gchar* value = nullptr;
    if (!out.count(key) && gst_tag_list_get_string(list, tag, &value) && value) out[key] = value;
    g_free(value);
  }
  guint track = 0;
  if (!out.count("track") && gst_tag_list_get_uint(list, GST_TAG_TRACK_NUMBER, &track)) {
    out["track"] = std::to_string(track);
  }
  GstDateTime* dt = nullptr;
  if (!out.count("date") && gst_tag_list_get_date_time(list, GST_TAG_DATE_TIME, &dt) && dt) {
    gchar* s = gst_date_time_to_iso8601_string(dt);
    if (s) out["date"] = s;
    g_free(s);
    gst_date_time_unref(dt);
  }
  GDate* date = nullptr;
  if (!out.count("date") && gst_tag_list_get_date(list, GST_TAG_DATE, &date) && date) {
    out["date"] = std::to_string(g_date_get_year(date));
    g_date_free(date);
  }
}

}  // namespace

Result<ProbeResult> probeFile(const std::string& path, std::chrono::milliseconds timeout) noexcept {
  try {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      return makeError(errno == ENOENT ? ErrorCode::kNotFound : ErrorCode::kPermissionDenied,
                       "cannot open input '" + path + "': " + std::strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
      return makeError(ErrorCode::kUnsupportedInput, "input '" + path + "' is not a regular file");
    }
    if (st.st_size == 0) {
      return makeError(ErrorCode::kUnsupportedInput, "input '" + path + "' is empty (0 bytes)");
    }
    gst::ensureInitialized();
    GError* error = nullptr;
    auto discoverer = gst::sinkRef(
        gst_discoverer_new(static_cast<GstClockTime>(timeout.count()) * GST_MSECOND, &error));
    if (!discoverer) {
      std::string msg = error ? error->message : "cannot create discoverer";
      g_clear_error(&error);
      return makeError(ErrorCode::kInternal, msg);
    }
    gchar* uri = gst_filename_to_uri(path.c_str(), &error);
    if (!uri) {
      std::string msg = error ? error->message : "bad path";
      g_clear_error(&error);
      return makeError(ErrorCode::kInvalidArgument, "input '" + path + "': " + msg);
    }
    auto info = gst::adoptRef(gst_discoverer_discover_uri(discoverer.get(), uri, &error));
    g_free(uri);
    std::string err_msg = error ? error->message : "";
    g_clear_error(&error);
    if (!info) return makeError(ErrorCode::kUnsupportedInput, "input '" + path + "': " + err_msg);
    switch (gst_discoverer_info_get_result(info.get())) {
      case GST_DISCOVERER_OK:
        break;
      case GST_DISCOVERER_TIMEOUT:
        return makeError(ErrorCode::kTimeout, "probing '" + path + "' timed out");
      case GST_DISCOVERER_MISSING_PLUGINS:
        return makeError(ErrorCode::kUnsupportedInput,
                         "input '" + path + "' is in a format no installed decoder handles");
      default:
        return makeError(ErrorCode::kUnsupportedInput,
                         "input '" + path + "' is not a readable audio file" +
                             (err_msg.empty() ? "" : " (" + err_msg + ")"));
    }
    GList* audio = gst_discoverer_info_get_audio_streams(info.get());
    if (!audio) {
      GList* video = gst_discoverer_info_get_video_streams(info.get());
      bool has_video = video != nullptr;
      gst_discoverer_stream_info_list_free(video);
      return makeError(ErrorCode::kUnsupportedInput,
                       "input '" + path + "' is not audio" +
                           (has_video ? " (it holds an image or video stream)" : ""));
    }
    auto* ainfo = GST_DISCOVERER_AUDIO_INFO(audio->data);
    ProbeResult result;
    result.sample_rate = static_cast<int>(gst_discoverer_audio_info_get_sample_rate(ainfo));
    result.channels = static_cast<int>(gst_discoverer_audio_info_get_channels(ainfo));
    GstCaps* acaps = gst_discoverer_stream_info_get_caps(GST_DISCOVERER_STREAM_INFO(ainfo));
    result.codec = codecName(acaps);
    if (result.codec == "audio/x-wav" || result.codec == "audio/x-aiff") {
      // Raw PCM: discoverer reports the container's caps; name it like ffprobe does.
      guint depth = gst_discoverer_audio_info_get_depth(ainfo);
      result.codec = "pcm_s" + std::to_string(depth ? depth : 16) +
                     (result.codec == "audio/x-wav" ? "le" : "be");
    }
    if (acaps) gst_caps_unref(acaps);
    guint bitrate = gst_discoverer_audio_info_get_bitrate(ainfo);
    addTags(gst_discoverer_stream_info_get_tags(GST_DISCOVERER_STREAM_INFO(ainfo)), result.tags);
    gst_discoverer_stream_info_list_free(audio);
    addTags(gst_discoverer_info_get_tags(info.get()), result.tags);

    GstDiscovererStreamInfo* top = gst_discoverer_info_get_stream_info(info.get());
    if (top) {
      GstCaps* tcaps = gst_discoverer_stream_info_get_caps(top);
      result.container = containerName(capsName(tcaps), result.codec);
      if (tcaps) gst_caps_unref(tcaps);
      gst_discoverer_stream_info_unref(top);
    }
    GstClockTime duration = gst_discoverer_info_get_duration(info.get());
    result.duration_s =
        GST_CLOCK_TIME_IS_VALID(duration) ? static_cast<double>(duration) / GST_SECOND : 0;
    if (result.sample_rate <= 0 || result.channels <= 0) {
      return makeError(ErrorCode::kCorruptInput,
                       "input '" + path + "': audio stream has no sample rate or channel count");
    }
    if (result.duration_s < 0.1) {
      return makeError(ErrorCode::kCorruptInput, "input '" + path +
                                                     "' holds no usable audio (duration " +
                                                     std::to_string(result.duration_s) + " s)");
    }
    if (bitrate > 0) {
      result.bit_rate = bitrate;
    } else {
      result.bit_rate =
          static_cast<std::int64_t>(static_cast<double>(st.st_size) * 8 / result.duration_s);
    }
    return result;
  } catch (const std::exception& e) {
    return makeError(ErrorCode::kInternal, std::string("probe: ") + e.what());
  }
}

nlohmann::json toJson(const ProbeResult& probe) {
  nlohmann::json j;
  j["duration_s"] = std::round(probe.duration_s * 1000) / 1000;
  j["codec"] = probe.codec;
  j["sample_rate"] = probe.sample_rate;
  j["channels"] = probe.channels;
  j["bit_rate"] = probe.bit_rate ? nlohmann::json(*probe.bit_rate) : nlohmann::json(nullptr);
  j["container"] = probe.container;
  j["tags"] = nlohmann::json::object();
  for (const auto& [k, v] : probe.tags) j["tags"][k] = v;
  return j;
}

}  // namespace vessel
