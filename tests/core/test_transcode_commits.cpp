// Segment commits run off the streaming threads (gst::CommitPool): a slow store
// (an S3 PUT) overlaps with encoding instead of stalling the rung, playlists and
// master.m3u8 still come after every segment, and a failure or cancel while
// commits are in flight fails the job the same way and leaves nothing behind.
//
// The storage below gates commits on events, not on timing: "segment_000's
// commit waits until segment_001's commit has started" can only complete when
// commits of one rung overlap, which a commit in the streaming thread never
// allows (there it runs out as a timeout, and the test fails).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "output_stream.hpp"
#include "vessel/gst.hpp"
#include "vessel/plugin_host.hpp"
#include "vessel/transcode.hpp"

namespace {

using namespace std::chrono_literals;

// An in-memory store whose commits can be held back until something happens.
class GatedStorage final : public vessel::Storage {
 public:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::map<std::string, std::vector<std::byte>> objects;
    std::vector<std::string> done_order;               // commits and puts, as they complete
    std::vector<std::string> started_commits;          // as they start
    std::map<std::string, std::thread::id> opened_on;  // writer key → thread that opened it
    std::vector<std::thread::id> commit_threads;
    int removes = 0;
    // Set by a test: called at the start of each commit, unlocked; may wait.
    std::function<void(State&, const std::string& key)> before_commit;
    // Keys whose commit fails with this error.
    std::map<std::string, vessel::Error> fail;

    bool started(const std::string& key) {
      return std::find(started_commits.begin(), started_commits.end(), key) !=
             started_commits.end();
    }
    // Waits (holding `lock`) for `pred` or `timeout`; true when pred held.
    template <typename Pred>
    bool waitFor(std::unique_lock<std::mutex>& lock, std::chrono::milliseconds timeout, Pred pred) {
      return cv.wait_for(lock, timeout, pred);
    }
  };

  class Writer final : public vessel::ObjectWriter {
   public:
    Writer(std::shared_ptr<State> st, std::string key) : st_(std::move(st)), key_(std::move(key)) {}
    vessel::Result<void> write(std::span<const std::byte> data) noexcept override {
      buf_.insert(buf_.end(), data.begin(), data.end());
      return {};
    }
    vessel::Result<void> commit() noexcept override {
      {
        std::lock_guard lock(st_->mu);
        st_->started_commits.push_back(key_);
        st_->commit_threads.push_back(std::this_thread::get_id());
      }
      st_->cv.notify_all();
      if (st_->before_commit) st_->before_commit(*st_, key_);
      std::lock_guard lock(st_->mu);
      if (auto it = st_->fail.find(key_); it != st_->fail.end()) return it->second;
      st_->objects[key_] = buf_;
      st_->done_order.push_back(key_);
      st_->cv.notify_all();
      return {};
    }
    void abort() noexcept override { buf_.clear(); }
    std::uint64_t bytesWritten() const noexcept override { return buf_.size(); }

   private:
    std::shared_ptr<State> st_;
    std::string key_;
    std::vector<std::byte> buf_;
  };

  std::shared_ptr<State> state = std::make_shared<State>();

  vessel::Result<void> put(std::string_view key, std::span<const std::byte> data,
                           std::string_view) noexcept override {
    std::lock_guard lock(state->mu);
    state->objects[std::string(key)] = {data.begin(), data.end()};
    state->done_order.emplace_back(key);
    return {};
  }
  vessel::Result<std::unique_ptr<vessel::ObjectWriter>> openWriter(
      std::string_view key, std::string_view) noexcept override {
    {
      std::lock_guard lock(state->mu);
      state->opened_on[std::string(key)] = std::this_thread::get_id();
    }
    state->cv.notify_all();
    return std::unique_ptr<vessel::ObjectWriter>(new Writer(state, std::string(key)));
  }
  vessel::Result<std::unique_ptr<vessel::ObjectReader>> openReader(
      std::string_view, std::uint64_t, std::optional<std::uint64_t>) noexcept override {
    return vessel::makeError(vessel::ErrorCode::kInternal, "unused");
  }
  vessel::Result<vessel::ObjectInfo> stat(std::string_view) noexcept override {
    return vessel::makeError(vessel::ErrorCode::kInternal, "unused");
  }
  vessel::Result<bool> exists(std::string_view key) noexcept override {
    std::lock_guard lock(state->mu);
    return state->objects.count(std::string(key)) > 0;
  }
  vessel::Result<void> remove(std::string_view key) noexcept override {
    {
      std::lock_guard lock(state->mu);
      state->objects.erase(std::string(key));
      state->removes++;
    }
    state->cv.notify_all();
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

constexpr const char* kPrefix = "user1/upload1/";

std::string key(const std::string& rest) { return kPrefix + rest; }

class TranscodeCommitsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "vessel-tcc-XXXXXX").string();
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

