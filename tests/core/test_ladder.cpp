// Unit tests for ladder files: the shipped pipelines/*.toml parse to the expected rungs,
// every invalid file is refused with kConfig naming origin:line and the key, and
// findLadder/listLadders search directories safely.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "vessel/ladder.hpp"

namespace vessel {
namespace {

namespace fs = std::filesystem;

fs::path pipelineDir() {
  const char* dir = std::getenv("VESSEL_TEST_PIPELINE_DIR");
  return dir ? fs::path(dir) : fs::path();
}

/// A temporary directory removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "vessel-ladder-XXXXXX").string();
    if (mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void writeFile(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

// Line numbers matter: the error tests below refer to them.
constexpr const char* kValid =
    "name = \"t\"\n"              // 1
    "container = \"mpegts\"\n"    // 2
    "segment_duration_s = 6.0\n"  // 3
    "\n"                          // 4
    "[[rungs]]\n"                 // 5
    "name = \"64k\"\n"            // 6
    "codec = \"aac\"\n"           // 7
    "bitrate_kbps = 64\n"         // 8
    "sample_rate_hz = 44100\n"    // 9
    "channels = 2\n";             // 10

constexpr const char* kSecondRung =
    "\n"                        // 11
    "[[rungs]]\n"               // 12
    "name = \"128k\"\n"         // 13
    "codec = \"aac\"\n"         // 14
    "bitrate_kbps = 128\n"      // 15
    "sample_rate_hz = 44100\n"  // 16
    "channels = 2\n";           // 17

constexpr const char* kOrigin = "t.toml";

/// kValid with the first occurrence of `from` replaced by `to` (same line).
std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const auto pos = text.find(from);
  if (pos == std::string::npos) throw std::logic_error("test text lacks " + from);
  text.replace(pos, from.size(), to);
  return text;
}

std::string valid(const std::string& from, const std::string& to) {
  return replaced(kValid, from, to);
}

/// Parses `text`, expects a kConfig error whose message contains every `needle`.
void expectConfigError(const std::string& text, std::initializer_list<std::string> needles) {
  const Result<Ladder> r = parseLadder(text, kOrigin);
  ASSERT_FALSE(r.ok()) << "accepted:\n" << text;
  EXPECT_EQ(r.error().code, ErrorCode::kConfig) << errorCodeName(r.error().code);
  for (const auto& needle : needles) {
    EXPECT_NE(r.error().message.find(needle), std::string::npos)
        << "message lacks '" << needle << "':\n"
        << r.error().message;
  }
}

// ---- Shipped ladders --------------------------------------------------------

TEST(ShippedLadders, HlsAacHasFourRungs) {
  ASSERT_FALSE(pipelineDir().empty()) << "VESSEL_TEST_PIPELINE_DIR is not set";
  const Result<Ladder> r = loadLadderFile(pipelineDir() / "hls-aac.toml");
  ASSERT_TRUE(r.ok()) << r.error().message;
  const Ladder& l = r.value();
  EXPECT_EQ(l.name, "hls-aac");
  EXPECT_FALSE(l.description.empty());
  EXPECT_EQ(l.container, "mpegts");
  EXPECT_DOUBLE_EQ(l.segment_duration_s, 6.0);
  ASSERT_EQ(l.rungs.size(), 4u);
  const std::vector<std::string> names = {"64k", "128k", "192k", "256k"};
  const std::vector<std::int64_t> bitrates = {64000, 128000, 192000, 256000};
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(l.rungs[i].name, names[i]);
    EXPECT_EQ(l.rungs[i].codec, "aac");
    EXPECT_EQ(l.rungs[i].bitrate_bps, bitrates[i]);
    EXPECT_EQ(l.rungs[i].sample_rate_hz, 44100);
    EXPECT_EQ(l.rungs[i].channels, 2);
  }
}

TEST(ShippedLadders, HlsAacLiteHasTwoRungs) {
  ASSERT_FALSE(pipelineDir().empty()) << "VESSEL_TEST_PIPELINE_DIR is not set";
  const Result<Ladder> r = loadLadderFile(pipelineDir() / "hls-aac-lite.toml");
  ASSERT_TRUE(r.ok()) << r.error().message;
  const Ladder& l = r.value();
  EXPECT_EQ(l.name, "hls-aac-lite");
  EXPECT_EQ(l.container, "mpegts");
  EXPECT_DOUBLE_EQ(l.segment_duration_s, 4.0);
  ASSERT_EQ(l.rungs.size(), 2u);
  EXPECT_EQ(l.rungs[0].name, "48k");
  EXPECT_EQ(l.rungs[0].bitrate_bps, 48000);
  EXPECT_EQ(l.rungs[1].name, "96k");
  EXPECT_EQ(l.rungs[1].bitrate_bps, 96000);
}

TEST(ShippedLadders, FoundByNameAndListed) {
  ASSERT_FALSE(pipelineDir().empty()) << "VESSEL_TEST_PIPELINE_DIR is not set";
  const Result<Ladder> r = findLadder("hls-aac", {pipelineDir()});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value().rungs.size(), 4u);
  const auto names = listLadders({pipelineDir()});
  EXPECT_NE(std::find(names.begin(), names.end(), "hls-aac"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "hls-aac-lite"), names.end());
}

// ---- Valid text -------------------------------------------------------------

TEST(ParseLadder, MinimalValidText) {
  const Result<Ladder> r = parseLadder(std::string(kValid) + kSecondRung, kOrigin);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value().name, "t");
  EXPECT_EQ(r.value().description, "");  // optional
  ASSERT_EQ(r.value().rungs.size(), 2u);
  EXPECT_EQ(r.value().rungs[1].name, "128k");
  EXPECT_EQ(r.value().rungs[1].bitrate_bps, 128000);
}

