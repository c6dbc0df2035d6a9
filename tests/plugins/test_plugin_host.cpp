// PluginHost: loading real plugin files, refusing broken ones, registry rules,
// and keeping a library mapped while objects it made are alive.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "vessel/plugin_host.hpp"

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::filesystem::path localPlugin() {
  return std::filesystem::path(env("VESSEL_TEST_PLUGIN_DIR")) / "storage-local" /
         "libvessel-storage-local.so";
}

bool isMapped(const std::filesystem::path& lib) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  std::string needle = std::filesystem::canonical(lib).string();
  while (std::getline(maps, line)) {
    if (line.find(needle) != std::string::npos) return true;
  }
  return false;
}

std::filesystem::path tempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "vessel-host-XXXXXX").string();
  return mkdtemp(tmpl.data());
}

vessel::Config localConfig(const std::filesystem::path& root) {
  return vessel::Config::fromValues({{"storage.local.root", root.string()},
                                     {"storage.local.create_root", true},
                                     {"storage.local.durable", false}});
}

TEST(PluginHost, LoadsTheLocalStoragePlugin) {
  vessel::PluginHost host;
  auto info = host.load(localPlugin());
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info.value().kind, vessel::PluginKind::kStorage);
  EXPECT_EQ(info.value().name, "local");
  EXPECT_EQ(info.value().abi_version, vessel::kPluginAbiVersion);
  ASSERT_NE(host.find(vessel::PluginKind::kStorage, "local"), nullptr);
  EXPECT_EQ(host.find(vessel::PluginKind::kCodec, "local"), nullptr);
}

TEST(PluginHost, RefusesWrongAbiNamingFileAndBothVersions) {
  vessel::PluginHost host;
  const std::string path = env("VESSEL_TEST_BAD_ABI_PLUGIN");
  auto info = host.load(path);
  ASSERT_FALSE(info.ok());
  const std::string& msg = info.error().message;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("999"), std::string::npos) << msg;
  EXPECT_NE(msg.find("ABI version " + std::to_string(vessel::kPluginAbiVersion)), std::string::npos)
      << msg;
  EXPECT_TRUE(host.plugins().empty());
}

TEST(PluginHost, RefusesUnknownKind) {
  vessel::PluginHost host;
  auto info = host.load(env("VESSEL_TEST_BAD_KIND_PLUGIN"));
  ASSERT_FALSE(info.ok());
  EXPECT_NE(info.error().message.find("unknown plugin kind 77"), std::string::npos)
      << info.error().message;
}

TEST(PluginHost, RefusesALibraryWithoutTheEntryPoint) {
  vessel::PluginHost host;
  // The AAC codec plugin is a Vessel plugin; libgtest's own .so is not. Use a
  // system library every machine running these tests has.
  auto info = host.load("/lib/x86_64-linux-gnu/libz.so.1");
  ASSERT_FALSE(info.ok());
  EXPECT_NE(info.error().message.find("not a Vessel plugin"), std::string::npos)
      << info.error().message;
}

TEST(PluginHost, RefusesADuplicateName) {
  vessel::PluginHost host;
  ASSERT_TRUE(host.load(localPlugin()).ok());
  auto again = host.load(localPlugin());
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().message.find("already loaded"), std::string::npos);
  EXPECT_EQ(host.plugins().size(), 1u);
}