  // 14 s in 4 s segments: segment_000..003 in each of two rungs.
  vessel::TranscodeRequest request(std::shared_ptr<vessel::Storage> storage) {
    vessel::TranscodeRequest req;
    req.input_path = input_;
    req.ladder.name = "test";
    req.ladder.container = "mpegts";
    req.ladder.segment_duration_s = 4;
    req.ladder.rungs = {{"lo", "aac", 64000, 44100, 2, {}}, {"hi", "aac", 128000, 48000, 1, {}}};
    req.codecs["aac"] = *aac_;
    req.storage = std::move(storage);
    req.prefix = kPrefix;
    req.source_duration_s = 14;
    return req;
  }

  static std::string leftKeys(GatedStorage& store) {
    std::lock_guard lock(store.state->mu);
    std::string left;
    for (const auto& [k, v] : store.state->objects) left += k + " ";
    return left;
  }

  static inline std::filesystem::path dir_;
  static inline std::string input_;
  static inline vessel::PluginHost* host_ = nullptr;
  static inline std::shared_ptr<vessel::Codec>* aac_ = nullptr;
};

TEST_F(TranscodeCommitsTest, SegmentCommitsOverlapWhileTheRungKeepsEncoding) {
  auto store = std::make_shared<GatedStorage>();
  const std::string first = key("lo/segment_000.ts"), second = key("lo/segment_001.ts"),
                    third = key("lo/segment_002.ts");
  bool overlapped = false, third_opened = false;
  store->state->before_commit = [&](GatedStorage::State& st, const std::string& k) {
    if (k != first) return;
    // Hold lo's first segment until lo's second one is being committed: only
    // possible when the rung went on encoding (it opened segment_002 to release
    // segment_001) while this commit was still running.
    std::unique_lock lock(st.mu);
    overlapped = st.waitFor(lock, 30s, [&] { return st.started(second); });
    third_opened = st.opened_on.count(third) > 0;
  };
  auto r = vessel::transcodeLadder(request(store));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(overlapped) << "segment_001's commit did not start while segment_000's ran";
  EXPECT_TRUE(third_opened) << "lo did not open segment_002 while segment_000 was committing";

  // Commits ran on threads other than the streaming thread that wrote the segment.
  auto& st = *store->state;
  for (std::size_t i = 0; i < st.started_commits.size(); ++i) {
    const std::string& k = st.started_commits[i];
    if (k.ends_with(".ts")) {
      EXPECT_NE(st.commit_threads[i], st.opened_on[k]) << k;
    }
  }
  // Every segment is stored with the size the result reports.
  for (const auto& rung : r.value().rungs) {
    ASSERT_EQ(rung.segments.size(), 4u) << rung.name;
    for (const auto& s : rung.segments) {
      const std::string k = key(rung.name + "/" + s.uri);
      ASSERT_TRUE(st.objects.count(k)) << k;
      EXPECT_EQ(st.objects[k].size(), s.bytes) << k;
    }
  }
}