TEST(ParseLadder, AcceptsRangeBoundaries) {
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"bitrate_kbps = 64", "bitrate_kbps = 8"},
           {"bitrate_kbps = 64", "bitrate_kbps = 1024"},
           {"sample_rate_hz = 44100", "sample_rate_hz = 8000"},
           {"sample_rate_hz = 44100", "sample_rate_hz = 96000"},
           {"channels = 2", "channels = 1"},
           {"channels = 2", "channels = 8"},
           {"segment_duration_s = 6.0", "segment_duration_s = 1.0"},
           {"segment_duration_s = 6.0", "segment_duration_s = 60"},
           {"segment_duration_s = 6.0", "segment_duration_s = 6"},
           {"name = \"64k\"", "name = \"Hi-Fi_320\""}}) {
    const Result<Ladder> r = parseLadder(valid(from, to), kOrigin);
    EXPECT_TRUE(r.ok()) << to << ": " << r.error().message;
  }
}

// ---- Errors: each names origin:line and the key -------------------------------

TEST(ParseLadder, RungOptionsAreStringsForTheCodec) {
  const Result<Ladder> r =
      parseLadder(std::string(kValid) + "options = { coder = \"fast\" }\n", kOrigin);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const std::map<std::string, std::string> want = {{"coder", "fast"}};
  EXPECT_EQ(r.value().rungs[0].options, want);
  EXPECT_TRUE(parseLadder(kValid, kOrigin).value().rungs[0].options.empty());
}

TEST(ParseLadderErrors, RungOptionsMustBeATableOfStrings) {
  expectConfigError(std::string(kValid) + "options = { coder = 2 }\n",
                    {"t.toml:11:", "rungs[0].options.coder", "expected a string"});
  expectConfigError(std::string(kValid) + "options = \"fast\"\n",
                    {"t.toml:11:", "rungs[0].options", "expected a table"});
}

TEST(ParseLadderErrors, UnknownTopLevelKey) {
  expectConfigError(std::string("colour = \"red\"\n") + kValid, {"t.toml:1:", "'colour'"});
}