TEST(PluginHost, ScanFindsPluginsAndReportsBrokenOnes) {
  vessel::PluginHost host;
  auto dir = tempDir();
  std::filesystem::copy_file(env("VESSEL_TEST_BAD_ABI_PLUGIN"), dir / "libvessel-badabi.so");
  host.scan({env("VESSEL_TEST_PLUGIN_DIR"), dir});
  EXPECT_NE(host.find(vessel::PluginKind::kStorage, "local"), nullptr);
  EXPECT_NE(host.find(vessel::PluginKind::kCodec, "aac"), nullptr);
  ASSERT_EQ(host.problems().size(), 1u);
  EXPECT_NE(host.problems()[0].find("libvessel-badabi.so"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(PluginHost, UnknownNameListsWhatExists) {
  vessel::PluginHost host;
  ASSERT_TRUE(host.load(localPlugin()).ok());
  auto s = host.createStorage("s4", localConfig("/tmp"));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("no storage plugin named 's4'"), std::string::npos);
  EXPECT_NE(s.error().message.find("available: local"), std::string::npos);
}

TEST(PluginHost, SchemaGetsPluginKeysUnderKindAndName) {
  vessel::PluginHost host;
  ASSERT_TRUE(host.load(localPlugin()).ok());
  vessel::ConfigSchema schema;
  host.addToSchema(schema);
  ASSERT_NE(schema.find("storage.local.root"), nullptr);
  EXPECT_EQ(schema.find("storage.local.root")->type, vessel::ConfigType::kString);
}

TEST(PluginHost, LibraryStaysLoadedWhileItsObjectsLive) {
  auto root = tempDir();
  std::shared_ptr<vessel::Storage> storage;
  {
    vessel::PluginHost host;
    ASSERT_TRUE(host.load(localPlugin()).ok());
    ASSERT_TRUE(isMapped(localPlugin()));
    auto s = host.createStorage("local", localConfig(root));
    ASSERT_TRUE(s.ok()) << s.error().message;
    storage = s.value();
  }  // host gone: only the object holds the library now
  ASSERT_TRUE(isMapped(localPlugin()));
  const std::string text = "still here";
  auto put =
      storage->put("a/b.txt", std::as_bytes(std::span(text.data(), text.size())), "text/plain");
  ASSERT_TRUE(put.ok()) << put.error().message;
  EXPECT_TRUE(std::filesystem::exists(root / "a" / "b.txt"));
  storage.reset();
  EXPECT_FALSE(isMapped(localPlugin())) << "library should unload with its last object";
  std::filesystem::remove_all(root);
}

// A fake registered in-process, as tests and embedding apps do.
class FakeStorage final : public vessel::Storage {
 public:
  explicit FakeStorage(std::string tag) : tag_(std::move(tag)) {}
  vessel::Result<void> put(std::string_view, std::span<const std::byte>,
                           std::string_view) noexcept override {
    return vessel::makeError(vessel::ErrorCode::kUnavailable, tag_);
  }
  vessel::Result<std::unique_ptr<vessel::ObjectWriter>> openWriter(
      std::string_view, std::string_view) noexcept override {
    return vessel::makeError(vessel::ErrorCode::kUnavailable, tag_);
  }
  vessel::Result<std::unique_ptr<vessel::ObjectReader>> openReader(
      std::string_view, std::uint64_t, std::optional<std::uint64_t>) noexcept override {
    return vessel::makeError(vessel::ErrorCode::kUnavailable, tag_);
  }
  vessel::Result<vessel::ObjectInfo> stat(std::string_view) noexcept override {
    return vessel::makeError(vessel::ErrorCode::kNotFound, tag_);
  }
  vessel::Result<bool> exists(std::string_view) noexcept override { return false; }
  vessel::Result<void> remove(std::string_view) noexcept override { return {}; }
  vessel::Result<vessel::ListPage> list(std::string_view, std::string_view,
                                        std::size_t) noexcept override {
    return vessel::ListPage{};
  }
  vessel::Result<std::uint64_t> removePrefix(std::string_view) noexcept override {
    return std::uint64_t{0};
  }
  std::optional<std::string> localPath(std::string_view) const noexcept override {
    return std::nullopt;
  }

 private:
  std::string tag_;
};

const std::vector<vessel::ConfigField>* fakeFields() noexcept {
  static const std::vector<vessel::ConfigField> kFields = {
      {"tag", vessel::ConfigType::kString, std::string("none"), "", false, {}, {}, {}}};
  return &kFields;
}
void* fakeCreate(const vessel::Config& cfg, std::string&) noexcept {
  return static_cast<vessel::Storage*>(new FakeStorage(cfg.getString("tag")));
}
void fakeDestroy(void* p) noexcept { delete static_cast<vessel::Storage*>(p); }

TEST(PluginHost, StaticRegistrationGetsItsOwnConfigSection) {
  static const vessel::PluginDescriptor d{vessel::kPluginAbiVersion,
                                          vessel::PluginKind::kStorage,
                                          "fake",
                                          "1",
                                          "test",
                                          fakeFields,
                                          fakeCreate,
                                          fakeDestroy};
  vessel::PluginHost host;
  ASSERT_TRUE(host.registerStatic(&d).ok());
  auto s = host.createStorage(
      "fake", vessel::Config::fromValues({{"storage.fake.tag", std::string("xyz")}}));
  ASSERT_TRUE(s.ok()) << s.error().message;
  auto put = s.value()->put("k", {}, "");
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.error().message, "xyz");
  EXPECT_FALSE(host.registerStatic(&d).ok()) << "duplicate name must be refused";
}

}  // namespace
