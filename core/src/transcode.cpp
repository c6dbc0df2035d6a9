// The ladder builder: one GStreamer pipeline per job, built from a Ladder.
//
//   filesrc ! decodebin ─┬─ audioconvert ! audioresample ! capsfilter ! tee ─┬─ queue ! <codec> !
//   vesseladtsbundle ! hlssink2
//                        │   (once per distinct output format)              └─ ... one branch per
//                        rung └─ (a head tee when rungs need different formats)
//
// Each rung's queue starts its own streaming thread, so encoders run on every core.
// Segments go through the Storage plugin (hlssink2's get-fragment-stream); the
// media playlists and master.m3u8 are written by us from exact frame times, master last.
#include "vessel/transcode.hpp"

#include <gst/gst.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "adts_bundle.hpp"
#include "output_stream.hpp"
#include "vessel/gst.hpp"

namespace vessel {
namespace {

using gst::ElementRef;
using gst::GstError;
using gst::makeElement;

constexpr std::uint64_t kMuxTableIntervalTicks = 90000ull * 3600;  // PAT/PMT once per segment
constexpr guint kHlsSinkNoAutoSplitS = 24 * 3600;  // we split explicitly at exact frame times
// Segments are committed (an S3 PUT) on a few threads of their own while the
// rungs go on encoding; a full queue makes a rung wait (memory stays bounded).
constexpr std::size_t kCommitThreads = 4;
constexpr std::size_t kCommitQueue = 16;

struct FragmentRecord {
  std::uint64_t bytes = 0;
  bool done = false;
  std::optional<Error> error;
};

constexpr gint kRawBufferMs = 200;  // raw audio per buffer into the rungs' tee

struct Shared {
  std::mutex mu;
  std::map<std::string, FragmentRecord> fragments;  // by storage key
  std::vector<std::string> keys_in_order;
  std::optional<Error> first_error;
  std::string decoder;  // factory of the audio decoder decodebin settled on
};

struct Branch {
  const Rung* rung = nullptr;
  std::shared_ptr<Codec> codec;
  ElementRef queue, encoder, bundle, sink;
  std::string dir_key;  // prefix + rung name + "/"
};

struct FormatGroup {
  std::string caps;  // full raw caps string
  ElementRef convert, resample, capsfilter, regroup, tee;
  std::vector<Branch*> branches;
};

std::string rawCaps(const std::string& base, const Rung& rung) {
  return base + ",rate=(int)" + std::to_string(rung.sample_rate_hz) + ",channels=(int)" +
         std::to_string(rung.channels);
}

GstElement* findChildByFactory(GstBin* bin, const char* factory_name) {
  GstIterator* it = gst_bin_iterate_recurse(bin);
  GValue item = G_VALUE_INIT;
  GstElement* found = nullptr;
  while (!found && gst_iterator_next(it, &item) == GST_ITERATOR_OK) {
    auto* element = GST_ELEMENT(g_value_get_object(&item));
    GstElementFactory* f = gst_element_get_factory(element);
    if (f && g_strcmp0(GST_OBJECT_NAME(f), factory_name) == 0) found = element;
    g_value_reset(&item);
  }
  g_value_unset(&item);
  gst_iterator_free(it);
  return found;  // borrowed: the bin owns it
}

// The sample formats raw audio caps allow ("F32LE" for the aac codec plugin).
std::set<std::string> capsFormats(const GstCaps* caps) {
  std::set<std::string> formats;
  for (guint i = 0; i < gst_caps_get_size(caps); ++i) {
    const GValue* v = gst_structure_get_value(gst_caps_get_structure(caps, i), "format");
    if (v && G_VALUE_HOLDS_STRING(v)) {
      formats.insert(g_value_get_string(v));
    } else if (v && GST_VALUE_HOLDS_LIST(v)) {
      for (guint k = 0; k < gst_value_list_get_size(v); ++k) {
        const GValue* f = gst_value_list_get_value(v, k);
        if (G_VALUE_HOLDS_STRING(f)) formats.insert(g_value_get_string(f));
      }
    }
  }
  return formats;
}

bool isAudioDecoder(GstElementFactory* f) {
  return gst_element_factory_list_is_type(
      f, GST_ELEMENT_FACTORY_TYPE_DECODER | GST_ELEMENT_FACTORY_TYPE_MEDIA_AUDIO);
}

// How well an audio decoder's output fits what the encoders take: 2 if its source
// pads offer nothing but formats in `wanted`, 1 if one of its choices is, else 0.
int decoderFit(GstElementFactory* factory, const std::set<std::string>& wanted) {
  bool any = false;
  bool only = true;
  for (const GList* l = gst_element_factory_get_static_pad_templates(factory); l; l = l->next) {
    auto* tmpl = static_cast<GstStaticPadTemplate*>(l->data);
    if (tmpl->direction != GST_PAD_SRC) continue;
    gst::CapsRef caps = gst::CapsRef::adopt(gst_static_caps_get(&tmpl->static_caps));
    if (!caps || gst_caps_is_any(caps.get())) {
      only = false;
      continue;
    }
    std::set<std::string> offered = capsFormats(caps.get());
    if (offered.empty()) only = false;
    for (const auto& f : offered) {
      bool fits = wanted.count(f) > 0;
      any = any || fits;
      only = only && fits;
    }
  }
  return !any ? 0 : only ? 2 : 1;
}

// An Error from a plugin, thrown out of pipeline building with its code intact
// (a refused rung option is a configuration error, not a retryable failure).
struct FailedWith : std::exception {
  explicit FailedWith(Error e) : error(std::move(e)) {}
  const char* what() const noexcept override { return error.message.c_str(); }
  Error error;
};

struct FragmentCallbackData {
  Shared* shared;
  std::shared_ptr<Storage> storage;
  std::string dir_key;
  gst::CommitOnRelease commit;
  gst::CommitPool* commits;
};

GOutputStream* onGetFragmentStream(GstElement* /*sink*/, gchar* location, gpointer user_data) {
  auto* data = static_cast<FragmentCallbackData*>(user_data);
  std::string key = data->dir_key + location;
  auto writer = data->storage->openWriter(key, "video/mp2t");
  Shared* shared = data->shared;
  if (!writer.ok()) {
    std::lock_guard lock(shared->mu);
    if (!shared->first_error) shared->first_error = writer.error();
    return nullptr;  // hlssink2 posts "Got no output stream" → pipeline error
  }
  {
    std::lock_guard lock(shared->mu);
    shared->fragments[key];
    shared->keys_in_order.push_back(key);
  }
  return gst::newStorageOutputStream(
      std::move(writer).value(), key,
      [shared](const std::string& k, std::uint64_t bytes, const Result<void>& result) {
        std::lock_guard lock(shared->mu);
        FragmentRecord& rec = shared->fragments[k];
        rec.bytes = bytes;
        rec.done = true;
        if (!result.ok()) {
          rec.error = result.error();
          if (!shared->first_error && result.error().code != ErrorCode::kCancelled) {
            shared->first_error = result.error();
          }
        }
      },
      data->commit, data->commits);
}

GOutputStream* onGetPlaylistStream(GstElement* /*sink*/, gchar* /*location*/, gpointer /*data*/) {
  // hlssink2's own playlists are live-style and one buffer short; we write ours.
  return g_memory_output_stream_new_resizable();
}

void destroyFragmentData(gpointer data, GClosure* /*closure*/) {
  delete static_cast<FragmentCallbackData*>(data);
}

ErrorCode classifyGstError(GstMessage* msg) {
  if (!msg) return ErrorCode::kInternal;
  GError* error = nullptr;
  gchar* debug = nullptr;
  gst_message_parse_error(msg, &error, &debug);
  ErrorCode code = ErrorCode::kInternal;
  if (error) {
    if (error->domain == GST_STREAM_ERROR) {
      switch (error->code) {
        case GST_STREAM_ERROR_TYPE_NOT_FOUND:
        case GST_STREAM_ERROR_WRONG_TYPE:
        case GST_STREAM_ERROR_CODEC_NOT_FOUND:
          code = ErrorCode::kUnsupportedInput;
          break;
        case GST_STREAM_ERROR_DECODE:
        case GST_STREAM_ERROR_DEMUX:
        case GST_STREAM_ERROR_FORMAT:
          code = ErrorCode::kCorruptInput;
          break;
        default:
          code = ErrorCode::kInternal;
      }
    } else if (error->domain == GST_RESOURCE_ERROR) {
      switch (error->code) {
        case GST_RESOURCE_ERROR_NOT_FOUND:
          code = ErrorCode::kNotFound;
          break;
        case GST_RESOURCE_ERROR_NO_SPACE_LEFT:
          code = ErrorCode::kNoSpace;
          break;
        case GST_RESOURCE_ERROR_OPEN_READ:
        case GST_RESOURCE_ERROR_READ:
          code = ErrorCode::kCorruptInput;
          break;
        default:
          code = ErrorCode::kUnavailable;
      }
    }
  }
  g_clear_error(&error);
  g_free(debug);
  return code;
}

class LadderJob {
 public:
  explicit LadderJob(const TranscodeRequest& req) : req_(req) {}

