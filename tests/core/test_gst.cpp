// Unit tests for the GStreamer wrappers: GRef/MiniRef reference counting, GstError
// conversion (missing element, failed link, bus errors, failed state change), and the
// vesseladtsbundle element's bundling and segment-boundary behaviour.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "adts_bundle.hpp"
#include "vessel/gst.hpp"

namespace vessel::gst {
namespace {

guint refCount(gpointer object) { return G_OBJECT(object)->ref_count; }
gint miniRefCount(gpointer mini) { return GST_MINI_OBJECT_REFCOUNT_VALUE(mini); }

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class GstTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ensureInitialized(); }
};

TEST(GstInit, EnsureInitializedIsIdempotentAndRegistersTheBundler) {
  ASSERT_NO_THROW(ensureInitialized());
  ASSERT_NO_THROW(ensureInitialized());
  EXPECT_TRUE(gst_is_initialized());
  GstElement* bundle = gst_element_factory_make("vesseladtsbundle", nullptr);
  ASSERT_NE(bundle, nullptr);
  gst_object_unref(gst_object_ref_sink(bundle));
}

// ---- GRef -------------------------------------------------------------------

TEST_F(GstTest, SinkRefTakesTheFloatingReference) {
  GstElement* raw = gst_element_factory_make("fakesink", nullptr);
  ASSERT_NE(raw, nullptr);
  ASSERT_TRUE(g_object_is_floating(raw));
  ElementRef ref = sinkRef(raw);
  EXPECT_EQ(ref.get(), raw);
  EXPECT_FALSE(g_object_is_floating(raw));
  EXPECT_EQ(refCount(raw), 1u);
}

TEST_F(GstTest, SinkRefOfAFullReferenceAdoptsIt) {
  GstElement* raw = gst_element_factory_make("fakesink", nullptr);
  gst_object_ref_sink(raw);  // now a full reference we own
  ASSERT_FALSE(g_object_is_floating(raw));
  ASSERT_EQ(refCount(raw), 1u);
  ElementRef ref = sinkRef(raw);
  EXPECT_EQ(refCount(raw), 1u);
}

TEST_F(GstTest, AdoptRefOfGetByName) {
  Pipeline pipeline("p");
  ElementRef sink = makeElement("fakesink", "snk");
  pipeline.add(sink);
  ASSERT_EQ(refCount(sink.get()), 2u);  // ours + the bin's
  {
    GstElement* found = gst_bin_get_by_name(pipeline.bin(), "snk");  // transfer full
    ASSERT_EQ(found, sink.get());
    EXPECT_EQ(refCount(sink.get()), 3u);
    ElementRef adopted = adoptRef(found);
    EXPECT_EQ(refCount(sink.get()), 3u);
  }
  EXPECT_EQ(refCount(sink.get()), 2u);
}

TEST_F(GstTest, RetainRefAddsAReference) {
  ElementRef owner = makeElement("fakesink");
  ASSERT_EQ(refCount(owner.get()), 1u);
  {
    ElementRef extra = retainRef(owner.get());
    EXPECT_EQ(extra.get(), owner.get());
    EXPECT_EQ(refCount(owner.get()), 2u);
  }
  EXPECT_EQ(refCount(owner.get()), 1u);
  EXPECT_FALSE(retainRef<GstElement>(nullptr));
}

TEST_F(GstTest, CopyAddsAReferenceAndMoveDoesNot) {
  ElementRef a = makeElement("fakesink");
  GstElement* raw = a.get();
  {
    ElementRef b = a;  // copy construction
    EXPECT_EQ(b.get(), raw);
    EXPECT_EQ(refCount(raw), 2u);
    ElementRef c = std::move(b);  // move construction
    EXPECT_FALSE(b);              // NOLINT(bugprone-use-after-move): moved-from is null
    EXPECT_EQ(c.get(), raw);
    EXPECT_EQ(refCount(raw), 2u);
    ElementRef d;
    d = c;  // copy assignment
    EXPECT_EQ(refCount(raw), 3u);
    ElementRef e;
    e = std::move(d);  // move assignment
    EXPECT_FALSE(d);   // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(refCount(raw), 3u);
  }
  EXPECT_EQ(refCount(raw), 1u);
}

