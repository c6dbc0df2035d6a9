// Thin RAII over the GStreamer C API.
//
// Two owning smart pointers: GRef<T> for anything derived from GObject (GstObject,
// GstElement, GstBus, GstDiscoverer, GOutputStream, ...) and MiniRef<T> for
// GstMiniObject types (GstCaps, GstBuffer, GstMessage, ...). Taking ownership of a
// reference we already hold (`adoptRef`) and adding one (`retainRef`) are distinct,
// named operations; a floating reference (a freshly made element) can only be taken
// with `sinkRef`, and adoptRef asserts the pointer is not floating, like WebKit's
// GRefPtr. No implicit conversions to raw pointers: use get().
#pragma once

#include <gst/gst.h>

#include <cassert>
#include <stdexcept>
#include <string>
#include <utility>

namespace vessel::gst {

template <typename T>
class GRef {
 public:
  GRef() = default;
  GRef(std::nullptr_t) {}  // NOLINT(google-explicit-constructor)
  GRef(const GRef& other) : ptr_(other.ptr_) {
    if (ptr_) g_object_ref(ptr_);
  }
  GRef(GRef&& other) noexcept : ptr_(std::exchange(other.ptr_, nullptr)) {}
  GRef& operator=(GRef other) noexcept {
    std::swap(ptr_, other.ptr_);
    return *this;
  }
  ~GRef() {
    if (ptr_) g_object_unref(ptr_);
  }

  T* get() const noexcept { return ptr_; }
  T* operator->() const noexcept { return ptr_; }
  explicit operator bool() const noexcept { return ptr_ != nullptr; }
  /// Gives up ownership; the caller now holds the reference.
  [[nodiscard]] T* release() noexcept { return std::exchange(ptr_, nullptr); }

  template <typename U>
  friend GRef<U> adoptRef(U* ptr) noexcept;
  template <typename U>
  friend GRef<U> sinkRef(U* ptr) noexcept;
  template <typename U>
  friend GRef<U> retainRef(U* ptr) noexcept;

 private:
  T* ptr_ = nullptr;
};

/// Takes over a full (non-floating) reference we already own, e.g. from gst_bin_get_by_name.
template <typename U>
GRef<U> adoptRef(U* ptr) noexcept {
  assert(!ptr || !g_object_is_floating(ptr));
  GRef<U> ref;
  ref.ptr_ = ptr;
  return ref;
}

/// Takes a freshly created object: sinks a floating reference, or adopts a full one.
template <typename U>
GRef<U> sinkRef(U* ptr) noexcept {
  GRef<U> ref;
  // ref_sink on a floating object converts the floating ref into ours; on a
  // non-floating (already owned) one it would add a second ref, so adopt instead.
  if (ptr && g_object_is_floating(ptr)) {
    ref.ptr_ = static_cast<U*>(g_object_ref_sink(ptr));
  } else {
    ref.ptr_ = ptr;
  }
  return ref;
}

/// Adds a reference to an object owned elsewhere (e.g. a borrowed pointer).
template <typename U>
GRef<U> retainRef(U* ptr) noexcept {
  GRef<U> ref;
  if (ptr) ref.ptr_ = static_cast<U*>(g_object_ref(ptr));
  return ref;
}

template <typename T>
class MiniRef {
 public:
  MiniRef() = default;
  MiniRef(std::nullptr_t) {}  // NOLINT(google-explicit-constructor)
  MiniRef(const MiniRef& other) : ptr_(other.ptr_) {
    if (ptr_) gst_mini_object_ref(GST_MINI_OBJECT_CAST(ptr_));
  }
  MiniRef(MiniRef&& other) noexcept : ptr_(std::exchange(other.ptr_, nullptr)) {}
  MiniRef& operator=(MiniRef other) noexcept {
    std::swap(ptr_, other.ptr_);
    return *this;
  }
  ~MiniRef() {
    if (ptr_) gst_mini_object_unref(GST_MINI_OBJECT_CAST(ptr_));
  }
  T* get() const noexcept { return ptr_; }
  explicit operator bool() const noexcept { return ptr_ != nullptr; }
  [[nodiscard]] T* release() noexcept { return std::exchange(ptr_, nullptr); }

  static MiniRef adopt(T* ptr) noexcept {
    MiniRef ref;
    ref.ptr_ = ptr;
    return ref;
  }
  static MiniRef retain(T* ptr) noexcept {
    MiniRef ref;
    if (ptr) ref.ptr_ = reinterpret_cast<T*>(gst_mini_object_ref(GST_MINI_OBJECT_CAST(ptr)));
    return ref;
  }

 private:
  T* ptr_ = nullptr;
};

using ElementRef = GRef<GstElement>;
using PadRef = GRef<GstPad>;
using BusRef = GRef<GstBus>;
using CapsRef = MiniRef<GstCaps>;
using MessageRef = MiniRef<GstMessage>;

/// A GStreamer failure as a C++ error: which element, GStreamer's message and its
/// debug string. Thrown only inside the core; converted to Result at the API edge.
class GstError : public std::runtime_error {
 public:
  GstError(std::string element, std::string message, std::string debug);
  const std::string& element() const noexcept { return element_; }
  const std::string& debug() const noexcept { return debug_; }
  const std::string& gstMessage() const noexcept { return message_; }

 private:
  std::string element_, message_, debug_;
};

/// Initialises GStreamer once per process (thread-safe) and registers Vessel's
/// internal elements. Throws GstError if GStreamer cannot start.
void ensureInitialized();

/// gst_element_factory_make that throws a GstError naming the missing plugin.
ElementRef makeElement(const char* factory, const char* name = nullptr);

/// gst_element_link with a GstError naming both elements on failure.
void link(GstElement* src, GstElement* sink);
void linkFiltered(GstElement* src, GstElement* sink, GstCaps* caps);

/// Converts an ERROR/WARNING message into a GstError (element name, message, debug).
GstError errorFromMessage(GstMessage* message);

/// A pipeline that is set to NULL when destroyed (so no thread outlives it).
class Pipeline {
 public:
  explicit Pipeline(const char* name);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  GstElement* element() const noexcept { return pipeline_.get(); }
  GstBin* bin() const noexcept { return GST_BIN(pipeline_.get()); }
  /// Adds an element (the bin takes its own reference).
  void add(const ElementRef& element);
  /// Sets the state; throws GstError with the bus's error if the change fails.
  void setState(GstState state);
  BusRef bus() const;
  /// Current position in ns, or -1.
  gint64 positionNs() const;

 private:
  ElementRef pipeline_;
};

}  // namespace vessel::gst
