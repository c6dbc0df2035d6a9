// transcodeLadder against an in-memory store: outputs, ordering, progress,
// cancellation, storage faults and the stall watchdog. Output correctness in
// depth (ffprobe) lives in tests/integration.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "vessel/gst.hpp"
#include "vessel/plugin_host.hpp"
#include "vessel/transcode.hpp"

namespace {

// A thread-safe in-memory store that can fail on purpose.
class MemoryStorage final : public vessel::Storage {
 public:
  struct State {
    std::mutex mu;
    std::map<std::string, std::vector<std::byte>> objects;
    std::vector<std::string> commit_order;
    int fail_writer_after = -1;  // fail the Nth opened writer's first write (-1 = never)
    int writers_opened = 0;
  };

  class Writer final : public vessel::ObjectWriter {
   public:
    Writer(std::shared_ptr<State> st, std::string key, bool fail)
        : st_(std::move(st)), key_(std::move(key)), fail_(fail) {}
    vessel::Result<void> write(std::span<const std::byte> data) noexcept override {
      if (fail_)
        return vessel::makeError(vessel::ErrorCode::kNoSpace,
                                 "memory: put '" + key_ + "': disk full (test)");
      buf_.insert(buf_.end(), data.begin(), data.end());
      return {};
    }
    vessel::Result<void> commit() noexcept override {
      std::lock_guard lock(st_->mu);
      st_->objects[key_] = buf_;
      st_->commit_order.push_back(key_);
      return {};
    }
    void abort() noexcept override { buf_.clear(); }
    std::uint64_t bytesWritten() const noexcept override { return buf_.size(); }

   private:
    std::shared_ptr<State> st_;
    std::string key_;
    bool fail_;
    std::vector<std::byte> buf_;
  };

  std::shared_ptr<State> state = std::make_shared<State>();

  vessel::Result<void> put(std::string_view key, std::span<const std::byte> data,
                           std::string_view) noexcept override {
    std::lock_guard lock(state->mu);
    state->objects[std::string(key)] = {data.begin(), data.end()};
    state->commit_order.emplace_back(key);
    return {};
  }
  vessel::Result<std::unique_ptr<vessel::ObjectWriter>> openWriter(
      std::string_view key, std::string_view) noexcept override {
    std::lock_guard lock(state->mu);
    bool fail = state->fail_writer_after >= 0 && state->writers_opened >= state->fail_writer_after;
    state->writers_opened++;
    return std::unique_ptr<vessel::ObjectWriter>(new Writer(state, std::string(key), fail));
  }
  vessel::Result<std::unique_ptr<vessel::ObjectReader>> openReader(
      std::string_view, std::uint64_t, std::optional<std::uint64_t>) noexcept override {
    return vessel::makeError(vessel::ErrorCode::kInternal, "unused");
  }
  vessel::Result<vessel::ObjectInfo> stat(std::string_view key) noexcept override {
    std::lock_guard lock(state->mu);
    auto it = state->objects.find(std::string(key));
    if (it == state->objects.end())
      return vessel::makeError(vessel::ErrorCode::kNotFound, "absent");
    return vessel::ObjectInfo{it->first, it->second.size(), 0};
  }
  vessel::Result<bool> exists(std::string_view key) noexcept override {
    std::lock_guard lock(state->mu);
    return state->objects.count(std::string(key)) > 0;
  }
  vessel::Result<void> remove(std::string_view key) noexcept override {
    std::lock_guard lock(state->mu);
    state->objects.erase(std::string(key));
    return {};
  }
  vessel::Result<vessel::ListPage> list(std::string_view, std::string_view,
                                        std::size_t) noexcept override {
    return vessel::ListPage{};
  }
  vessel::Result<std::uint64_t> removePrefix(std::string_view) noexcept override {
    return std::uint64_t{0};
  }
  std::optional<std::string> localPath(std::string_view) const noexcept override {
    return std::nullopt;
  }
};

// Wraps the real AAC codec and blocks its output after `block_after_ns` of media.
class StallingCodec final : public vessel::Codec {
 public:
  StallingCodec(std::shared_ptr<vessel::Codec> inner, GstClockTime block_after_ns)
      : inner_(std::move(inner)), block_after_ns_(block_after_ns) {}
  std::string rawFormatCaps() const noexcept override { return inner_->rawFormatCaps(); }
  std::string hlsCodecs(const vessel::Rung& r) const noexcept override {
    return inner_->hlsCodecs(r);
  }
  vessel::Result<GstElement*> makeEncoder(const vessel::Rung& rung) noexcept override {
    auto enc = inner_->makeEncoder(rung);
    if (!enc.ok()) return enc;
    GstPad* src = gst_element_get_static_pad(enc.value(), "src");
    gst_pad_add_probe(
        src, static_cast<GstPadProbeType>(GST_PAD_PROBE_TYPE_BLOCK | GST_PAD_PROBE_TYPE_BUFFER),
        [](GstPad*, GstPadProbeInfo* info, gpointer data) -> GstPadProbeReturn {
          auto limit = *static_cast<GstClockTime*>(data);
          GstBuffer* b = GST_PAD_PROBE_INFO_BUFFER(info);
          // Past the limit the streaming thread blocks here: no progress, no EOS.
          return GST_BUFFER_PTS(b) >= limit ? GST_PAD_PROBE_OK : GST_PAD_PROBE_PASS;
        },
        &block_after_ns_, nullptr);
    gst_object_unref(src);
    return enc;
  }