TEST_F(GstTest, AssignmentReleasesThePreviousObject) {
  ElementRef a = makeElement("fakesink");
  ElementRef b = makeElement("fakesrc");
  GstElement* old_b = b.get();
  ElementRef keep_old_b = b;
  ASSERT_EQ(refCount(old_b), 2u);
  b = a;
  EXPECT_EQ(refCount(old_b), 1u);
  EXPECT_EQ(refCount(a.get()), 2u);
  b = nullptr;
  EXPECT_FALSE(b);
  EXPECT_EQ(refCount(a.get()), 1u);
}

TEST_F(GstTest, SelfAssignmentKeepsTheCount) {
  ElementRef a = makeElement("fakesink");
  ElementRef& alias = a;
  a = alias;
  EXPECT_EQ(refCount(a.get()), 1u);
  a = std::move(alias);
  ASSERT_TRUE(a);
  EXPECT_EQ(refCount(a.get()), 1u);
}

TEST_F(GstTest, ReleaseHandsTheReferenceOver) {
  ElementRef a = makeElement("fakesink");
  GstElement* raw = a.release();
  EXPECT_FALSE(a);
  EXPECT_EQ(a.get(), nullptr);
  ASSERT_NE(raw, nullptr);
  EXPECT_EQ(refCount(raw), 1u);  // not dropped by release or by a's destructor
  gst_object_unref(raw);
}

TEST_F(GstTest, NullGRef) {
  ElementRef a;
  ElementRef b = nullptr;
  EXPECT_FALSE(a);
  EXPECT_FALSE(b);
  ElementRef c = a;  // copying null is fine
  EXPECT_FALSE(c);
  EXPECT_EQ(c.release(), nullptr);
}

// ---- MiniRef ----------------------------------------------------------------

TEST_F(GstTest, MiniRefAdoptAndRetain) {
  GstCaps* raw = gst_caps_new_empty_simple("audio/x-raw");
  ASSERT_EQ(miniRefCount(raw), 1);
  {
    CapsRef owner = CapsRef::adopt(raw);
    EXPECT_EQ(owner.get(), raw);
    EXPECT_EQ(miniRefCount(raw), 1);
    {
      CapsRef extra = CapsRef::retain(raw);
      EXPECT_EQ(miniRefCount(raw), 2);
      CapsRef copy = extra;
      EXPECT_EQ(miniRefCount(raw), 3);
      CapsRef moved = std::move(copy);
      EXPECT_FALSE(copy);  // NOLINT(bugprone-use-after-move)
      EXPECT_EQ(miniRefCount(raw), 3);
      CapsRef assigned;
      assigned = moved;
      EXPECT_EQ(miniRefCount(raw), 4);
    }
    EXPECT_EQ(miniRefCount(raw), 1);
    gst_caps_ref(raw);  // keep it alive past owner so the last check is valid
  }
  EXPECT_EQ(miniRefCount(raw), 1);
  gst_caps_unref(raw);
  EXPECT_FALSE(CapsRef::retain(nullptr));
}

TEST_F(GstTest, MiniRefRelease) {
  CapsRef caps = CapsRef::adopt(gst_caps_new_any());
  GstCaps* raw = caps.release();
  EXPECT_FALSE(caps);
  ASSERT_NE(raw, nullptr);
  EXPECT_EQ(miniRefCount(raw), 1);
  gst_caps_unref(raw);
}

// ---- Errors -----------------------------------------------------------------

TEST_F(GstTest, MakeElementReturnsAnOwnedNamedElement) {
  ElementRef e = makeElement("fakesink", "my-sink");
  ASSERT_TRUE(e);
  EXPECT_FALSE(g_object_is_floating(e.get()));
  EXPECT_EQ(refCount(e.get()), 1u);
  EXPECT_STREQ(GST_ELEMENT_NAME(e.get()), "my-sink");
}