  Result<TranscodeResult> run() {
    commit_ = std::make_shared<std::atomic<bool>>(true);
    commits_ = std::make_unique<gst::CommitPool>(kCommitThreads, kCommitQueue);
    build();
    return execute();
  }

  // Removes whatever this job committed (on failure).
  void discardOutputs() noexcept {
    commit_->store(false);
    // A commit already running may still publish its key (it is in keys_in_order);
    // the ones not started see the flag and abort. Wait for them, then remove.
    if (commits_) (void)commits_->wait();
    std::vector<std::string> keys;
    {
      std::lock_guard lock(shared_.mu);
      keys = shared_.keys_in_order;
    }
    keys.insert(keys.end(), written_.begin(), written_.end());
    for (const auto& k : keys) (void)req_.storage->remove(k);
  }

 private:
  void build() {
    gst::ensureInitialized();
    pipeline_.emplace("vessel-ladder");
    ElementRef src = makeElement("filesrc", "src");
    g_object_set(src.get(), "location", req_.input_path.c_str(), nullptr);
    decodebin_ = makeElement("decodebin", "decode");
    pipeline_->add(src);
    pipeline_->add(decodebin_);
    gst::link(src.get(), decodebin_.get());

    const Ladder& ladder = req_.ladder;
    const auto segment_ns =
        static_cast<guint64>(std::llround(ladder.segment_duration_s * GST_SECOND));
    branches_.resize(ladder.rungs.size());
    for (std::size_t i = 0; i < ladder.rungs.size(); ++i) {
      const Rung& rung = ladder.rungs[i];
      Branch& b = branches_[i];
      b.rung = &rung;
      auto it = req_.codecs.find(rung.codec);
      if (it == req_.codecs.end() || !it->second) {
        throw std::invalid_argument("rung '" + rung.name + "': codec plugin '" + rung.codec +
                                    "' is not loaded");
      }
      b.codec = it->second;
      b.dir_key = req_.prefix + rung.name + "/";
      std::string caps = rawCaps(b.codec->rawFormatCaps(), rung);
      FormatGroup* group = nullptr;
      for (auto& g : groups_) {
        if (g.caps == caps) group = &g;
      }
      if (!group) {
        groups_.emplace_back();
        group = &groups_.back();
        group->caps = caps;
      }
      group->branches.push_back(&b);

      const std::string n = std::to_string(i);
      b.queue = makeElement("queue", ("queue" + n).c_str());
      // Deep enough that the tee rarely waits on the slowest encoder.
      g_object_set(b.queue.get(), "max-size-buffers", 0u, "max-size-bytes", 0u, "max-size-time",
                   static_cast<guint64>(4 * GST_SECOND), nullptr);
      Result<GstElement*> enc = b.codec->makeEncoder(rung);
      if (!enc.ok()) throw FailedWith{enc.error()};  // keeps the plugin's code (kConfig)
      b.encoder = gst::sinkRef(enc.value());
      b.bundle = makeElement("vesseladtsbundle", ("bundle" + n).c_str());
      b.sink = makeElement("hlssink2", ("hls" + n).c_str());
      g_object_set(b.sink.get(), "location", "segment_%03d.ts", "playlist-location",
                   "playlist.m3u8", "max-files", 0u, "playlist-length", 0u, "target-duration",
                   kHlsSinkNoAutoSplitS, "send-keyframe-requests", FALSE, nullptr);
      GstElement* splitmux = findChildByFactory(GST_BIN(b.sink.get()), "splitmuxsink");
      if (!splitmux) throw GstError("hlssink2", "has no splitmuxsink child", "");
      GstElement* mux = nullptr;
      g_object_get(splitmux, "muxer", &mux, nullptr);
      if (mux) {
        // Defaults write PAT+PMT every 100 ms: ~30 kbit/s of tables on a 64 kbit/s
        // rung. A new fragment starts with them anyway (force-key-unit).
        g_object_set(mux, "pat-interval", static_cast<guint>(kMuxTableIntervalTicks),
                     "pmt-interval", static_cast<guint>(kMuxTableIntervalTicks), "si-interval",
                     static_cast<guint>(kMuxTableIntervalTicks), nullptr);
        gst_object_unref(mux);
      }
      // Bundles of at most 200 ms keep TS overhead low (~4 % at 64 kbit/s) while a
      // segment's PES timestamps still describe its length closely (ffprobe reads
      // a segment's duration from them).
      g_object_set(b.bundle.get(), "segment-duration", segment_ns, "split-target", splitmux,
                   "max-duration", static_cast<guint64>(200 * GST_MSECOND), "max-bytes", 8192u,
                   nullptr);
      auto* data =
          new FragmentCallbackData{&shared_, req_.storage, b.dir_key, commit_, commits_.get()};
      g_signal_connect_data(b.sink.get(), "get-fragment-stream", G_CALLBACK(onGetFragmentStream),
                            data, destroyFragmentData, GConnectFlags(0));
      g_signal_connect(b.sink.get(), "get-playlist-stream", G_CALLBACK(onGetPlaylistStream),
                       nullptr);
      for (auto* e : {&b.queue, &b.encoder, &b.bundle, &b.sink}) pipeline_->add(*e);
      gst::link(b.queue.get(), b.encoder.get());
      gst::link(b.encoder.get(), b.bundle.get());
      GstPad* sinkpad = gst_element_request_pad_simple(b.sink.get(), "audio");
      GstPad* srcpad = gst_element_get_static_pad(b.bundle.get(), "src");
      GstPadLinkReturn lr = gst_pad_link(srcpad, sinkpad);
      gst_object_unref(srcpad);
      gst_object_unref(sinkpad);
      if (lr != GST_PAD_LINK_OK)
        throw GstError(GST_ELEMENT_NAME(b.bundle.get()), "cannot link to hlssink2", "");
    }

    for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
      FormatGroup& g = groups_[gi];
      const std::string n = std::to_string(gi);
      g.convert = makeElement("audioconvert", ("convert" + n).c_str());
      g.resample = makeElement("audioresample", ("resample" + n).c_str());
      g.capsfilter = makeElement("capsfilter", ("format" + n).c_str());
      gst::CapsRef caps = gst::CapsRef::adopt(gst_caps_from_string(g.caps.c_str()));
      if (!caps)
        throw GstError("capsfilter", "invalid caps '" + g.caps + "' from codec plugin", "");
      g_object_set(g.capsfilter.get(), "caps", caps.get(), nullptr);
      raw_formats_.merge(capsFormats(caps.get()));
      // Decoders hand out one codec frame per buffer (MP3: 26 ms). Regrouped into
      // 200 ms buffers, every element after the tee and every queue thread wakes up
      // 8x less often: ~40 % fewer context switches, ~10 % less CPU for the ladder.
      g.regroup = makeElement("audiobuffersplit", ("regroup" + n).c_str());
      g_object_set(g.regroup.get(), "output-buffer-duration", kRawBufferMs, 1000, nullptr);
      g.tee = makeElement("tee", ("tee" + n).c_str());
      for (auto* e : {&g.convert, &g.resample, &g.capsfilter, &g.regroup, &g.tee}) {
        pipeline_->add(*e);
      }
      gst::link(g.convert.get(), g.resample.get());
      gst::link(g.resample.get(), g.capsfilter.get());
      gst::link(g.capsfilter.get(), g.regroup.get());
      gst::link(g.regroup.get(), g.tee.get());
      for (Branch* b : g.branches) gst::link(g.tee.get(), b->queue.get());
    }
    if (groups_.size() == 1) {
      head_ = groups_[0].convert;
    } else {
      head_ = makeElement("tee", "head");
      ElementRef q;
      pipeline_->add(head_);
      for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
        ElementRef queue = makeElement("queue", ("headqueue" + std::to_string(gi)).c_str());
        pipeline_->add(queue);
        gst::link(head_.get(), queue.get());
        gst::link(queue.get(), groups_[gi].convert.get());
      }
    }
    g_signal_connect(decodebin_.get(), "autoplug-sort", G_CALLBACK(onAutoplugSort), this);
    g_signal_connect(decodebin_.get(), "element-added", G_CALLBACK(onElementAdded), this);
    g_signal_connect(decodebin_.get(), "pad-added", G_CALLBACK(onPadAdded), this);
  }

