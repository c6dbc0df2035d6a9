// The server's read caches (cache.hpp): refresh-ahead hands the refresh of an
// entry near the end of its life to exactly one request while every other
// request keeps using it, and nothing is ever used past its ttl or after a
// change or logout.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "cache.hpp"

namespace {

using vessel::AuthUser;
using vessel::server::LibraryCache;
using vessel::server::SessionCache;
using namespace std::chrono_literals;

constexpr auto kTtl = 400ms;
constexpr auto kDue = 320ms;  // past 3/4 of the ttl, before its end

TEST(LibraryCacheTest, OneRequestRefreshesADuePageWhileTheOthersUseIt) {
  LibraryCache cache(kTtl);
  cache.setLive(true);
  const int a = 0, b = 0, c = 0;
  cache.put("u", "u/page", *cache.begin("u"), "v1");
  EXPECT_EQ(cache.get("u", "u/page", &a), "v1");  // young: nobody refreshes
  EXPECT_EQ(cache.get("u", "u/page", &b), "v1");
  std::this_thread::sleep_for(kDue);
  EXPECT_EQ(cache.get("u", "u/page", &a), std::nullopt);  // a refreshes ...
  EXPECT_EQ(cache.get("u", "u/page", &a), std::nullopt);  // ... also from its handler
  EXPECT_EQ(cache.get("u", "u/page", &b), "v1");          // the rest keep the page
  EXPECT_EQ(cache.get("u", "u/page", &c), "v1");
  EXPECT_EQ(cache.get("u", "u/page"), "v1");
  cache.put("u", "u/page", *cache.begin("u"), "v2");
  EXPECT_EQ(cache.get("u", "u/page", &b), "v2");
  EXPECT_EQ(cache.get("u", "u/page", &a), "v2");  // young again: a no longer refreshes
}

TEST(LibraryCacheTest, NothingIsUsedPastItsTtlOrAfterAChange) {
  LibraryCache cache(kTtl);
  cache.setLive(true);
  const int a = 0, b = 0;
  cache.put("u", "u/page", *cache.begin("u"), "v1");
  std::this_thread::sleep_for(kDue);
  EXPECT_EQ(cache.get("u", "u/page", &a), std::nullopt);  // a's refresh never comes back
  EXPECT_EQ(cache.get("u", "u/page", &b), "v1");
  std::this_thread::sleep_for(kTtl - kDue + 20ms);
  EXPECT_EQ(cache.get("u", "u/page", &b), std::nullopt);  // expired for everyone
  EXPECT_EQ(cache.get("u", "u/page"), std::nullopt);

  cache.put("u", "u/page", *cache.begin("u"), "v2");
  std::this_thread::sleep_for(kDue);
  EXPECT_EQ(cache.get("u", "u/page", &a), std::nullopt);
  cache.invalidate("u");  // the library changed: nobody gets v2, not even later
  EXPECT_EQ(cache.get("u", "u/page", &b), std::nullopt);
  EXPECT_EQ(cache.get("u", "u/page"), std::nullopt);
}

TEST(LibraryCacheTest, ARefreshThatRacedAChangeIsNotStored) {
  LibraryCache cache(kTtl);
  cache.setLive(true);
  const int a = 0, b = 0;
  cache.put("u", "u/page", *cache.begin("u"), "v1");
  std::this_thread::sleep_for(kDue);
  EXPECT_EQ(cache.get("u", "u/page", &a), std::nullopt);
  const auto generation = cache.begin("u");  // a starts reading the database
  cache.invalidate("u");                     // a change lands meanwhile
  cache.put("u", "u/page", *generation, "v1-read-before-the-change");
  EXPECT_EQ(cache.get("u", "u/page", &b), std::nullopt);
}

TEST(SessionCacheTest, OneRequestRefreshesADueSessionWhileTheOthersUseIt) {
  SessionCache cache(kTtl);
  const AuthUser alice{"id-a", "alice@example.com"};
  const int a = 0, b = 0;
  cache.put("b:t", alice, cache.begin());
  std::this_thread::sleep_for(kDue);
  EXPECT_FALSE(cache.get("b:t", &a));  // a looks the token up
  auto other = cache.get("b:t", &b);
  ASSERT_TRUE(other);
  EXPECT_EQ(other->id, "id-a");
  cache.put("b:t", alice, cache.begin());
  EXPECT_TRUE(cache.get("b:t", &a));
  std::this_thread::sleep_for(kTtl + 20ms);
  EXPECT_FALSE(cache.get("b:t", &b));  // nobody refreshed: expired for everyone
}

TEST(SessionCacheTest, ALogoutEndsADueSessionForEveryone) {
  SessionCache cache(kTtl);
  const AuthUser alice{"id-a", "alice@example.com"};
  const int a = 0, b = 0;
  cache.put("b:t", alice, cache.begin());
  std::this_thread::sleep_for(kDue);
  const auto snapshot = cache.begin();
  EXPECT_FALSE(cache.get("b:t", &a));  // a refreshes ...
  cache.revoke("b:t");                 // ... while the session is logged out
  cache.put("b:t", alice, snapshot);   // a's lookup raced the logout: not stored
  EXPECT_FALSE(cache.get("b:t", &b));
  EXPECT_FALSE(cache.get("b:t"));
}

}  // namespace
