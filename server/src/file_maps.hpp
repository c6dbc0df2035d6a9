// Read-only mappings of local files, kept and reused across requests: serving
// a segment from a cached mapping costs no mmap, no page faults and no munmap
// (whose TLB shootdown interrupts every other thread of the process), where a
// mapping per request spent more time in those than in the copy to the socket
// (bench/server, perf record).
//
// A mapping is reused only for the same file: same device, inode, size and
// modification time, read with fstat from the descriptor the caller opened.
// Storage replaces files by rename, never rewrites them in place, so a new
// file is a new inode. Mappings idle for `idle` are dropped (a deleted file's
// space returns to the filesystem once its mapping goes), and the total mapped
// is kept under `max_bytes` by dropping the least recently used first.
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

namespace vessel::server {

class FileMaps {
 public:
  explicit FileMaps(std::size_t max_bytes = 256u << 20,
                    std::chrono::milliseconds idle = std::chrono::seconds(30))
      : max_bytes_(max_bytes), idle_(idle) {}

  struct Mapped {
    std::shared_ptr<const char> bytes;  ///< the whole file; alive while this is
    std::uint64_t size = 0;
  };
  /// The file open as `fd`, mapped whole; bytes is null when the file is
  /// empty, larger than max_bytes, or mmap refuses (the caller then reads).
  Mapped map(int fd);
  /// The same, for a caller that has already fstat()ed `fd` into `st`.
  Mapped map(int fd, const struct stat& st);

  std::size_t mappedBytes() const;
  std::size_t entries() const;

 private:
  using Id = std::tuple<std::uint64_t, std::uint64_t, std::uint64_t, std::int64_t, std::int64_t>;
  struct Entry {
    Mapped mapped;
    std::chrono::steady_clock::time_point used;
  };
  void dropIdleLocked(std::chrono::steady_clock::time_point now);
  void makeRoomLocked(std::size_t size);

  const std::size_t max_bytes_;
  const std::chrono::milliseconds idle_;
  mutable std::mutex mu_;
  std::map<Id, Entry> entries_;
  std::size_t bytes_ = 0;
  std::chrono::steady_clock::time_point last_sweep_{};
};

}  // namespace vessel::server