  // Remembers the audio decoder (the last one tried is the one that stayed).
  static void onElementAdded(GstBin* /*decodebin*/, GstElement* element, gpointer user_data) {
    GstElementFactory* f = gst_element_get_factory(element);
    if (!f || !isAudioDecoder(f)) return;
    auto* self = static_cast<LadderJob*>(user_data);
    std::lock_guard lock(self->shared_.mu);
    self->shared_.decoder = GST_OBJECT_NAME(f);
  }

  // decodebin tries the factories that fit in rank order, then by name. For MP3 three
  // decoders tie (all "marginal"), and the name picks avdec_mp3: libav's fixed-point
  // decoder, 16-bit output that audioconvert must turn back into float. We try first
  // the decoders that output the encoders' own format: for MP3 that is avdec_mp3float,
  // which gives the very samples ffmpeg decodes. Other factories keep their places.
  static GValueArray* onAutoplugSort(GstElement* /*decodebin*/, GstPad* /*pad*/, GstCaps* /*caps*/,
                                     GValueArray* factories, gpointer user_data) {
    auto* self = static_cast<LadderJob*>(user_data);
    G_GNUC_BEGIN_IGNORE_DEPRECATIONS
    std::vector<guint> slots;
    std::vector<std::pair<int, GstElementFactory*>> decoders;
    for (guint i = 0; i < factories->n_values; ++i) {
      auto* f = GST_ELEMENT_FACTORY(g_value_get_object(g_value_array_get_nth(factories, i)));
      if (isAudioDecoder(f)) {
        slots.push_back(i);
        decoders.emplace_back(-decoderFit(f, self->raw_formats_), f);
      }
    }
    std::stable_sort(decoders.begin(), decoders.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    bool moved = false;
    for (std::size_t k = 0; k < slots.size(); ++k) {
      moved = moved || g_value_get_object(g_value_array_get_nth(factories, slots[k])) !=
                           static_cast<gpointer>(decoders[k].second);
    }
    if (!moved) return nullptr;  // decodebin keeps its own order
    GValueArray* sorted = g_value_array_copy(factories);
    for (std::size_t k = 0; k < slots.size(); ++k) {
      g_value_set_object(g_value_array_get_nth(sorted, slots[k]), decoders[k].second);
    }
    G_GNUC_END_IGNORE_DEPRECATIONS
    return sorted;
  }

  static void onPadAdded(GstElement* /*decodebin*/, GstPad* pad, gpointer user_data) {
    auto* self = static_cast<LadderJob*>(user_data);
    gst::CapsRef caps = gst::CapsRef::adopt(gst_pad_get_current_caps(pad));
    if (!caps) caps = gst::CapsRef::adopt(gst_pad_query_caps(pad, nullptr));
    const GstStructure* s = caps ? gst_caps_get_structure(caps.get(), 0) : nullptr;
    if (!s || !g_str_has_prefix(gst_structure_get_name(s), "audio/x-raw")) return;
    bool expected = false;
    if (!self->linked_.compare_exchange_strong(expected, true)) return;  // first audio stream only
    GstPad* sinkpad = gst_element_get_static_pad(self->head_.get(), "sink");
    if (!sinkpad) sinkpad = gst_element_request_pad_simple(self->head_.get(), "sink_%u");
    if (sinkpad) {
      gst_pad_link(pad, sinkpad);
      gst_object_unref(sinkpad);
    }
  }

  // Slowest rung's media position in ns (what is really done).
  GstClockTime slowestEndNs() const {
    GstClockTime slowest = GST_CLOCK_TIME_NONE;
    for (const auto& b : branches_) {
      gst::AdtsBundleStats st = gst::adtsBundleStats(b.bundle.get());
      GstClockTime end = GST_CLOCK_TIME_IS_VALID(st.end_ns) ? st.end_ns : 0;
      if (!GST_CLOCK_TIME_IS_VALID(slowest) || end < slowest) slowest = end;
    }
    return GST_CLOCK_TIME_IS_VALID(slowest) ? slowest : 0;
  }

  Result<TranscodeResult> execute() {
    using Clock = std::chrono::steady_clock;
    gst::BusRef bus = pipeline_->bus();
    pipeline_->setState(GST_STATE_PLAYING);
    auto last_progress_at = Clock::now();
    GstClockTime last_end = 0;
    auto last_report = Clock::now() - std::chrono::seconds(1);
    bool eos = false;
    while (!eos) {
      gst::MessageRef msg = gst::MessageRef::adopt(gst_bus_timed_pop_filtered(
          bus.get(), 100 * GST_MSECOND,
          static_cast<GstMessageType>(GST_MESSAGE_ERROR | GST_MESSAGE_EOS)));
      if (msg && GST_MESSAGE_TYPE(msg.get()) == GST_MESSAGE_ERROR) {
        GstError e = gst::errorFromMessage(msg.get());
        std::optional<Error> storage_error;
        {
          std::lock_guard lock(shared_.mu);
          storage_error = shared_.first_error;
        }
        if (storage_error) return *storage_error;  // the real cause behind a sink error
        if (!linked_) {
          return makeError(ErrorCode::kUnsupportedInput,
                           "input has no decodable audio stream: " + std::string(e.what()));
        }
        return makeError(classifyGstError(msg.get()), e.what());
      }
      if (msg && GST_MESSAGE_TYPE(msg.get()) == GST_MESSAGE_EOS) eos = true;
      if (req_.cancel && req_.cancel->load()) {
        return makeError(ErrorCode::kCancelled, "transcode cancelled");
      }
      GstClockTime end = slowestEndNs();
      auto now = Clock::now();
      if (end > last_end) {
        last_end = end;
        last_progress_at = now;
      } else if (!eos && now - last_progress_at > req_.stall_timeout) {
        return makeError(ErrorCode::kTimeout,
                         "transcode stalled: no progress for " +
                             std::to_string(req_.stall_timeout.count() / 1000) + " s at " +
                             std::to_string(static_cast<double>(end) / GST_SECOND) + " s");
      }
      if (req_.on_progress && req_.source_duration_s > 0 &&
          now - last_report >= std::chrono::milliseconds(250)) {
        last_report = now;
        double p = static_cast<double>(end) / GST_SECOND / req_.source_duration_s;
        req_.on_progress(std::clamp(p, 0.0, 0.999));
      }
    }
    // Tear down: this releases the last fragment streams, which commits them.
    std::vector<gst::AdtsBundleStats> stats;
    for (const auto& b : branches_) stats.push_back(gst::adtsBundleStats(b.bundle.get()));
    pipeline_->setState(GST_STATE_NULL);
    branches_copy_ = std::move(branches_);
    pipeline_.reset();
    branches_copy_.clear();
    groups_.clear();
    head_ = nullptr;
    decodebin_ = nullptr;
    // The last fragments were handed to the commit pool at teardown: wait for every
    // commit before a playlist names them. A failed commit also reached
    // shared_.first_error through on_closed, which finish() reports as before.
    if (Result<void> committed = commits_->wait(); !committed.ok()) {
      std::lock_guard lock(shared_.mu);
      if (!shared_.first_error) shared_.first_error = committed.error();
    }
    return finish(stats);
  }

  Result<TranscodeResult> finish(const std::vector<gst::AdtsBundleStats>& stats) {
    std::lock_guard lock(shared_.mu);
    if (shared_.first_error) return *shared_.first_error;
    if (!linked_) return makeError(ErrorCode::kUnsupportedInput, "input has no audio stream");
    TranscodeResult result;
    result.decoder = shared_.decoder;
    std::vector<VariantInfo> variants;
    for (std::size_t i = 0; i < req_.ladder.rungs.size(); ++i) {
      const Rung& rung = req_.ladder.rungs[i];
      const gst::AdtsBundleStats& st = stats[i];
      if (st.frames == 0 || st.segment_starts_ns.empty()) {
        return makeError(ErrorCode::kCorruptInput, "no audio could be decoded from the input");
      }
      RungOutput out;
      out.name = rung.name;
      const std::string dir_key = req_.prefix + rung.name + "/";
      for (std::size_t k = 0; k < st.segment_starts_ns.size(); ++k) {
        char name[32];
        std::snprintf(name, sizeof name, "segment_%03zu.ts", k);
        auto it = shared_.fragments.find(dir_key + name);
        if (it == shared_.fragments.end() || !it->second.done) {
          return makeError(ErrorCode::kInternal,
                           "segment '" + dir_key + name + "' was not written completely");
        }
        GstClockTime begin = st.segment_starts_ns[k];
        GstClockTime end =
            k + 1 < st.segment_starts_ns.size() ? st.segment_starts_ns[k + 1] : st.end_ns;
        out.segments.push_back(
            SegmentInfo{name, static_cast<double>(end - begin) / GST_SECOND, it->second.bytes});
        out.bytes += it->second.bytes;
      }
      if (shared_.fragments.size() > 0) {
        // A fragment hlssink2 opened beyond the ones we counted would be a bug in the
        // split bookkeeping; refuse to publish a playlist that does not list it.
        std::size_t on_disk = 0;
        for (const auto& [k, rec] : shared_.fragments) {
          if (k.rfind(dir_key, 0) == 0) ++on_disk;
        }
        if (on_disk != out.segments.size()) {
          return makeError(ErrorCode::kInternal,
                           "rung " + rung.name + ": " + std::to_string(on_disk) +
                               " segments written but " + std::to_string(out.segments.size()) +
                               " expected");
        }
      }
      out.peak_bps = peakBitrateBps(out.segments);
      out.average_bps = averageBitrateBps(out.segments);
      out.playlist_key = dir_key + "playlist.m3u8";
      std::string text = writeMediaPlaylist(out.segments);
      if (auto r = putText(out.playlist_key, text); !r.ok()) return r.error();
      if (i == 0) {
        for (const auto& s : out.segments) result.duration_s += s.duration_s;
      }
      variants.push_back(VariantInfo{rung.name + "/playlist.m3u8", out.peak_bps, out.average_bps,
                                     branchCodecs(i)});
      result.rungs.push_back(std::move(out));
    }
    result.master_key = req_.prefix + "master.m3u8";
    if (auto r = putText(result.master_key, writeMasterPlaylist(variants)); !r.ok())
      return r.error();
    result.keys = shared_.keys_in_order;
    result.keys.insert(result.keys.end(), written_.begin(), written_.end());
    return result;
  }

  std::string branchCodecs(std::size_t i) const {
    auto it = req_.codecs.find(req_.ladder.rungs[i].codec);
    return it->second->hlsCodecs(req_.ladder.rungs[i]);
  }

  Result<void> putText(const std::string& key, const std::string& text) {
    auto r = req_.storage->put(
        key, std::span(reinterpret_cast<const std::byte*>(text.data()), text.size()),
        "application/vnd.apple.mpegurl");
    if (r.ok()) written_.push_back(key);
    return r;
  }

  const TranscodeRequest& req_;
  Shared shared_;
  gst::CommitOnRelease commit_;
  // Declared before pipeline_: destroying the pipeline hands its last streams to
  // the pool, whose destructor waits for them while shared_ still exists.
  std::unique_ptr<gst::CommitPool> commits_;
  std::optional<gst::Pipeline> pipeline_;
  ElementRef decodebin_, head_;
  std::vector<Branch> branches_, branches_copy_;
  std::vector<FormatGroup> groups_;
  std::set<std::string> raw_formats_;  // what the encoders take; decoders that give it go first
  std::atomic<bool> linked_{false};
  std::vector<std::string> written_;
};

}  // namespace

Result<TranscodeResult> transcodeLadder(const TranscodeRequest& request) noexcept {
  if (!request.storage) return makeError(ErrorCode::kInvalidArgument, "no storage given");
  if (request.ladder.rungs.empty())
    return makeError(ErrorCode::kInvalidArgument, "ladder has no rungs");
  try {
    LadderJob job(request);
    Result<TranscodeResult> r = [&]() -> Result<TranscodeResult> {
      try {
        return job.run();
      } catch (const FailedWith& e) {
        return e.error;
      } catch (const GstError& e) {
        return makeError(ErrorCode::kInternal, e.what());
      } catch (const std::invalid_argument& e) {
        return makeError(ErrorCode::kInvalidArgument, e.what());
      }
    }();
    bool keep = request.keep_outputs_on_failure && request.keep_outputs_on_failure->load();
    if (!r.ok() && !keep) job.discardOutputs();
    return r;
  } catch (const FailedWith& e) {
    return e.error;
  } catch (const std::exception& e) {
    return makeError(ErrorCode::kInternal, std::string("transcode: ") + e.what());
  }
}

}  // namespace vessel