TEST(ParseLadderErrors, UnknownRungKey) {
  expectConfigError(std::string(kValid) + "volume = 11\n", {"t.toml:11:", "rungs[0].volume"});
}

TEST(ParseLadderErrors, MissingRungs) {
  expectConfigError("name = \"t\"\ncontainer = \"mpegts\"\nsegment_duration_s = 6.0\n",
                    {"t.toml", "[[rungs]]"});
}

TEST(ParseLadderErrors, EmptyRungsArray) {
  expectConfigError("name = \"t\"\ncontainer = \"mpegts\"\nsegment_duration_s = 6.0\nrungs = []\n",
                    {"t.toml:4:", "rungs"});
}

TEST(ParseLadderErrors, RungThatIsNotATable) {
  expectConfigError("name = \"t\"\ncontainer = \"mpegts\"\nsegment_duration_s = 6.0\nrungs = [1]\n",
                    {"t.toml:4:", "rungs[0]", "table"});
}

TEST(ParseLadderErrors, MissingRequiredKeys) {
  expectConfigError(valid("name = \"t\"\n", "\n"), {"t.toml", "missing key 'name'"});
  expectConfigError(valid("container = \"mpegts\"\n", "\n"), {"t.toml", "missing key 'container'"});
  expectConfigError(valid("segment_duration_s = 6.0\n", "\n"),
                    {"t.toml", "missing key 'segment_duration_s'"});
  expectConfigError(valid("codec = \"aac\"\n", "\n"), {"t.toml", "missing key 'rungs[0].codec'"});
  expectConfigError(valid("channels = 2\n", "\n"), {"t.toml", "missing key 'rungs[0].channels'"});
}

TEST(ParseLadderErrors, BitrateAsStringIsWrongType) {
  expectConfigError(valid("bitrate_kbps = 64", "bitrate_kbps = \"64\""),
                    {"t.toml:8:", "rungs[0].bitrate_kbps", "integer"});
}

TEST(ParseLadderErrors, OtherWrongTypes) {
  expectConfigError(valid("name = \"t\"", "name = 3"), {"t.toml:1:", "'name'", "string"});
  expectConfigError(valid("channels = 2", "channels = 2.0"),
                    {"t.toml:10:", "rungs[0].channels", "integer"});
  expectConfigError(valid("segment_duration_s = 6.0", "segment_duration_s = \"6\""),
                    {"t.toml:3:", "segment_duration_s", "number"});
  expectConfigError(valid("codec = \"aac\"", "codec = true"),
                    {"t.toml:7:", "rungs[0].codec", "string"});
}

TEST(ParseLadderErrors, BitrateOutOfRange) {
  expectConfigError(valid("bitrate_kbps = 64", "bitrate_kbps = 7"),
                    {"t.toml:8:", "rungs[0].bitrate_kbps", "out of range"});
  expectConfigError(valid("bitrate_kbps = 64", "bitrate_kbps = 1025"),
                    {"t.toml:8:", "rungs[0].bitrate_kbps", "out of range"});
  expectConfigError(valid("bitrate_kbps = 64", "bitrate_kbps = -64"),
                    {"t.toml:8:", "rungs[0].bitrate_kbps", "out of range"});
}

TEST(ParseLadderErrors, SampleRateOutOfRange) {
  expectConfigError(valid("sample_rate_hz = 44100", "sample_rate_hz = 7999"),
                    {"t.toml:9:", "rungs[0].sample_rate_hz", "out of range"});
  expectConfigError(valid("sample_rate_hz = 44100", "sample_rate_hz = 192000"),
                    {"t.toml:9:", "rungs[0].sample_rate_hz", "out of range"});
}

TEST(ParseLadderErrors, ChannelsOutOfRange) {
  expectConfigError(valid("channels = 2", "channels = 0"),
                    {"t.toml:10:", "rungs[0].channels", "out of range"});
  expectConfigError(valid("channels = 2", "channels = 9"),
                    {"t.toml:10:", "rungs[0].channels", "out of range"});
}

