// Worker threads: claim → fetch original → probe → transcode → complete/fail.
#include "vessel/worker.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>

#include "vessel/log.hpp"
#include "vessel/probe.hpp"
#include "vessel/transcode.hpp"

namespace vessel {
namespace {

// A downloaded copy of a non-local original, removed when done.
class ScratchFile {
 public:
  ~ScratchFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  Result<std::string> fill(Storage& storage, const std::string& key, const std::string& dir) {
    std::string tmpl = dir + "/vessel-original-XXXXXX";
    int fd = ::mkstemp(tmpl.data());
    if (fd < 0) {
      return makeError(ErrorCode::kUnavailable,
                       "cannot create a scratch file in " + dir + ": " + std::strerror(errno));
    }
    path_ = tmpl;
    auto reader = storage.openReader(key);
    if (!reader.ok()) {
      ::close(fd);
      return reader.error();
    }
    std::vector<std::byte> buf(1 << 20);
    for (;;) {
      auto n = reader.value()->read(buf);
      if (!n.ok()) {
        ::close(fd);
        return n.error();
      }
      if (n.value() == 0) break;
      std::size_t off = 0;
      while (off < n.value()) {
        ssize_t w = ::write(fd, buf.data() + off, n.value() - off);
        if (w < 0) {
          int err = errno;
          ::close(fd);
          return makeError(err == ENOSPC ? ErrorCode::kNoSpace : ErrorCode::kUnavailable,
                           "writing scratch copy of '" + key + "': " + std::strerror(err));
        }
        off += static_cast<std::size_t>(w);
      }
    }
    ::close(fd);
    return path_;
  }

 private:
  std::string path_;
};

std::string ownerBase() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::random_device rd;
  char suffix[9];
  std::snprintf(suffix, sizeof suffix, "%08x", rd());
  return std::string(host) + ":" + std::to_string(::getpid()) + ":" + suffix;
}

}  // namespace

