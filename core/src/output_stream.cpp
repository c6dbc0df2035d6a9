// StorageOutputStream: GOutputStream → ObjectWriter with a small write buffer;
// CommitPool: commits those writers on a few threads of their own.
#include "output_stream.hpp"

#include <exception>
#include <system_error>
#include <utility>

namespace vessel::gst {

// ---------------------------------------------------------------------------
// CommitPool

CommitPool::CommitPool(std::size_t threads, std::size_t max_queued)
    : max_threads_(threads > 0 ? threads : 1), max_queued_(max_queued > 0 ? max_queued : 1) {}

CommitPool::~CommitPool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;  // threads leave once the queue is empty: nothing is dropped
  }
  work_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void CommitPool::submit(std::function<Result<void>()> commit) {
  std::unique_lock lock(mu_);
  space_cv_.wait(lock, [&] { return queue_.size() < max_queued_; });
  queue_.push_back(std::move(commit));
  if (queue_.size() > idle_threads_ && threads_.size() < max_threads_) {
    try {
      threads_.emplace_back([this] { run(); });
    } catch (const std::system_error&) {
      // No thread to be had: the existing ones will get to it; with none, commit here.
      if (threads_.empty()) {
        auto task = std::move(queue_.back());
        queue_.pop_back();
        ++running_;
        lock.unlock();
        Result<void> r = task();
        task = nullptr;
        lock.lock();
        --running_;
        if (!r.ok() && r.error().code != ErrorCode::kCancelled && !first_error_) {
          first_error_ = r.error();
        }
        if (queue_.empty() && running_ == 0) idle_cv_.notify_all();
        return;
      }
    }
  }
  work_cv_.notify_one();
}

Result<void> CommitPool::wait() {
  std::unique_lock lock(mu_);
  idle_cv_.wait(lock, [&] { return queue_.empty() && running_ == 0; });
  if (first_error_) return *first_error_;
  return {};
}

void CommitPool::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    ++idle_threads_;
    work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    --idle_threads_;
    if (queue_.empty()) return;  // stopping, and nothing left to commit
    std::function<Result<void>()> task = std::move(queue_.front());
    queue_.pop_front();
    ++running_;
    space_cv_.notify_one();
    lock.unlock();
    Result<void> r;
    try {
      r = task();
    } catch (const std::exception& e) {
      r = makeError(ErrorCode::kInternal, std::string("commit: ") + e.what());
    }
    // The task owns the writer: destroy it before wait() can return, so a waiter
    // knows every writer handed to the pool is committed or discarded.
    task = nullptr;
    lock.lock();
    --running_;
    if (!r.ok() && r.error().code != ErrorCode::kCancelled && !first_error_) {
      first_error_ = r.error();
    }
    if (queue_.empty() && running_ == 0) idle_cv_.notify_all();
  }
}

// ---------------------------------------------------------------------------
// The stream

namespace {

constexpr std::size_t kBufferBytes = 64 * 1024;

struct StreamState {
  std::unique_ptr<ObjectWriter> writer;
  std::string key;
  StreamClosedFn on_closed;
  CommitOnRelease commit_on_release;
  CommitPool* pool = nullptr;
  std::vector<std::byte> buffer;
  bool closed = false;
  bool reported = false;

  // Reports the outcome exactly once (first failure, or the close).
  void report(const Result<void>& result) {
    if (reported) return;
    reported = true;
    if (on_closed) on_closed(key, writer->bytesWritten(), result);
  }

  bool discarded() const { return commit_on_release && !commit_on_release->load(); }

  Error discardedError() const { return Error{ErrorCode::kCancelled, "'" + key + "' discarded"}; }