TEST(ParseLadderErrors, DuplicateRungNames) {
  const std::string text =
      std::string(kValid) + replaced(kSecondRung, "name = \"128k\"", "name = \"64k\"");
  expectConfigError(text, {"t.toml:13:", "duplicate rung name '64k'"});
}

TEST(ParseLadderErrors, UnsafeRungNames) {
  for (const char* bad : {"../x", "a/b", "..", "a b", "x\\\\y"}) {
    SCOPED_TRACE(bad);
    expectConfigError(valid("name = \"64k\"", std::string("name = \"") + bad + "\""),
                      {"t.toml:6:", "rungs[0].name"});
  }
  expectConfigError(valid("name = \"64k\"", "name = \"" + std::string(65, 'a') + "\""),
                    {"t.toml:6:", "rungs[0].name"});
}

// A rung name is a directory name; "" would put the rung's segments in the ladder root.
TEST(ParseLadderErrors, EmptyRungName) {
  expectConfigError(valid("name = \"64k\"", "name = \"\""), {"t.toml:6:", "rungs[0].name"});
}

TEST(ParseLadderErrors, ContainerOtherThanMpegts) {
  expectConfigError(valid("container = \"mpegts\"", "container = \"fmp4\""),
                    {"t.toml:2:", "'container'", "mpegts"});
}

TEST(ParseLadderErrors, SegmentDurationOutOfRange) {
  for (const char* bad : {"0.5", "0", "-6.0", "60.5", "61", "3600"}) {
    SCOPED_TRACE(bad);
    expectConfigError(valid("segment_duration_s = 6.0", std::string("segment_duration_s = ") + bad),
                      {"t.toml:3:", "segment_duration_s"});
  }
}

TEST(ParseLadderErrors, TomlSyntaxError) {
  expectConfigError(valid("bitrate_kbps = 64", "bitrate_kbps = "), {"t.toml:8:"});
  expectConfigError(valid("name = \"t\"", "name = \"t"), {"t.toml:1:"});
}

TEST(ParseLadderErrors, SeveralProblemsReportedTogether) {
  std::string text = std::string("colour = \"red\"\n") +  // shifts kValid down by one line
                     valid("bitrate_kbps = 64", "bitrate_kbps = 5000");
  text = replaced(text, "channels = 2", "channels = 0");
  text = replaced(text, "container = \"mpegts\"", "container = \"mp4\"");
  const Result<Ladder> r = parseLadder(text, kOrigin);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kConfig);
  const std::string& m = r.error().message;
  for (const char* needle : {"t.toml:1:", "'colour'", "t.toml:3:", "'container'", "t.toml:9:",
                             "rungs[0].bitrate_kbps", "t.toml:11:", "rungs[0].channels"}) {
    EXPECT_NE(m.find(needle), std::string::npos) << needle << " missing from:\n" << m;
  }
  EXPECT_EQ(std::count(m.begin(), m.end(), '\n'), 3) << "one line per problem:\n" << m;
}

TEST(LoadLadderFile, MissingFileIsNotFound) {
  TempDir dir;
  const Result<Ladder> r = loadLadderFile(dir.path() / "nope.toml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  EXPECT_NE(r.error().message.find("nope.toml"), std::string::npos);
}

TEST(LoadLadderFile, ErrorsNameThePath) {
  TempDir dir;
  const fs::path file = dir.path() / "bad.toml";
  writeFile(file, valid("channels = 2", "channels = 99"));
  const Result<Ladder> r = loadLadderFile(file);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kConfig);
  EXPECT_NE(r.error().message.find(file.string() + ":10:"), std::string::npos) << r.error().message;
}

// ---- findLadder / listLadders -----------------------------------------------

std::string ladderText(const std::string& description) {
  return std::string("description = \"") + description + "\"\n" + kValid;
}

