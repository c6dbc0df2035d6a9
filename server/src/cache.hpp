// Two short-lived read caches in front of PostgreSQL for the hottest requests
// (bench/server): the session behind a token, and the text of library pages.
//
// Coherence:
// - Sessions: a positive lookup of a token is reused for `ttl`; a logout
//   through this server drops it at once; one through another server takes
//   effect within `ttl` (server.session_cache_ms). Unknown tokens are never
//   cached. Cached sessions let a cached library page be answered on the
//   loop thread (http::Server::fastPath).
// - Library pages: every change a page shows (insert, delete, status, error,
//   metadata, job progress) is in the upload change feed (migration 0005), which
//   the EventHub LISTENs to from any server; each change bumps its user's
//   generation and so drops that user's pages. Writes made here bump it too,
//   before they answer. A page is only cached while the listener is connected
//   (otherwise changes could be missed) and for at most `ttl`
//   (server.library_cache_ms), which bounds what the feed does not carry
//   (updated_at of a content-state change).
//
// Refresh-ahead: nothing is ever used past its ttl, but an entry in the last
// quarter of its life is refreshed by exactly one request, the first to see it
// there (get() with that request as `requester` answers it nullopt; the route
// then reads the database and puts). Every other request keeps using the entry,
// so an entry everyone uses does not expire under load and send them all to the
// database at once (bench/server: that herd every second set the p99). The
// same request asking again (its fast path, then its handler) is told nullopt
// again; a refresher that never puts leaves the entry to expire as usual.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "vessel/auth.hpp"

namespace vessel::server {

class LibraryCache {
 public:
  explicit LibraryCache(std::chrono::milliseconds ttl, std::size_t max_bytes = 16u << 20)
      : ttl_(ttl), max_bytes_(max_bytes) {}

  bool enabled() const { return ttl_.count() > 0; }

  /// The generation to pass to put() for a page about to be read from the
  /// database; nullopt when pages must not be cached now.
  std::optional<std::uint64_t> begin(const std::string& user_id);
  /// The cached text of `key` (which must start with the user id), if fresh
  /// and not to be refreshed by `requester` (see refresh-ahead above; nullptr
  /// never refreshes).
  std::optional<std::string> get(const std::string& user_id, const std::string& key,
                                 const void* requester = nullptr);
  void put(const std::string& user_id, const std::string& key, std::uint64_t generation,
           std::string text);

  /// Something of `user_id`'s library changed.
  void invalidate(std::string_view user_id);
  /// Whether the change feed is being received; every page is dropped on a change.
  void setLive(bool live);

 private:
  struct Entry {
    std::string text;
    std::uint64_t generation = 0;
    std::chrono::steady_clock::time_point stored;
    const void* refresher = nullptr;  ///< the request refreshing it, once due
  };
  std::uint64_t generationLocked(const std::string& user_id) const;

  const std::chrono::milliseconds ttl_;
  const std::size_t max_bytes_;
  std::mutex mu_;
  bool live_ = false;
  std::uint64_t epoch_ = 1;  ///< bumped on setLive: drops every page at once
  std::unordered_map<std::string, std::uint64_t> generations_;
  std::unordered_map<std::string, Entry> pages_;
  std::size_t bytes_ = 0;
};

/// Who a session token belongs to, reused for `ttl` (keys: "b:" + bearer token
/// or "c:" + cookie token). Only successful lookups are stored.
class SessionCache {
 public:
  explicit SessionCache(std::chrono::milliseconds ttl, std::size_t max_entries = 100000)
      : ttl_(ttl), max_entries_(max_entries) {}

  bool enabled() const { return ttl_.count() > 0; }
  /// The session of `key`, if fresh and not to be refreshed by `requester`
  /// (see refresh-ahead above; nullptr never refreshes).
  std::optional<AuthUser> get(const std::string& key, const void* requester = nullptr);
  /// A snapshot to pass to put() for a lookup about to be made.
  std::uint64_t begin();
  /// Stores unless a revocation happened since `snapshot` (the lookup may have
  /// raced a logout).
  void put(const std::string& key, const AuthUser& user, std::uint64_t snapshot);
  /// After a logout: forgets `key` and refuses puts of lookups already under way.
  void revoke(const std::string& key);

 private:
  struct Entry {
    AuthUser user;
    std::chrono::steady_clock::time_point stored;
    const void* refresher = nullptr;  ///< the request refreshing it, once due
  };
  const std::chrono::milliseconds ttl_;
  const std::size_t max_entries_;
  std::mutex mu_;
  std::uint64_t revocations_ = 0;
  std::unordered_map<std::string, Entry> sessions_;
};

}  // namespace vessel::server