TEST_F(TranscodeCommitsTest, PlaylistsWaitForTheLastCommitAndMasterComesLast) {
  auto store = std::make_shared<GatedStorage>();
  // The last segments (committed at teardown) are slow: the playlists must wait.
  store->state->before_commit = [](GatedStorage::State&, const std::string& k) {
    if (k.ends_with("segment_003.ts")) std::this_thread::sleep_for(300ms);
  };
  auto r = vessel::transcodeLadder(request(store));
  ASSERT_TRUE(r.ok()) << r.error().message;
  const auto& order = store->state->done_order;
  ASSERT_EQ(order.size(), 8u + 2u + 1u);  // 8 segments, 2 media playlists, master
  EXPECT_EQ(order.back(), key("master.m3u8"));
  auto first_playlist = std::find_if(order.begin(), order.end(),
                                     [](const std::string& k) { return k.ends_with(".m3u8"); });
  auto last_segment = std::find_if(order.rbegin(), order.rend(), [](const std::string& k) {
                        return k.ends_with(".ts");
                      }).base();
  EXPECT_LE(last_segment - order.begin(), first_playlist - order.begin())
      << "a playlist was written before the last segment was committed";
}

TEST_F(TranscodeCommitsTest, AFailedCommitFailsTheJobWithItsErrorAndLeavesNothing) {
  auto store = std::make_shared<GatedStorage>();
  store->state->fail[key("lo/segment_001.ts")] = vessel::Error{
      vessel::ErrorCode::kUnavailable, "memory: put 'lo/segment_001.ts': HTTP 503 (test)"};
  // Other commits are slow, so some still run when the failure is known.
  store->state->before_commit = [](GatedStorage::State&, const std::string& k) {
    if (!k.ends_with("segment_001.ts")) std::this_thread::sleep_for(50ms);
  };
  auto r = vessel::transcodeLadder(request(store));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, vessel::ErrorCode::kUnavailable) << r.error().message;
  EXPECT_EQ(r.error().message, "memory: put 'lo/segment_001.ts': HTTP 503 (test)");
  EXPECT_EQ(leftKeys(*store), "");
  EXPECT_FALSE(store->state->objects.count(key("master.m3u8")));
}

TEST_F(TranscodeCommitsTest, CancelWhileACommitRunsLeavesNothing) {
  auto store = std::make_shared<GatedStorage>();
  auto req = request(store);
  std::atomic<bool> cancel{false};
  req.cancel = &cancel;
  bool removed_before_commit_ended = false;
  store->state->before_commit = [&](GatedStorage::State& st, const std::string& k) {
    if (k != key("lo/segment_000.ts")) return;
    cancel.store(true);
    // The job's cleanup must wait for this commit before it removes anything;
    // a cleanup that does not would remove first and this object would stay.
    std::unique_lock lock(st.mu);
    removed_before_commit_ended = st.waitFor(lock, 3s, [&] { return st.removes > 0; });
  };
  auto r = vessel::transcodeLadder(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, vessel::ErrorCode::kCancelled) << r.error().message;
  EXPECT_FALSE(removed_before_commit_ended);
  EXPECT_EQ(leftKeys(*store), "");
}

// The pool on its own: bounded queue, first error, waits for everything.
TEST(CommitPool, RunsInParallelBoundsItsQueueAndReportsTheFirstFailure) {
  vessel::gst::CommitPool pool(2, 1);
  std::mutex mu;
  std::condition_variable cv;
  int running = 0, max_running = 0, done = 0;
  bool release = false;
  auto task = [&](bool fail) {
    return [&, fail]() -> vessel::Result<void> {
      std::unique_lock lock(mu);
      max_running = std::max(max_running, ++running);
      cv.notify_all();
      cv.wait(lock, [&] { return release; });
      --running;
      ++done;
      if (fail) return vessel::makeError(vessel::ErrorCode::kUnavailable, "first");
      return {};
    };
  };
  pool.submit(task(true));
  pool.submit(task(false));
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return running == 2; }));
  }
  pool.submit(task(false));  // queued: both threads are busy, the queue had room for one
  std::atomic<bool> fourth_submitted{false};
  std::thread submitter([&] {
    pool.submit([]() -> vessel::Result<void> { return {}; });
    fourth_submitted = true;
  });
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(fourth_submitted.load()) << "submit did not wait for room in the queue";
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  submitter.join();
  vessel::Result<void> r = pool.wait();
  EXPECT_EQ(done, 3);
  EXPECT_EQ(max_running, 2);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "first");
}

}  // namespace
