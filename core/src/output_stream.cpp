// StorageOutputStream: GOutputStream → ObjectWriter with a small write buffer.
#include "output_stream.hpp"

#include <vector>

namespace vessel::gst {
namespace {

constexpr std::size_t kBufferBytes = 64 * 1024;

struct StreamState {
  std::unique_ptr<ObjectWriter> writer;
  std::string key;
  StreamClosedFn on_closed;
  CommitOnRelease commit_on_release;
  std::vector<std::byte> buffer;
  bool closed = false;
  bool reported = false;

  // Reports the outcome exactly once (first failure, or the close).
  void report(const Result<void>& result) {
    if (reported) return;
    reported = true;
    if (on_closed) on_closed(key, writer->bytesWritten(), result);
  }
};

struct VesselStorageStream {
  GOutputStream parent;
  StreamState* state;
};

struct VesselStorageStreamClass {
  GOutputStreamClass parent_class;
};

GType vessel_storage_stream_get_type();
G_DEFINE_TYPE(VesselStorageStream, vessel_storage_stream, G_TYPE_OUTPUT_STREAM)

GQuark errorQuark() { return g_quark_from_static_string("vessel-storage-error"); }

bool flushBuffer(StreamState* st, GError** error) {
  if (st->buffer.empty()) return true;
  Result<void> r = st->writer->write(st->buffer);
  st->buffer.clear();
  if (!r.ok()) {
    st->report(r);
    g_set_error(error, errorQuark(), static_cast<int>(r.error().code), "%s",
                r.error().message.c_str());
    return false;
  }
  return true;
}

gssize writeFn(GOutputStream* stream, const void* data, gsize count, GCancellable* /*c*/,
               GError** error) {
  StreamState* st = reinterpret_cast<VesselStorageStream*>(stream)->state;
  const auto* bytes = static_cast<const std::byte*>(data);
  if (st->buffer.size() + count > kBufferBytes) {
    if (!flushBuffer(st, error)) return -1;
  }
  if (count >= kBufferBytes) {
    Result<void> r = st->writer->write({bytes, count});
    if (!r.ok()) {
      st->report(r);
      g_set_error(error, errorQuark(), static_cast<int>(r.error().code), "%s",
                  r.error().message.c_str());
      return -1;
    }
    return static_cast<gssize>(count);
  }
  st->buffer.insert(st->buffer.end(), bytes, bytes + count);
  return static_cast<gssize>(count);
}

gboolean flushFn(GOutputStream* stream, GCancellable* /*c*/, GError** error) {
  return flushBuffer(reinterpret_cast<VesselStorageStream*>(stream)->state, error);
}

gboolean closeFn(GOutputStream* stream, GCancellable* /*c*/, GError** error) {
  StreamState* st = reinterpret_cast<VesselStorageStream*>(stream)->state;
  if (st->closed) return TRUE;
  st->closed = true;
  GError* flush_error = nullptr;
  Result<void> result;
  if (!flushBuffer(st, &flush_error)) {
    result = Error{ErrorCode::kInternal, flush_error->message};
    g_propagate_error(error, flush_error);
    st->writer->abort();
  } else if (st->commit_on_release && !st->commit_on_release->load()) {
    // The owner has given up on this output (failure, cancel): never publish it.
    st->writer->abort();
    result = Error{ErrorCode::kCancelled, "'" + st->key + "' discarded"};
  } else {
    result = st->writer->commit();
    if (!result.ok()) {
      g_set_error(error, errorQuark(), static_cast<int>(result.error().code), "%s",
                  result.error().message.c_str());
    }
  }
  st->report(result);
  return result.ok();
}

void finalizeFn(GObject* object) {
  auto* self = reinterpret_cast<VesselStorageStream*>(object);
  if (self->state) {
    StreamState* st = self->state;
    if (!st->closed) {
      st->closed = true;
      if (st->commit_on_release && st->commit_on_release->load() && !st->reported) {
        GError* error = nullptr;
        if (flushBuffer(st, &error)) {
          st->report(st->writer->commit());
        } else {
          g_clear_error(&error);  // flushBuffer already reported it
          st->writer->abort();
        }
      } else {
        st->writer->abort();
        st->report(Error{ErrorCode::kCancelled, "'" + st->key + "' discarded"});
      }
    }
    delete self->state;
    self->state = nullptr;
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
                                      StreamClosedFn on_closed, CommitOnRelease commit_on_release) {
  auto* stream =
      static_cast<VesselStorageStream*>(g_object_new(vessel_storage_stream_get_type(), nullptr));
  stream->state = new StreamState{std::move(writer),
                                  std::move(key),
                                  std::move(on_closed),
                                  std::move(commit_on_release),
                                  {},
                                  false,
                                  false};
  stream->state->buffer.reserve(kBufferBytes);
  return G_OUTPUT_STREAM(stream);
}

}  // namespace vessel::gst
