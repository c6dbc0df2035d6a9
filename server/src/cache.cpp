#include "cache.hpp"

namespace vessel::server {

namespace {

// Refresh-ahead (cache.hpp): whether `requester` is to refresh an entry stored
// at `stored`, marking it when it is the first to find it due.
bool refreshes(const void*& refresher, std::chrono::steady_clock::time_point stored,
               std::chrono::milliseconds ttl, std::chrono::steady_clock::time_point now,
               const void* requester) {
  if (!requester || now - stored < ttl * 3 / 4) return false;
  if (!refresher) refresher = requester;
  return refresher == requester;
}

}  // namespace

// --- LibraryCache ----------------------------------------------------------------

std::uint64_t LibraryCache::generationLocked(const std::string& user_id) const {
  auto it = generations_.find(user_id);
  return epoch_ + (it == generations_.end() ? 0 : it->second);
}

std::optional<std::uint64_t> LibraryCache::begin(const std::string& user_id) {
  if (!enabled()) return std::nullopt;
  std::lock_guard lock(mu_);
  if (!live_) return std::nullopt;
  return generationLocked(user_id);
}

std::optional<std::string> LibraryCache::get(const std::string& user_id, const std::string& key,
                                             const void* requester) {
  if (!enabled()) return std::nullopt;
  std::lock_guard lock(mu_);
  if (!live_) return std::nullopt;
  auto it = pages_.find(key);
  if (it == pages_.end()) return std::nullopt;
  const auto now = std::chrono::steady_clock::now();
  if (it->second.generation != generationLocked(user_id) || now - it->second.stored > ttl_) {
    bytes_ -= it->second.text.size() + key.size();
    pages_.erase(it);
    return std::nullopt;
  }
  if (refreshes(it->second.refresher, it->second.stored, ttl_, now, requester)) return std::nullopt;
  return it->second.text;
}

void LibraryCache::put(const std::string& user_id, const std::string& key, std::uint64_t generation,
                       std::string text) {
  if (!enabled()) return;
  std::lock_guard lock(mu_);
  // A change arrived while the page was read: it may already be stale.
  if (!live_ || generation != generationLocked(user_id)) return;
  const std::size_t size = text.size() + key.size();
  if (size > max_bytes_ / 16) return;
  if (bytes_ + size > max_bytes_) {  // full: start over (cheap, and rare)
    pages_.clear();
    bytes_ = 0;
  }
  auto [it, inserted] = pages_.try_emplace(key);
  if (!inserted) bytes_ -= it->second.text.size() + key.size();
  it->second = Entry{std::move(text), generation, std::chrono::steady_clock::now(), nullptr};
  bytes_ += size;
}

void LibraryCache::invalidate(std::string_view user_id) {
  if (!enabled()) return;
  std::lock_guard lock(mu_);
  auto [it, inserted] = generations_.try_emplace(std::string(user_id), 0);
  ++it->second;
  // Keep the map bounded: users with no cached page need no generation, but
  // dropping one must not make an old page look current again, so start over.
  if (generations_.size() > 100000) {
    generations_.clear();
    pages_.clear();
    bytes_ = 0;
    ++epoch_;
  }
}

void LibraryCache::setLive(bool live) {
  if (!enabled()) return;
  std::lock_guard lock(mu_);
  if (live_ == live) return;
  live_ = live;
  pages_.clear();
  bytes_ = 0;
  ++epoch_;
}

// --- SessionCache ------------------------------------------------------------------

std::optional<AuthUser> SessionCache::get(const std::string& key, const void* requester) {
  if (!enabled() || key.empty()) return std::nullopt;
  std::lock_guard lock(mu_);
  auto it = sessions_.find(key);
  if (it == sessions_.end()) return std::nullopt;
  const auto now = std::chrono::steady_clock::now();
  if (now - it->second.stored >= ttl_) {
    sessions_.erase(it);
    return std::nullopt;
  }
  if (refreshes(it->second.refresher, it->second.stored, ttl_, now, requester)) return std::nullopt;
  return it->second.user;
}

std::uint64_t SessionCache::begin() {
  std::lock_guard lock(mu_);
  return revocations_;
}

void SessionCache::put(const std::string& key, const AuthUser& user, std::uint64_t snapshot) {
  if (!enabled() || key.empty()) return;
  std::lock_guard lock(mu_);
  if (snapshot != revocations_) return;
  if (sessions_.size() >= max_entries_) sessions_.clear();
  sessions_[key] = Entry{user, std::chrono::steady_clock::now(), nullptr};
}

void SessionCache::revoke(const std::string& key) {
  std::lock_guard lock(mu_);
  ++revocations_;
  sessions_.erase(key);
}

}  // namespace vessel::server