  // Commits, or aborts when the owner has given up on this output (failure,
  // cancel) by now, and reports.
  Result<void> commitNow() {
    Result<void> result;
    if (discarded()) {
      writer->abort();
      result = discardedError();
    } else {
      result = writer->commit();
    }
    report(result);
    return result;
  }
};

// Commits `state` on its pool (taking ownership), or here without one.
Result<void> commitOrHandOff(std::unique_ptr<StreamState> state) {
  if (!state->pool) return state->commitNow();
  CommitPool* pool = state->pool;
  std::shared_ptr<StreamState> shared(std::move(state));
  pool->submit([shared] { return shared->commitNow(); });
  return {};
}

struct VesselStorageStream {
  GOutputStream parent;
  StreamState* state;  // owned; null once handed to the commit pool
};

struct VesselStorageStreamClass {
  GOutputStreamClass parent_class;
};

GType vessel_storage_stream_get_type();
G_DEFINE_TYPE(VesselStorageStream, vessel_storage_stream, G_TYPE_OUTPUT_STREAM)

GQuark errorQuark() { return g_quark_from_static_string("vessel-storage-error"); }

void setError(GError** error, const Error& e) {
  g_set_error(error, errorQuark(), static_cast<int>(e.code), "%s", e.message.c_str());
}

bool flushBuffer(StreamState* st, GError** error) {
  if (st->buffer.empty()) return true;
  Result<void> r = st->writer->write(st->buffer);
  st->buffer.clear();
  if (!r.ok()) {
    st->report(r);
    setError(error, r.error());
    return false;
  }
  return true;
}

gssize writeFn(GOutputStream* stream, const void* data, gsize count, GCancellable* /*c*/,
               GError** error) {
  StreamState* st = reinterpret_cast<VesselStorageStream*>(stream)->state;
  if (!st) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_CLOSED, "stream is closed");
    return -1;
  }
  const auto* bytes = static_cast<const std::byte*>(data);
  if (st->buffer.size() + count > kBufferBytes) {
    if (!flushBuffer(st, error)) return -1;
  }
  if (count >= kBufferBytes) {
    Result<void> r = st->writer->write({bytes, count});
    if (!r.ok()) {
      st->report(r);
      setError(error, r.error());
      return -1;
    }
    return static_cast<gssize>(count);
  }
  st->buffer.insert(st->buffer.end(), bytes, bytes + count);
  return static_cast<gssize>(count);
}

gboolean flushFn(GOutputStream* stream, GCancellable* /*c*/, GError** error) {
  StreamState* st = reinterpret_cast<VesselStorageStream*>(stream)->state;
  return !st || flushBuffer(st, error);
}

gboolean closeFn(GOutputStream* stream, GCancellable* /*c*/, GError** error) {
  auto* self = reinterpret_cast<VesselStorageStream*>(stream);
  StreamState* st = self->state;
  if (!st || st->closed) return TRUE;
  st->closed = true;
  GError* flush_error = nullptr;
  if (!flushBuffer(st, &flush_error)) {
    Result<void> result = Error{ErrorCode::kInternal, flush_error->message};
    g_propagate_error(error, flush_error);
    st->writer->abort();
    st->report(result);
    return FALSE;
  }
  std::unique_ptr<StreamState> owned(st);
  self->state = nullptr;
  Result<void> result = commitOrHandOff(std::move(owned));
  if (!result.ok()) setError(error, result.error());
  return result.ok();
}

void finalizeFn(GObject* object) {
  auto* self = reinterpret_cast<VesselStorageStream*>(object);
  std::unique_ptr<StreamState> st(self->state);
  self->state = nullptr;
  if (st && !st->closed) {
    st->closed = true;
    if (!st->discarded() && !st->reported) {
      GError* error = nullptr;
      if (flushBuffer(st.get(), &error)) {
        (void)commitOrHandOff(std::move(st));  // the outcome goes to on_closed
      } else {
        g_clear_error(&error);  // flushBuffer already reported it
        st->writer->abort();
      }
    } else {
      st->writer->abort();
      st->report(st->discardedError());
    }
  }
  G_OBJECT_CLASS(vessel_storage_stream_parent_class)->finalize(object);
}

void vessel_storage_stream_class_init(VesselStorageStreamClass* klass) {
  G_OBJECT_CLASS(klass)->finalize = finalizeFn;
  auto* out = G_OUTPUT_STREAM_CLASS(klass);
  out->write_fn = writeFn;
  out->flush = flushFn;
  out->close_fn = closeFn;
}

void vessel_storage_stream_init(VesselStorageStream* self) { self->state = nullptr; }

}  // namespace

GOutputStream* newStorageOutputStream(std::unique_ptr<ObjectWriter> writer, std::string key,
                                      StreamClosedFn on_closed, CommitOnRelease commit_on_release,
                                      CommitPool* commits) {
  auto* stream =
      static_cast<VesselStorageStream*>(g_object_new(vessel_storage_stream_get_type(), nullptr));
  auto* state = new StreamState{};
  state->writer = std::move(writer);
  state->key = std::move(key);
  state->on_closed = std::move(on_closed);
  state->commit_on_release = std::move(commit_on_release);
  state->pool = commits;
  state->buffer.reserve(kBufferBytes);
  stream->state = state;
  return G_OUTPUT_STREAM(stream);
}

}  // namespace vessel::gst