TEST_F(GstTest, MakeElementOfUnknownFactoryThrowsNamingIt) {
  try {
    (void)makeElement("no-such-element");
    FAIL() << "no exception";
  } catch (const GstError& e) {
    EXPECT_EQ(e.element(), "no-such-element");
    EXPECT_TRUE(contains(e.what(), "no-such-element")) << e.what();
    EXPECT_FALSE(e.gstMessage().empty());
  }
}

TEST_F(GstTest, LinkFailureNamesBothElements) {
  ElementRef a = makeElement("fakesink", "first-sink");
  ElementRef b = makeElement("fakesink", "second-sink");
  try {
    link(a.get(), b.get());  // a sink has no src pad
    FAIL() << "no exception";
  } catch (const GstError& e) {
    EXPECT_EQ(e.element(), "first-sink");
    EXPECT_TRUE(contains(e.what(), "first-sink")) << e.what();
    EXPECT_TRUE(contains(e.what(), "second-sink")) << e.what();
  }
}

TEST_F(GstTest, LinkWithIncompatibleCapsNamesBothElements) {
  Pipeline pipeline("p");
  ElementRef src = makeElement("audiotestsrc", "tone");
  ElementRef bundle = makeElement("vesseladtsbundle", "bundler");
  pipeline.add(src);
  pipeline.add(bundle);
  try {
    link(src.get(), bundle.get());  // audio/x-raw cannot feed audio/mpeg
    FAIL() << "no exception";
  } catch (const GstError& e) {
    EXPECT_EQ(e.element(), "tone");
    EXPECT_TRUE(contains(e.what(), "tone")) << e.what();
    EXPECT_TRUE(contains(e.what(), "bundler")) << e.what();
  }
}

TEST_F(GstTest, LinkFilteredFailureNamesElementsAndCaps) {
  Pipeline pipeline("p");
  ElementRef src = makeElement("audiotestsrc", "tone");
  ElementRef sink = makeElement("fakesink", "out");
  pipeline.add(src);
  pipeline.add(sink);
  CapsRef caps = CapsRef::adopt(gst_caps_from_string("video/x-raw"));
  try {
    linkFiltered(src.get(), sink.get(), caps.get());
    FAIL() << "no exception";
  } catch (const GstError& e) {
    EXPECT_EQ(e.element(), "tone");
    EXPECT_TRUE(contains(e.what(), "out")) << e.what();
    EXPECT_TRUE(contains(e.what(), "video/x-raw")) << e.what();
  }
}

TEST_F(GstTest, LinkSucceeds) {
  Pipeline pipeline("p");
  ElementRef src = makeElement("fakesrc");
  ElementRef sink = makeElement("fakesink");
  pipeline.add(src);
  pipeline.add(sink);
  EXPECT_NO_THROW(link(src.get(), sink.get()));
}

/// filesrc(location=/nonexistent, name "src") ! fakesink in `pipeline`.
void buildFailingPipeline(Pipeline& pipeline) {
  ElementRef src = makeElement("filesrc", "src");
  g_object_set(src.get(), "location", "/nonexistent/vessel-test-input", nullptr);
  ElementRef sink = makeElement("fakesink", "sink");
  pipeline.add(src);
  pipeline.add(sink);
  link(src.get(), sink.get());
}

