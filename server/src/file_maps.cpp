#include "file_maps.hpp"

#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>

namespace vessel::server {

FileMaps::Mapped FileMaps::map(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return {};
  return map(fd, st);
}

FileMaps::Mapped FileMaps::map(int fd, const struct stat& st) {
  if (!S_ISREG(st.st_mode) || st.st_size <= 0) return {};
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size > max_bytes_) return {};
  const Id id{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino), size,
              static_cast<std::int64_t>(st.st_mtim.tv_sec),
              static_cast<std::int64_t>(st.st_mtim.tv_nsec)};
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mu_);
    dropIdleLocked(now);
    if (auto it = entries_.find(id); it != entries_.end()) {
      it->second.used = now;
      return it->second.mapped;
    }
  }
  // Mapped outside the lock; MAP_POPULATE faults it in now, once.
  void* base = ::mmap(nullptr, size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (base == MAP_FAILED) return {};
  Mapped mapped{
      std::shared_ptr<const char>(static_cast<const char*>(base),
                                  [size](const char* p) { ::munmap(const_cast<char*>(p), size); }),
      size};
  std::lock_guard lock(mu_);
  if (auto it = entries_.find(id); it != entries_.end()) {
    it->second.used = now;  // another thread mapped it meanwhile: use that one
    return it->second.mapped;
  }
  makeRoomLocked(size);
  entries_.emplace(id, Entry{mapped, now});
  bytes_ += size;
  return mapped;
}

void FileMaps::dropIdleLocked(std::chrono::steady_clock::time_point now) {
  if (now - last_sweep_ < std::chrono::seconds(1)) return;
  last_sweep_ = now;
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (now - it->second.used > idle_) {
      bytes_ -= it->second.mapped.size;
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
}

void FileMaps::makeRoomLocked(std::size_t size) {
  while (!entries_.empty() && bytes_ + size > max_bytes_) {
    auto oldest = std::min_element(
        entries_.begin(), entries_.end(),
        [](const auto& a, const auto& b) { return a.second.used < b.second.used; });
    bytes_ -= oldest->second.mapped.size;
    entries_.erase(oldest);
  }
}

std::size_t FileMaps::mappedBytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

std::size_t FileMaps::entries() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

}  // namespace vessel::server