 private:
  std::shared_ptr<vessel::Codec> inner_;
  GstClockTime block_after_ns_;
};

class TranscodeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "vessel-tc-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
    input_ = (dir_ / "in.wav").string();
    std::string cmd =
        "ffmpeg -nostdin -v error -y -f lavfi -i 'sine=frequency=440:duration=14' -ac 2 -ar 44100 "
        "'" +
        input_ + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    host_ = new vessel::PluginHost();
    host_->scan({std::getenv("VESSEL_TEST_PLUGIN_DIR")});
    auto codec = host_->createCodec(
        "aac", vessel::Config::fromValues({{"codec.aac.encoder", std::string("avenc_aac")},
                                           {"codec.aac.mid_side", std::string("off")}}));
    ASSERT_TRUE(codec.ok()) << codec.error().message;
    aac_ = new std::shared_ptr<vessel::Codec>(codec.value());
  }
  static void TearDownTestSuite() {
    delete aac_;
    delete host_;
    std::filesystem::remove_all(dir_);
  }

  vessel::TranscodeRequest request(std::shared_ptr<vessel::Storage> storage) {
    vessel::TranscodeRequest req;
    req.input_path = input_;
    req.ladder.name = "test";
    req.ladder.container = "mpegts";
    req.ladder.segment_duration_s = 4;
    req.ladder.rungs = {{"lo", "aac", 64000, 44100, 2, {}}, {"hi", "aac", 128000, 48000, 1, {}}};
    req.codecs["aac"] = *aac_;
    req.storage = std::move(storage);
    req.prefix = "user1/upload1/";
    req.source_duration_s = 14;
    return req;
  }

  static inline std::filesystem::path dir_;
  static inline std::string input_;
  static inline vessel::PluginHost* host_ = nullptr;
  static inline std::shared_ptr<vessel::Codec>* aac_ = nullptr;
};