TEST_F(GstTest, ErrorFromBusMessageNamesTheElement) {
  Pipeline pipeline("failing");
  buildFailingPipeline(pipeline);
  EXPECT_EQ(gst_element_set_state(pipeline.element(), GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
  BusRef bus = pipeline.bus();
  MessageRef msg = MessageRef::adopt(gst_bus_pop_filtered(bus.get(), GST_MESSAGE_ERROR));
  ASSERT_TRUE(msg);
  const GstError e = errorFromMessage(msg.get());
  EXPECT_EQ(e.element(), "src");
  EXPECT_FALSE(e.gstMessage().empty());
  EXPECT_FALSE(e.debug().empty());
  EXPECT_TRUE(contains(e.what(), "src")) << e.what();
  EXPECT_TRUE(contains(e.what(), e.gstMessage())) << e.what();
}

TEST_F(GstTest, ErrorFromWarningMessage) {
  ElementRef elem = makeElement("fakesink", "warner");
  GError* err = g_error_new_literal(GST_CORE_ERROR, GST_CORE_ERROR_FAILED, "careful");
  MessageRef msg =
      MessageRef::adopt(gst_message_new_warning(GST_OBJECT(elem.get()), err, "extra detail"));
  g_error_free(err);
  const GstError e = errorFromMessage(msg.get());
  EXPECT_EQ(e.element(), "warner");
  EXPECT_EQ(e.gstMessage(), "careful");
  EXPECT_EQ(e.debug(), "extra detail");
}

TEST_F(GstTest, ErrorFromOtherMessageIsStillAnError) {
  MessageRef msg = MessageRef::adopt(gst_message_new_eos(nullptr));
  const GstError e = errorFromMessage(msg.get());
  EXPECT_EQ(e.element(), "");
  EXPECT_FALSE(e.gstMessage().empty());
}

TEST_F(GstTest, SetStateFailureThrowsWithTheElementName) {
  Pipeline pipeline("failing");
  buildFailingPipeline(pipeline);
  try {
    pipeline.setState(GST_STATE_PLAYING);
    FAIL() << "no exception";
  } catch (const GstError& e) {
    EXPECT_EQ(e.element(), "src");
    EXPECT_TRUE(contains(e.what(), "src")) << e.what();
    EXPECT_FALSE(e.gstMessage().empty());
  }
}

TEST_F(GstTest, PipelineIsSetToNullWhenDestroyed) {
  ElementRef src = makeElement("fakesrc");
  g_object_set(src.get(), "is-live", TRUE, nullptr);
  {
    Pipeline pipeline("p");
    ElementRef sink = makeElement("fakesink");
    pipeline.add(src);
    pipeline.add(sink);
    link(src.get(), sink.get());
    pipeline.setState(GST_STATE_PLAYING);
    ASSERT_NE(gst_element_get_state(pipeline.element(), nullptr, nullptr, 5 * GST_SECOND),
              GST_STATE_CHANGE_FAILURE);
  }
  GstState state = GST_STATE_VOID_PENDING;
  gst_element_get_state(src.get(), &state, nullptr, 0);
  EXPECT_EQ(state, GST_STATE_NULL);
  EXPECT_EQ(refCount(src.get()), 1u);  // the pipeline let go of it
}

TEST_F(GstTest, PositionOfAStoppedPipelineIsMinusOne) {
  Pipeline pipeline("p");
  EXPECT_EQ(pipeline.positionNs(), -1);
}

// ---- vesseladtsbundle -------------------------------------------------------

constexpr GstClockTime kFrameNs = 23220 * GST_USECOND;  // 23.22 ms
constexpr int kFrames = 100;
constexpr gsize kFrameBytes = 100;
constexpr GstClockTime kSegmentNs = GST_SECOND;
constexpr guint kMaxBytes = 1000;
constexpr GstClockTime kMaxDurationNs = 200 * GST_MSECOND;

struct Bundle {
  GstClockTime pts;
  GstClockTime duration;
  std::vector<guint8> bytes;
};

struct BundleRun {
  std::vector<Bundle> out;
  AdtsBundleStats stats;
};

/// appsrc → vesseladtsbundle → appsink, fed kFrames fake frames; frame i is filled with
/// byte i so order and conservation can be checked. Uses the app elements' action
/// signals, so the test needs no libgstapp link.
BundleRun runBundler(guint64 min_tail_ns = 0) {
  BundleRun run;
  Pipeline pipeline("bundle-test");
  ElementRef src = makeElement("appsrc", "src");
  ElementRef bundle = makeElement("vesseladtsbundle", "bundle");
  ElementRef sink = makeElement("appsink", "sink");
  CapsRef caps = CapsRef::adopt(
      gst_caps_from_string("audio/mpeg,mpegversion=4,stream-format=adts,framed=true"));
  g_object_set(src.get(), "caps", caps.get(), nullptr);
  gst_util_set_object_arg(G_OBJECT(src.get()), "format", "time");
  g_object_set(bundle.get(), "segment-duration", guint64{kSegmentNs}, "max-bytes", kMaxBytes,
               "max-duration", guint64{kMaxDurationNs}, "min-tail", min_tail_ns, nullptr);
  g_object_set(sink.get(), "sync", FALSE, nullptr);
  pipeline.add(src);
  pipeline.add(bundle);
  pipeline.add(sink);
  link(src.get(), bundle.get());
  link(bundle.get(), sink.get());
  pipeline.setState(GST_STATE_PLAYING);

  for (int i = 0; i < kFrames; ++i) {
    GstBuffer* buf = gst_buffer_new_allocate(nullptr, kFrameBytes, nullptr);
    gst_buffer_memset(buf, 0, static_cast<guint8>(i), kFrameBytes);
    GST_BUFFER_PTS(buf) = i * kFrameNs;
    GST_BUFFER_DURATION(buf) = kFrameNs;
    GstFlowReturn ret = GST_FLOW_ERROR;
    g_signal_emit_by_name(src.get(), "push-buffer", buf, &ret);  // does not take buf
    gst_buffer_unref(buf);
    EXPECT_EQ(ret, GST_FLOW_OK) << "frame " << i;
  }
  GstFlowReturn ret = GST_FLOW_ERROR;
  g_signal_emit_by_name(src.get(), "end-of-stream", &ret);
  EXPECT_EQ(ret, GST_FLOW_OK);

  for (;;) {
    GstSample* sample = nullptr;
    g_signal_emit_by_name(sink.get(), "try-pull-sample", guint64{10 * GST_SECOND}, &sample);
    if (!sample) break;  // EOS (or a stall, which the frame count check catches)
    GstBuffer* buf = gst_sample_get_buffer(sample);
    Bundle b;
    b.pts = GST_BUFFER_PTS(buf);
    b.duration = GST_BUFFER_DURATION(buf);
    b.bytes.resize(gst_buffer_get_size(buf));
    gst_buffer_extract(buf, 0, b.bytes.data(), b.bytes.size());
    run.out.push_back(std::move(b));
    gst_sample_unref(sample);
  }
  gboolean eos = FALSE;
  g_object_get(sink.get(), "eos", &eos, nullptr);
  EXPECT_TRUE(eos);

  BusRef bus = pipeline.bus();
  MessageRef error = MessageRef::adopt(gst_bus_pop_filtered(bus.get(), GST_MESSAGE_ERROR));
  EXPECT_FALSE(error) << (error ? errorFromMessage(error.get()).what() : "");
  run.stats = adtsBundleStats(bundle.get());
  return run;
}

TEST_F(GstTest, BundlerPacksFramesWithinLimits) {
  const BundleRun run = runBundler();
  ASSERT_FALSE(run.out.empty());
  EXPECT_LT(run.out.size(), static_cast<std::size_t>(kFrames)) << "frames were not bundled";

  std::vector<guint8> all;
  GstClockTime prev_pts = GST_CLOCK_TIME_NONE;
  for (std::size_t n = 0; n < run.out.size(); ++n) {
    const Bundle& b = run.out[n];
    SCOPED_TRACE("bundle " + std::to_string(n));
    ASSERT_TRUE(GST_CLOCK_TIME_IS_VALID(b.pts));
    ASSERT_TRUE(GST_CLOCK_TIME_IS_VALID(b.duration));
    EXPECT_LE(b.bytes.size(), kMaxBytes);
    ASSERT_EQ(b.bytes.size() % kFrameBytes, 0u) << "a frame was split";
    const GstClockTime frames = b.bytes.size() / kFrameBytes;
    EXPECT_EQ(b.duration, frames * kFrameNs);
    EXPECT_LE(b.duration, kMaxDurationNs);
    // The bundle starts with the frame whose pts it carries.
    EXPECT_EQ(b.pts % kFrameNs, 0u);
    EXPECT_EQ(b.bytes.front(), static_cast<guint8>(b.pts / kFrameNs));
    if (GST_CLOCK_TIME_IS_VALID(prev_pts)) {
      EXPECT_GT(b.pts, prev_pts);
    }
    prev_pts = b.pts;
    all.insert(all.end(), b.bytes.begin(), b.bytes.end());
  }
  // Every byte arrives once, in order.
  ASSERT_EQ(all.size(), kFrames * kFrameBytes);
  for (std::size_t i = 0; i < all.size(); ++i) {
    ASSERT_EQ(all[i], static_cast<guint8>(i / kFrameBytes)) << "byte " << i;
  }
  EXPECT_EQ(run.stats.bundles, run.out.size());
}

TEST_F(GstTest, BundlerNeverStraddlesASegmentBoundary) {
  const BundleRun run = runBundler();
  ASSERT_FALSE(run.out.empty());
  for (const Bundle& b : run.out) {
    // A frame may itself overlap k s (frame 43 covers 998.46–1021.68 ms), so test the
    // frame *starts*: no bundle may hold a frame before k s and a frame at or after k s,
    // i.e. no multiple of the segment duration lies in (first pts, last frame's pts].
    const GstClockTime frames = b.bytes.size() / kFrameBytes;
    ASSERT_GE(frames, 1u);
    const GstClockTime last_frame_pts = b.pts + (frames - 1) * kFrameNs;
    const GstClockTime next_boundary = (b.pts / kSegmentNs + 1) * kSegmentNs;
    EXPECT_GT(next_boundary, last_frame_pts)
        << "bundle at " << b.pts << " ns holds frames up to " << last_frame_pts << " ns, across "
        << next_boundary << " ns";
  }
  // The bundle that carries the first frame at or after each boundary starts with it.
  for (GstClockTime boundary = kSegmentNs; boundary < kFrames * kFrameNs; boundary += kSegmentNs) {
    const GstClockTime first_after = (boundary + kFrameNs - 1) / kFrameNs * kFrameNs;
    bool found = false;
    for (const Bundle& b : run.out) found = found || b.pts == first_after;
    EXPECT_TRUE(found) << "no bundle starts at " << first_after << " ns";
  }
}

TEST_F(GstTest, BundlerStatsReportSegmentStartsAndEnd) {
  const BundleRun run = runBundler();
  EXPECT_EQ(run.stats.frames, static_cast<guint64>(kFrames));
  std::vector<GstClockTime> expected = {0};
  for (GstClockTime boundary = kSegmentNs; boundary < kFrames * kFrameNs; boundary += kSegmentNs) {
    expected.push_back((boundary + kFrameNs - 1) / kFrameNs * kFrameNs);
  }
  // 1 s → frame 44 (1021.68 ms), 2 s → frame 87 (2020.14 ms).
  ASSERT_EQ(expected, (std::vector<GstClockTime>{0, 44 * kFrameNs, 87 * kFrameNs}));
  EXPECT_EQ(run.stats.segment_starts_ns, expected);
  EXPECT_EQ(run.stats.end_ns, (kFrames - 1) * kFrameNs + kFrameNs);
}

TEST_F(GstTest, BundlerFoldsAShortTailIntoThePreviousSegment) {
  // 100 frames = 2.32 s: the part after 2 s (0.30 s) is shorter than a 0.45 s
  // min-tail, so it joins the second segment instead of becoming a third.
  const BundleRun run = runBundler(450 * GST_MSECOND);
  EXPECT_EQ(run.stats.segment_starts_ns, (std::vector<GstClockTime>{0, 44 * kFrameNs}));
  EXPECT_EQ(run.stats.end_ns, kFrames * kFrameNs);
  std::size_t bytes = 0;
  for (const Bundle& b : run.out) bytes += b.bytes.size();
  EXPECT_EQ(bytes, static_cast<std::size_t>(kFrames) * kFrameBytes);
}

TEST_F(GstTest, BundlerKeepsATailLongerThanMinTail) {
  // With a 0.2 s min-tail the 0.30 s tail is a segment of its own.
  const BundleRun run = runBundler(200 * GST_MSECOND);
  EXPECT_EQ(run.stats.segment_starts_ns,
            (std::vector<GstClockTime>{0, 44 * kFrameNs, 87 * kFrameNs}));
}

}  // namespace
}  // namespace vessel::gst
