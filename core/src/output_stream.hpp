// A GOutputStream that writes into a storage ObjectWriter, so GStreamer sinks
// (hlssink2's giostreamsink) write through the storage plugin instead of files.
#pragma once

#include <gio/gio.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "vessel/storage.hpp"

namespace vessel::gst {

/// Called exactly once per stream: at close with the commit's result, or earlier
/// with the first write failure, or at destruction if it was never closed.
using StreamClosedFn =
    std::function<void(const std::string& key, std::uint64_t bytes, const Result<void>& result)>;

/// Decides, when a stream is released without close(), whether what it holds is
/// complete. hlssink2's giostreamsink never closes its streams: it drops each one
/// when the next fragment starts (after the sink has written every byte of it)
/// and the last one at teardown. The owner clears the flag when the job fails so
/// nothing partial is committed.
using CommitOnRelease = std::shared_ptr<std::atomic<bool>>;

/// Returns a new GOutputStream (full reference, caller owns) that buffers writes
/// (64 KiB) into `writer`. close(), or release without close, commits only while
/// `*commit_on_release` is true, and aborts otherwise.
GOutputStream* newStorageOutputStream(std::unique_ptr<ObjectWriter> writer, std::string key,
                                      StreamClosedFn on_closed, CommitOnRelease commit_on_release);

}  // namespace vessel::gst