TEST_F(TranscodeTest, WritesEverySegmentPlaylistsAndMasterLast) {
  auto store = std::make_shared<MemoryStorage>();
  auto req = request(store);
  std::vector<double> progress;
  req.on_progress = [&](double p) { progress.push_back(p); };
  auto r = vessel::transcodeLadder(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const auto& res = r.value();
  EXPECT_NEAR(res.duration_s, 14.0, 0.1);  // + one AAC frame of encoder padding at most
  ASSERT_EQ(res.rungs.size(), 2u);
  for (const auto& rung : res.rungs) {
    ASSERT_EQ(rung.segments.size(), 4u) << rung.name;  // 4 + 4 + 4 + 2 s
    for (std::size_t i = 0; i + 1 < rung.segments.size(); ++i) {
      EXPECT_NEAR(rung.segments[i].duration_s, 4.0, 0.05);
    }
    for (const auto& s : rung.segments) {
      EXPECT_TRUE(store->state->objects.count("user1/upload1/" + rung.name + "/" + s.uri)) << s.uri;
      EXPECT_EQ(store->state->objects["user1/upload1/" + rung.name + "/" + s.uri].size(), s.bytes);
    }
    EXPECT_GT(rung.peak_bps, 0u);
    EXPECT_TRUE(store->state->objects.count(rung.playlist_key));
  }
  // master.m3u8 is the very last object committed.
  ASSERT_FALSE(store->state->commit_order.empty());
  EXPECT_EQ(store->state->commit_order.back(), "user1/upload1/master.m3u8");
  EXPECT_EQ(res.keys.back(), "user1/upload1/master.m3u8");
  // Progress reported, non-decreasing, below 1 until done.
  ASSERT_FALSE(progress.empty());
  EXPECT_TRUE(std::is_sorted(progress.begin(), progress.end()));
  EXPECT_LT(progress.back(), 1.0);
}

TEST_F(TranscodeTest, StorageFailureFailsWithItsErrorAndLeavesNothing) {
  auto store = std::make_shared<MemoryStorage>();
  store->state->fail_writer_after = 3;  // a few segments succeed, then the disk is "full"
  auto r = vessel::transcodeLadder(request(store));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, vessel::ErrorCode::kNoSpace) << r.error().message;
  EXPECT_NE(r.error().message.find("disk full"), std::string::npos) << r.error().message;
  std::string left;
  for (const auto& [k, v] : store->state->objects) left += k + " ";
  EXPECT_TRUE(store->state->objects.empty()) << "left: " << left;
}

TEST_F(TranscodeTest, CancelStopsAndLeavesNothing) {
  auto store = std::make_shared<MemoryStorage>();
  auto req = request(store);
  std::atomic<bool> cancel{true};
  req.cancel = &cancel;
  auto r = vessel::transcodeLadder(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, vessel::ErrorCode::kCancelled);
  std::string left;
  for (const auto& [k, v] : store->state->objects) left += k + " ";
  EXPECT_TRUE(store->state->objects.empty()) << "left: " << left;
}

TEST_F(TranscodeTest, WatchdogFailsAStalledPipelineRetryably) {
  auto store = std::make_shared<MemoryStorage>();
  auto req = request(store);
  req.codecs["aac"] = std::make_shared<StallingCodec>(*aac_, 5 * GST_SECOND);
  req.stall_timeout = std::chrono::milliseconds(1500);
  auto start = std::chrono::steady_clock::now();
  auto r = vessel::transcodeLadder(req);
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, vessel::ErrorCode::kTimeout) << r.error().message;
  EXPECT_TRUE(vessel::isTransient(r.error().code));
  EXPECT_LT(took, std::chrono::seconds(20));
  EXPECT_TRUE(store->state->objects.empty());
}

TEST_F(TranscodeTest, MissingCodecIsAClearError) {
  auto store = std::make_shared<MemoryStorage>();
  auto req = request(store);
  req.codecs.clear();
  auto r = vessel::transcodeLadder(req);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("codec plugin 'aac' is not loaded"), std::string::npos);
}

TEST_F(TranscodeTest, NonAudioInputFails) {
  auto store = std::make_shared<MemoryStorage>();
  auto req = request(store);
  std::string text = (dir_ / "text.wav").string();
  std::string cmd = "echo 'not audio at all' > '" + text + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  req.input_path = text;
  auto r = vessel::transcodeLadder(req);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().code == vessel::ErrorCode::kUnsupportedInput ||
              r.error().code == vessel::ErrorCode::kCorruptInput)
      << vessel::errorCodeName(r.error().code) << ": " << r.error().message;
  EXPECT_TRUE(store->state->objects.empty());
}

