// FileMaps (file_maps.hpp): a file's mapping is reused while it is the same
// file, a file replaced by rename (as storage replaces files) gets a new one,
// and the mapped total stays bounded.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "file_maps.hpp"

namespace {

using vessel::server::FileMaps;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

class FileMapsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vessel-file-maps-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Written to a temp name and renamed over `name`, as storage-local does.
  fs::path write(const std::string& name, const std::string& bytes) {
    const fs::path tmp = dir_ / (name + ".tmp");
    std::ofstream(tmp, std::ios::binary) << bytes;
    fs::rename(tmp, dir_ / name);
    return dir_ / name;
  }
  static std::string viewOf(const FileMaps::Mapped& m) {
    return m.bytes ? std::string(m.bytes.get(), m.size) : std::string();
  }
  struct Fd {
    int fd;
    explicit Fd(const fs::path& p) : fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC)) {}
    ~Fd() {
      if (fd >= 0) ::close(fd);
    }
  };
  fs::path dir_;
};

TEST_F(FileMapsTest, TheSameFileIsMappedOnce) {
  FileMaps maps;
  const fs::path p = write("segment_000.ts", std::string(5000, 'a'));
  FileMaps::Mapped first, second;
  {
    Fd fd(p);
    first = maps.map(fd.fd);
  }
  {
    Fd fd(p);  // another request, another descriptor
    second = maps.map(fd.fd);
  }
  ASSERT_TRUE(first.bytes);
  EXPECT_EQ(first.bytes.get(), second.bytes.get());
  EXPECT_EQ(viewOf(second), std::string(5000, 'a'));
  EXPECT_EQ(maps.entries(), 1u);
  EXPECT_EQ(maps.mappedBytes(), 5000u);
}

TEST_F(FileMapsTest, AFileReplacedByRenameIsMappedAnew) {
  FileMaps maps;
  const fs::path p = write("playlist.m3u8", "old contents");
  FileMaps::Mapped before;
  {
    Fd fd(p);
    before = maps.map(fd.fd);
  }
  write("playlist.m3u8", "new contents");  // same size, new inode
  FileMaps::Mapped after;
  {
    Fd fd(p);
    after = maps.map(fd.fd);
  }
  EXPECT_EQ(viewOf(after), "new contents");
  EXPECT_EQ(viewOf(before), "old contents");  // still valid for whoever holds it
  EXPECT_NE(before.bytes.get(), after.bytes.get());
}

TEST_F(FileMapsTest, TheMappedTotalStaysBoundedAndIdleMappingsGo) {
  FileMaps maps(10000, 200ms);
  for (int i = 0; i < 5; ++i) {
    Fd fd(write("s" + std::to_string(i), std::string(4000, static_cast<char>('a' + i))));
    EXPECT_TRUE(maps.map(fd.fd).bytes);
    EXPECT_LE(maps.mappedBytes(), 10000u);
  }
  EXPECT_EQ(maps.entries(), 2u);  // 2 x 4000 fit under 10000
  {
    Fd fd(write("big", std::string(20000, 'z')));  // over the whole budget: not kept
    EXPECT_FALSE(maps.map(fd.fd).bytes);
  }
  {
    Fd fd(write("empty", ""));
    EXPECT_FALSE(maps.map(fd.fd).bytes);
  }
  std::this_thread::sleep_for(1200ms);  // idle past 200 ms; sweeps run at most once a second
  Fd fd(write("fresh", "x"));
  EXPECT_TRUE(maps.map(fd.fd).bytes);
  EXPECT_EQ(maps.entries(), 1u);
  EXPECT_EQ(maps.mappedBytes(), 1u);
}

}  // namespace