Result<JobOutcome> runJob(const ClaimedJob& job, const JobRunContext& ctx,
                          bool& lease_lost) noexcept {
  lease_lost = false;
  try {
    Storage& storage = *ctx.storage;
    std::string input;
    ScratchFile scratch;
    std::optional<std::string> local = storage.localPath(job.storage_key);
    std::error_code ec;
    if (local && std::filesystem::is_regular_file(*local, ec)) {
      input = *local;
    } else {
      auto exists = storage.exists(job.storage_key);
      if (!exists.ok()) return exists.error();
      if (!exists.value()) {
        return makeError(ErrorCode::kNotFound,
                         "the original '" + job.storage_key + "' is not in storage");
      }
      auto path = scratch.fill(storage, job.storage_key, ctx.scratch_dir);
      if (!path.ok()) return path.error();
      input = path.value();
    }
    // Users see these messages: name the file, not where this machine keeps it.
    const auto scrubbed = [&input](Error e) {
      for (std::size_t at; (at = e.message.find(input)) != std::string::npos;) {
        e.message.replace(at, input.size(), "the uploaded file");
      }
      const std::string quoted = "'the uploaded file'";
      for (std::size_t at; (at = e.message.find(quoted)) != std::string::npos;) {
        e.message.replace(at, quoted.size(), "the uploaded file");
      }
      return e;
    };
    auto probe = probeFile(input);
    if (!probe.ok()) return scrubbed(probe.error());
    auto ladder = ctx.runtime->ladder(job.pipeline);
    if (!ladder.ok()) return ladder.error();
    auto codecs = ctx.runtime->codecsFor(ladder.value());
    if (!codecs.ok()) return codecs.error();

    // A killed earlier attempt may have left segments: start from a clean prefix
    // (everything but the original).
    const std::string prefix = uploadPrefix(job.user_id, job.upload_id);
    for (const auto& rung : ladder.value().rungs) {
      auto removed = storage.removePrefix(prefix + rung.name + "/");
      if (!removed.ok()) return removed.error();
    }
    if (auto r = storage.remove(prefix + "master.m3u8"); !r.ok()) return r.error();

    std::atomic<bool> cancel{false};
    std::atomic<bool> keep_outputs{false};
    auto last_beat = std::chrono::steady_clock::now();
    TranscodeRequest req;
    req.input_path = input;
    req.ladder = ladder.value();
    req.codecs = std::move(codecs).value();
    req.storage = ctx.storage;
    req.prefix = prefix;
    req.source_duration_s = probe.value().duration_s;
    req.stall_timeout = ctx.stall_timeout;
    req.cancel = &cancel;
    req.keep_outputs_on_failure = &keep_outputs;
    req.on_progress = [&](double p) {
      if (ctx.cancel && ctx.cancel->load()) cancel.store(true);
      auto now = std::chrono::steady_clock::now();
      if (ctx.on_heartbeat && now - last_beat >= ctx.heartbeat) {
        last_beat = now;
        if (!ctx.on_heartbeat(p)) {
          keep_outputs.store(true);
          cancel.store(true);
        }
      }
    };
    auto result = transcodeLadder(req);
    if (keep_outputs.load()) {
      lease_lost = true;
      return makeError(ErrorCode::kCancelled, "lease lost; another worker owns the job now");
    }
    if (!result.ok()) return scrubbed(result.error());
    JobOutcome outcome;
    outcome.duration_s = result.value().duration_s;
    outcome.master_key = result.value().master_key;
    const ProbeResult& p = probe.value();
    outcome.probe["codec"] = p.codec;
    outcome.probe["sample_rate"] = std::to_string(p.sample_rate);
    outcome.probe["channels"] = std::to_string(p.channels);
    if (p.bit_rate) outcome.probe["bit_rate"] = std::to_string(*p.bit_rate);
    outcome.probe["container"] = p.container;
    for (const char* tag : {"title", "artist", "album"}) {
      auto it = p.tags.find(tag);
      if (it != p.tags.end()) outcome.probe[tag] = it->second;
    }
    return outcome;
  } catch (const std::exception& e) {
    return makeError(ErrorCode::kInternal, std::string("job: ") + e.what());
  }
}

WorkerPool::WorkerPool(Runtime& runtime, std::shared_ptr<Storage> storage, WorkerOptions options)
    : runtime_(runtime),
      storage_(std::move(storage)),
      options_(std::move(options)),
      owner_base_(ownerBase()) {}

WorkerPool::~WorkerPool() {
  requestStop();
  join();
}

void WorkerPool::start() {
  for (int i = 0; i < options_.concurrency; ++i) {
    threads_.emplace_back([this, i] { threadMain(i); });
  }
}

void WorkerPool::requestStop() {
  if (stopping_.exchange(true)) return;
  if (threads_.empty()) return;
  deadline_thread_ = std::thread([this] {
    std::unique_lock lock(stop_mu_);
    auto until = std::chrono::steady_clock::now() + options_.shutdown_grace;
    stop_cv_.wait_until(lock, until, [this] { return cancel_.load(); });
    cancel_.store(true);  // grace over (or everyone is done): cancel what still runs
  });
}

void WorkerPool::join() {
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  {
    std::lock_guard lock(stop_mu_);
    cancel_.store(true);
  }
  stop_cv_.notify_all();
  if (deadline_thread_.joinable()) deadline_thread_.join();
}