// MP3 is decoded by the decoder whose output is what the encoders take (F32):
// avdec_mp3float, as in ffmpeg, not the fixed-point avdec_mp3 that decodebin's
// rank-then-name order picks (16-bit samples converted back to float: ~15 % more
// CPU for the whole ladder, see docs/transcode.md).
TEST_F(TranscodeTest, Mp3IsDecodedToFloatLikeFfmpeg) {
  vessel::gst::ensureInitialized();
  GstElementFactory* f = gst_element_factory_find("avdec_mp3float");
  if (!f) GTEST_SKIP() << "avdec_mp3float is not installed (gstreamer1.0-libav)";
  gst_object_unref(f);
  std::string mp3 = (dir_ / "in.mp3").string();
  std::string cmd =
      "ffmpeg -nostdin -v error -y -f lavfi -i 'sine=frequency=440:duration=5' -ac 2 -ar 44100 "
      "-c:a libmp3lame -b:a 128k '" +
      mp3 + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  auto store = std::make_shared<MemoryStorage>();
  auto req = request(store);
  req.input_path = mp3;
  req.source_duration_s = 5;
  auto r = vessel::transcodeLadder(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value().decoder, "avdec_mp3float");
  EXPECT_NEAR(r.value().duration_s, 5.0, 0.1);
  // A WAV needs no decoder at all (wavparse gives raw samples).
  auto wav = vessel::transcodeLadder(request(std::make_shared<MemoryStorage>()));
  ASSERT_TRUE(wav.ok()) << wav.error().message;
  EXPECT_EQ(wav.value().decoder, "");
}

// A rung's `options` reach its codec plugin: aac's `coder` is set on the encoder,
// and an option the plugin does not know fails the job before anything is
// written, naming the rung and the option.
TEST_F(TranscodeTest, RungOptionsReachTheCodecAndUnknownOnesAreRefused) {
  vessel::Rung fast{"fast", "aac", 128000, 44100, 2, {{"coder", "fast"}}};
  auto enc = (*aac_)->makeEncoder(fast);
  ASSERT_TRUE(enc.ok()) << enc.error().message;
  auto* bin = static_cast<GstElement*>(gst_object_ref_sink(enc.value()));
  GstElement* avenc = nullptr;
  GstIterator* it = gst_bin_iterate_elements(GST_BIN(bin));
  GValue item = G_VALUE_INIT;
  while (gst_iterator_next(it, &item) == GST_ITERATOR_OK) {
    auto* e = GST_ELEMENT(g_value_get_object(&item));
    if (g_object_class_find_property(G_OBJECT_GET_CLASS(e), "aac-coder")) avenc = e;
    g_value_reset(&item);
  }
  g_value_unset(&item);
  gst_iterator_free(it);
  ASSERT_NE(avenc, nullptr);
  gint coder = -1;
  g_object_get(avenc, "aac-coder", &coder, nullptr);
  EXPECT_EQ(coder, 2);  // libav's AAC_CODER_FAST
  gst_object_unref(bin);

  for (const auto& [key, value, says] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"coder", "fastest", "coder = 'fastest' is not one of"},
           {"quality", "9", "unknown option 'quality'"}}) {
    auto store = std::make_shared<MemoryStorage>();
    auto req = request(store);
    req.ladder.rungs[1].options = {{key, value}};
    auto r = vessel::transcodeLadder(req);
    ASSERT_FALSE(r.ok()) << key;
    EXPECT_EQ(r.error().code, vessel::ErrorCode::kConfig) << r.error().message;
    EXPECT_NE(r.error().message.find("rung 'hi'"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find(says), std::string::npos) << r.error().message;
    EXPECT_TRUE(store->state->objects.empty());
  }
  auto store = std::make_shared<MemoryStorage>();
  auto req = request(store);
  req.ladder.rungs[1].options = {{"coder", "fast"}};
  auto r = vessel::transcodeLadder(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_NEAR(r.value().duration_s, 14.0, 0.1);
}

}  // namespace
