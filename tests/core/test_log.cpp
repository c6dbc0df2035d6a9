// vlog::Context: the fields of the request/job a line is about appear on every
// line written inside it, on this thread only, and go when it ends.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "vessel/log.hpp"

namespace vlog = vessel::log;

namespace {

// Captures what the logger writes to stderr while `fn` runs, one JSON per line.
template <typename Fn>
std::vector<nlohmann::json> captureLines(Fn fn) {
  std::fflush(stderr);
  char path[] = "/tmp/vessel-log-test-XXXXXX";
  const int fd = ::mkstemp(path);
  const int saved = ::dup(2);
  ::dup2(fd, 2);
  fn();
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  std::vector<nlohmann::json> out;
  std::FILE* f = std::fopen(path, "r");
  char line[4096];
  while (f && std::fgets(line, sizeof line, f)) out.push_back(nlohmann::json::parse(line));
  if (f) std::fclose(f);
  ::close(fd);
  ::unlink(path);
  return out;
}

}  // namespace

TEST(LogContext, FieldsOnEveryLineInsideAndNoneAfter) {
  auto lines = captureLines([] {
    {
      vlog::Context request({{"request_id", std::string("r-1")}});
      vlog::info("first");
      vlog::Context::add("user_id", std::string("u-1"));
      {
        vlog::Context job({{"job_id", 42LL}});
        vlog::warn("inner", {{"job_id", 7LL}});  // an explicit field wins
      }
      vlog::info("after inner");
    }
    vlog::info("outside");
    vlog::Context::add("user_id", std::string("ignored"));  // no context: ignored
    vlog::info("still outside");
  });
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0]["request_id"], "r-1");
  EXPECT_FALSE(lines[0].contains("user_id"));
  EXPECT_EQ(lines[1]["request_id"], "r-1");
  EXPECT_EQ(lines[1]["user_id"], "u-1");
  EXPECT_EQ(lines[1]["job_id"], 7);
  EXPECT_EQ(lines[2]["user_id"], "u-1");
  EXPECT_FALSE(lines[2].contains("job_id"));
  for (int i : {3, 4}) {
    EXPECT_FALSE(lines[i].contains("request_id")) << lines[i];
    EXPECT_FALSE(lines[i].contains("user_id")) << lines[i];
  }
}

TEST(LogContext, ThreadsDoNotShareContexts) {
  auto lines = captureLines([] {
    vlog::Context mine({{"request_id", std::string("main")}});
    std::thread([] { vlog::info("other thread"); }).join();
    vlog::info("main thread");
  });
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_FALSE(lines[0].contains("request_id"));
  EXPECT_EQ(lines[1]["request_id"], "main");
}