void WorkerPool::threadMain(int index) {
  const std::string owner = owner_base_ + "/" + std::to_string(index);
  std::unique_ptr<JobStore> store;
  while (!stopping_.load()) {
    if (!store) {
      auto s = JobStore::connect(options_.conninfo, options_.queue);
      if (!s.ok()) {
        log::warn("worker cannot reach the database",
                  {{"worker", owner}, {"error", s.error().message}});
        std::this_thread::sleep_for(std::chrono::seconds(1));
        continue;
      }
      store = std::move(s).value();
    }
    auto claimed = store->claim(owner);
    if (!claimed.ok()) {
      log::warn("claim failed", {{"worker", owner}, {"error", claimed.error().message}});
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    if (!claimed.value()) {
      (void)store->waitForWork(options_.idle_poll);
      continue;
    }
    const ClaimedJob job = *claimed.value();
    // Every line about this job names it, its upload and its user.
    log::Context log_ctx({{"job_id", static_cast<long long>(job.job_id)},
                          {"upload_id", job.upload_id},
                          {"user_id", job.user_id}});
    log::info("job claimed", {{"worker", owner},
                              {"job_id", static_cast<long long>(job.job_id)},
                              {"attempt", static_cast<long long>(job.attempt)},
                              {"upload_id", job.upload_id},
                              {"user_id", job.user_id}});
    JobRunContext ctx;
    ctx.runtime = &runtime_;
    ctx.storage = storage_;
    ctx.stall_timeout = options_.stall_timeout;
    ctx.heartbeat = options_.heartbeat;
    ctx.scratch_dir = options_.scratch_dir;
    ctx.cancel = &cancel_;
    bool job_cancelled = false;
    ctx.on_heartbeat = [&](double p) {
      auto r = store->heartbeat(job, p);
      if (!r.ok() && r.error().code == ErrorCode::kCancelled) job_cancelled = true;
      if (!r.ok() && (r.error().code == ErrorCode::kPermissionDenied ||
                      r.error().code == ErrorCode::kCancelled)) {
        return false;
      }
      return true;  // a database blip is not a lost lease; the next beat retries
    };
    // A cancelled job's upload is being deleted: whatever this attempt wrote
    // after the deleter swept the prefix would be orphaned, so sweep it again.
    const auto sweepCancelled = [&] {
      auto r = storage_->removePrefix(uploadPrefix(job.user_id, job.upload_id));
      log::info("job cancelled; outputs removed", {{"worker", owner},
                                                   {"job_id", static_cast<long long>(job.job_id)},
                                                   {"upload_id", job.upload_id},
                                                   {"ok", r.ok()}});
    };
    auto started = std::chrono::steady_clock::now();
    bool lease_lost = false;
    auto outcome = runJob(job, ctx, lease_lost);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (lease_lost) {
      if (job_cancelled) {
        sweepCancelled();
        continue;
      }
      log::warn("lease lost; abandoning the attempt",
                {{"worker", owner}, {"job_id", static_cast<long long>(job.job_id)}});
      continue;
    }
    if (outcome.ok()) {
      auto r = store->complete(job, outcome.value());
      if (!r.ok() && r.error().code == ErrorCode::kCancelled) {
        sweepCancelled();
        continue;
      }
      if (r.ok()) {
        done_++;
        log::info("job done", {{"worker", owner},
                               {"job_id", static_cast<long long>(job.job_id)},
                               {"upload_id", job.upload_id},
                               {"seconds", secs},
                               {"audio_seconds", outcome.value().duration_s}});
      } else {
        log::warn("could not record completion",
                  {{"job_id", static_cast<long long>(job.job_id)}, {"error", r.error().message}});
      }
      continue;
    }
    const Error& err = outcome.error();
    if (err.code == ErrorCode::kCancelled) {
      auto r = store->release(job);
      log::info("job released at shutdown",
                {{"job_id", static_cast<long long>(job.job_id)}, {"ok", r.ok()}});
      continue;
    }
    failed_++;
    auto r = store->fail(job, err);
    log::warn("job failed", {{"worker", owner},
                             {"job_id", static_cast<long long>(job.job_id)},
                             {"upload_id", job.upload_id},
                             {"error", err.message},
                             {"code", errorCodeName(err.code)},
                             {"retryable", isTransient(err.code)},
                             {"recorded", r.ok()}});
  }
}

}  // namespace vessel