TEST(FindLadder, FirstDirectoryThatHasItWins) {
  TempDir a, b;
  writeFile(a.path() / "x.toml", ladderText("from a"));
  writeFile(b.path() / "x.toml", ladderText("from b"));
  writeFile(b.path() / "y.toml", ladderText("y from b"));

  Result<Ladder> x = findLadder("x", {a.path(), b.path()});
  ASSERT_TRUE(x.ok()) << x.error().message;
  EXPECT_EQ(x.value().description, "from a");

  x = findLadder("x", {b.path(), a.path()});
  ASSERT_TRUE(x.ok()) << x.error().message;
  EXPECT_EQ(x.value().description, "from b");

  const Result<Ladder> y = findLadder("y", {a.path(), b.path()});
  ASSERT_TRUE(y.ok()) << y.error().message;
  EXPECT_EQ(y.value().description, "y from b");
}

TEST(FindLadder, SkipsMissingDirectories) {
  TempDir a;
  writeFile(a.path() / "x.toml", ladderText("from a"));
  const Result<Ladder> r = findLadder("x", {a.path() / "does-not-exist", a.path()});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value().description, "from a");
}

TEST(FindLadder, InvalidFileIsAConfigErrorNotAFallThrough) {
  TempDir a, b;
  writeFile(a.path() / "x.toml", "name = \n");
  writeFile(b.path() / "x.toml", ladderText("from b"));
  const Result<Ladder> r = findLadder("x", {a.path(), b.path()});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kConfig);
  EXPECT_NE(r.error().message.find((a.path() / "x.toml").string()), std::string::npos)
      << r.error().message;
}

TEST(FindLadder, UnknownNameListsAvailable) {
  TempDir a, b;
  writeFile(a.path() / "alpha.toml", ladderText("a"));
  writeFile(b.path() / "beta.toml", ladderText("b"));
  const Result<Ladder> r = findLadder("gamma", {a.path(), b.path()});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  const std::string& m = r.error().message;
  EXPECT_NE(m.find("gamma"), std::string::npos) << m;
  EXPECT_NE(m.find("alpha"), std::string::npos) << m;
  EXPECT_NE(m.find("beta"), std::string::npos) << m;
}

TEST(FindLadder, UnknownNameWithNoLaddersAtAll) {
  TempDir a;
  const Result<Ladder> r = findLadder("x", {a.path()});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  EXPECT_NE(r.error().message.find("x"), std::string::npos);
}

TEST(FindLadder, RefusesPathLikeNames) {
  TempDir base;
  const fs::path dir = base.path() / "pipelines";
  writeFile(dir / "ok.toml", ladderText("ok"));
  writeFile(dir / "sub" / "x.toml", ladderText("nested"));   // reachable as "sub/x"
  writeFile(base.path() / "x.toml", ladderText("outside"));  // reachable as "../x"
  for (const char* name : {"sub/x", "../x", "..", "/x", "", "a/../ok"}) {
    SCOPED_TRACE(name);
    const Result<Ladder> r = findLadder(name, {dir});
    ASSERT_FALSE(r.ok()) << "loaded " << r.value().description;
    EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  }
  EXPECT_TRUE(findLadder("ok", {dir}).ok());
}

TEST(ListLadders, SortedUniqueTomlStemsAcrossDirectories) {
  TempDir a, b;
  writeFile(a.path() / "zeta.toml", ladderText("z"));
  writeFile(a.path() / "alpha.toml", ladderText("a"));
  writeFile(b.path() / "alpha.toml", ladderText("a2"));
  writeFile(b.path() / "mid.toml", ladderText("m"));
  writeFile(b.path() / "README.md", "not a ladder");
  writeFile(b.path() / "notes.toml.bak", "not a ladder");
  EXPECT_EQ(listLadders({a.path(), b.path()}), (std::vector<std::string>{"alpha", "mid", "zeta"}));
}

TEST(ListLadders, MissingOrEmptyDirectories) {
  TempDir a;
  EXPECT_TRUE(listLadders({}).empty());
  EXPECT_TRUE(listLadders({a.path()}).empty());
  EXPECT_TRUE(listLadders({a.path() / "nope"}).empty());
}

}  // namespace
}  // namespace vessel
