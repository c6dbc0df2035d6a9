// Unit tests for vessel::Config: schema validation, precedence, messages and redaction.
// The environment is always injected, never read from the real process.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "vessel/config.hpp"

namespace vessel {
namespace {

using Env = std::map<std::string, std::string>;
using Strings = std::vector<std::string>;

constexpr const char* kSecret = "hunter2-Zq9-SECRET-do-not-print";

EnvLookup envFrom(Env vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

// Builds a field without designated initializers: GCC 12's -Wmissing-field-initializers
// (on under -Wextra) flags every ConfigField member a designated initializer leaves out.
ConfigField field(std::string key, ConfigType type, ConfigValue default_value = false) {
  ConfigField out;
  out.key = std::move(key);
  out.type = type;
  out.default_value = std::move(default_value);
  return out;
}

ConfigField bounded(ConfigField out, std::optional<std::int64_t> min_int,
                    std::optional<std::int64_t> max_int) {
  out.min_int = min_int;
  out.max_int = max_int;
  return out;
}

ConfigField secret(ConfigField out) {
  out.secret = true;
  return out;
}

ConfigSchema testSchema() {
  ConfigSchema schema;
  schema.add(field("server.host", ConfigType::kString, "0.0.0.0"));
  schema.add(bounded(field("server.port", ConfigType::kInt, std::int64_t{8080}), 1, 65535));
  ConfigField log_level = field("server.log_level", ConfigType::kString, "info");
  log_level.allowed = {"debug", "info", "warn", "error"};
  schema.add(log_level);
  schema.add(field("server.tls", ConfigType::kBool, false));
  schema.add(field("transcode.quality", ConfigType::kDouble, 0.5));
  schema.add(
      bounded(field("transcode.workers", ConfigType::kInt, std::int64_t{2}), 1, std::nullopt));
  schema.add(field("pipelines.enabled", ConfigType::kStringList, Strings{"hls"}));
  schema.add(secret(bounded(field("auth.pin", ConfigType::kInt, std::int64_t{1234}), 1000, 9999)));
  schema.addSection("storage.local", {field("root", ConfigType::kString, "/var/lib/vessel")});
  schema.addSection("storage.s3", {
                                      field("bucket", ConfigType::kString, "media"),
                                      field("region", ConfigType::kString, "us-east-1"),
                                      secret(field("secret_access_key", ConfigType::kString)),
                                      field("endpoints", ConfigType::kStringList),
                                  });
  return schema;
}

// Parses with an empty environment unless one is given; fails the test on error.
Config parseOk(std::string_view text, Env env = {}, ConfigLoadOptions options = {}) {
  Result<Config> result =
      Config::parse(testSchema(), text, "test.toml", envFrom(std::move(env)), options);
  if (!result.ok()) {
    ADD_FAILURE() << "unexpected config error:\n" << result.error().message;
    // Defaults keep the caller's getters valid, so it reports mismatches instead of dying.
    return Config::parse(testSchema(), "", "defaults", envFrom({})).value();
  }
  return std::move(result).value();
}

// Parses expecting failure; returns the message.
std::string parseError(std::string_view text, Env env = {}, ConfigLoadOptions options = {}) {
  Result<Config> result =
      Config::parse(testSchema(), text, "test.toml", envFrom(std::move(env)), options);
  if (result.ok()) {
    ADD_FAILURE() << "expected a config error, got:\n" << result.value().dump();
    return "";
  }
  EXPECT_EQ(result.error().code, ErrorCode::kConfig);
  return result.error().message;
}

Strings lines(const std::string& text) {
  Strings out;
  std::istringstream stream(text);
  for (std::string line; std::getline(stream, line);) out.push_back(line);
  return out;
}

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            ("vessel-test-config-" + std::to_string(::getpid()) + "-" + info->name());
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

TEST(ConfigSchemaTest, EnvNameIsUpperSnakeWithPrefix) {
  EXPECT_EQ(ConfigSchema::envName("storage.s3.bucket"), "VESSEL_STORAGE_S3_BUCKET");
  EXPECT_EQ(ConfigSchema::envName("storage.s3.secret_access_key"),
            "VESSEL_STORAGE_S3_SECRET_ACCESS_KEY");
  EXPECT_EQ(ConfigSchema::envName("codec.aac-lc.bit-rate"), "VESSEL_CODEC_AAC_LC_BIT_RATE");
}

TEST(ConfigSchemaTest, AddSectionPrefixesKeys) {
  const ConfigSchema schema = testSchema();
  const ConfigField* root = schema.find("storage.local.root");
  ASSERT_NE(root, nullptr);
  EXPECT_EQ(root->key, "storage.local.root");
  EXPECT_EQ(schema.find("root"), nullptr);
  ASSERT_NE(schema.find("storage.s3.secret_access_key"), nullptr);
  EXPECT_TRUE(schema.find("storage.s3.secret_access_key")->secret);
}

TEST(ConfigSchemaTest, FieldWithoutDefaultGetsEmptyValueOfItsType) {
  const Config config = parseOk("");
  EXPECT_EQ(config.getString("storage.s3.secret_access_key"), "");
  EXPECT_TRUE(config.getStringList("storage.s3.endpoints").empty());
}

TEST(ConfigSchemaDeathTest, DuplicateKeyAsserts) {
  ConfigSchema schema;
  schema.add(field("a.b", ConfigType::kInt, std::int64_t{1}));
  EXPECT_DEBUG_DEATH(schema.add(field("a.b", ConfigType::kString)), "duplicate");
  // Without asserts the first declaration stays.
  EXPECT_EQ(schema.find("a.b")->type, ConfigType::kInt);
}

TEST(ConfigTest, DefaultsUsedWhenNoFile) {
  Result<Config> result = Config::load(testSchema(), std::nullopt, envFrom({}));
  ASSERT_TRUE(result.ok()) << result.error().message;
  const Config& config = result.value();
  EXPECT_EQ(config.getString("server.host"), "0.0.0.0");
  EXPECT_EQ(config.getInt("server.port"), 8080);
  EXPECT_FALSE(config.getBool("server.tls"));
  EXPECT_DOUBLE_EQ(config.getDouble("transcode.quality"), 0.5);
  EXPECT_EQ(config.getStringList("pipelines.enabled"), Strings{"hls"});
  EXPECT_EQ(config.source("server.port"), ConfigSource::kDefault);
  EXPECT_EQ(config.origin(), "");
}

TEST(ConfigTest, FileValuesOverrideDefaults) {
  const Config config = parseOk(R"(
[server]
port = 9000
tls = true
log_level = "debug"

[storage.local]
root = "/srv/media"

[transcode]
quality = 0.75
)");
  EXPECT_EQ(config.getInt("server.port"), 9000);
  EXPECT_EQ(config.source("server.port"), ConfigSource::kFile);
  EXPECT_TRUE(config.getBool("server.tls"));
  EXPECT_EQ(config.getString("server.log_level"), "debug");
  EXPECT_EQ(config.getString("storage.local.root"), "/srv/media");
  EXPECT_DOUBLE_EQ(config.getDouble("transcode.quality"), 0.75);
  // Untouched keys keep their defaults.
  EXPECT_EQ(config.getString("server.host"), "0.0.0.0");
  EXPECT_EQ(config.source("server.host"), ConfigSource::kDefault);
  EXPECT_EQ(config.origin(), "test.toml");
}

TEST(ConfigTest, DottedKeysAndInlineTablesAreTheSameKeys) {
  const Config config = parseOk(R"(
storage.local.root = "/a"
storage.s3 = { bucket = "b" }
)");
  EXPECT_EQ(config.getString("storage.local.root"), "/a");
  EXPECT_EQ(config.getString("storage.s3.bucket"), "b");
}

TEST(ConfigTest, IntegerAcceptedForDouble) {
  const Config config = parseOk("[transcode]\nquality = 1\n");
  EXPECT_DOUBLE_EQ(config.getDouble("transcode.quality"), 1.0);
  EXPECT_TRUE(std::holds_alternative<double>(config.get("transcode.quality")));
}

TEST(ConfigTest, EnvironmentOverridesFile) {
  const Config config = parseOk(
      R"(
[server]
port = 9000
[storage.s3]
bucket = "from-file"
region = "eu-west-1"
)",
      {{"VESSEL_SERVER_PORT", "7000"},
       {"VESSEL_STORAGE_S3_BUCKET", "from-env"},
       {"VESSEL_STORAGE_S3_SECRET_ACCESS_KEY", "env-key"},
       {"VESSEL_SERVER_TLS", "yes"},
       {"VESSEL_TRANSCODE_QUALITY", "0.25"}});
  EXPECT_EQ(config.getInt("server.port"), 7000);
  EXPECT_EQ(config.source("server.port"), ConfigSource::kEnvironment);
  EXPECT_EQ(config.getString("storage.s3.bucket"), "from-env");
  EXPECT_EQ(config.source("storage.s3.bucket"), ConfigSource::kEnvironment);
  EXPECT_EQ(config.getString("storage.s3.secret_access_key"), "env-key");
  EXPECT_EQ(config.source("storage.s3.secret_access_key"), ConfigSource::kEnvironment);
  EXPECT_TRUE(config.getBool("server.tls"));
  EXPECT_DOUBLE_EQ(config.getDouble("transcode.quality"), 0.25);
  // Not in the environment: the file still wins over the default.
  EXPECT_EQ(config.getString("storage.s3.region"), "eu-west-1");
  EXPECT_EQ(config.source("storage.s3.region"), ConfigSource::kFile);
}

TEST(ConfigTest, EnvironmentBoolSpellings) {
  const std::vector<std::pair<std::string, bool>> cases = {
      {"true", true},   {"TRUE", true},   {"1", true},  {"yes", true}, {"On", true},
      {"false", false}, {"False", false}, {"0", false}, {"NO", false}, {"off", false}};
  for (const auto& [text, expected] : cases) {
    // Start from the opposite value in the file so the environment must be applied.
    const std::string file = std::string("[server]\ntls = ") + (expected ? "false" : "true");
    const Config config = parseOk(file, {{"VESSEL_SERVER_TLS", text}});
    EXPECT_EQ(config.getBool("server.tls"), expected) << text;
  }
}

TEST(ConfigTest, UnknownKeyReportedWithFileLineAndKey) {
  const std::string message = parseError("[server]\nport = 80\nzzzzzz = 1\n");
  EXPECT_EQ(message, "test.toml:3:1: unknown key 'server.zzzzzz'");
}

TEST(ConfigTest, UnknownKeySuggestsCloseDeclaredKey) {
  EXPECT_EQ(parseError("[server]\nprot = 80\n"),
            "test.toml:2:1: unknown key 'server.prot' (did you mean 'server.port'?)");
  // A misspelt table header is caught per leaf.
  EXPECT_EQ(parseError("[storage.s3]\nsecret_acess_key = \"x\"\n"),
            "test.toml:2:1: unknown key 'storage.s3.secret_acess_key' "
            "(did you mean 'storage.s3.secret_access_key'?)");
  EXPECT_EQ(parseError("[storag.local]\nroot = \"x\"\n"),
            "test.toml:2:1: unknown key 'storag.local.root' (did you mean 'storage.local.root'?)");
}

TEST(ConfigTest, NoSuggestionWhenNothingIsClose) {
  const std::string message = parseError("[server]\nverbosity = 3\n");
  EXPECT_NE(message.find("unknown key 'server.verbosity'"), std::string::npos) << message;
  EXPECT_EQ(message.find("did you mean"), std::string::npos) << message;
}

TEST(ConfigTest, WrongTypeReported) {
  EXPECT_EQ(parseError("[server]\nport = \"eighty\"\n"),
            "test.toml:2:8: key 'server.port': expected integer, got string");
  EXPECT_EQ(parseError("[server]\ntls = 1\n"),
            "test.toml:2:7: key 'server.tls': expected boolean, got integer");
  EXPECT_EQ(parseError("[transcode]\nquality = \"high\"\n"),
            "test.toml:2:11: key 'transcode.quality': expected number, got string");
  EXPECT_EQ(parseError("[server]\nport = 80.5\n"),
            "test.toml:2:8: key 'server.port': expected integer, got float");
}

TEST(ConfigTest, TableWhereLeafDeclaredIsTypeError) {
  const std::string message = parseError("[storage.local.root]\npath = \"/x\"\n");
  EXPECT_NE(message.find("test.toml:1:"), std::string::npos) << message;
  EXPECT_NE(message.find("key 'storage.local.root': expected string, got table"), std::string::npos)
      << message;
}

TEST(ConfigTest, LeafWhereOnlyTablePrefixDeclaredIsUnknown) {
  const std::string message = parseError("storage = \"local\"\n");
  EXPECT_NE(message.find("test.toml:1:1: unknown key 'storage'"), std::string::npos) << message;
}

TEST(ConfigTest, IntOutOfRangeReported) {
  EXPECT_EQ(parseError("[server]\nport = 70000\n"),
            "test.toml:2:8: key 'server.port': value 70000 is out of range [1, 65535]");
  EXPECT_EQ(parseError("[transcode]\nworkers = 0\n"),
            "test.toml:2:11: key 'transcode.workers': value 0 is below the minimum 1");
  // Both bounds are inclusive.
  EXPECT_EQ(parseOk("[server]\nport = 65535\n").getInt("server.port"), 65535);
  EXPECT_EQ(parseOk("[server]\nport = 1\n").getInt("server.port"), 1);
}

TEST(ConfigTest, AllowedValuesChecked) {
  EXPECT_EQ(parseError("[server]\nlog_level = \"loud\"\n"),
            "test.toml:2:13: key 'server.log_level': value \"loud\" is not one of \"debug\", "
            "\"info\", \"warn\", \"error\"");
  EXPECT_EQ(parseOk("[server]\nlog_level = \"warn\"\n").getString("server.log_level"), "warn");
}

TEST(ConfigTest, AllProblemsReportedOnePerLine) {
  const std::string message = parseError(
      R"([server]
port = "x"
prot = 1
log_level = "loud"
[transcode]
workers = 0
)",
      {{"VESSEL_SERVER_TLS", "maybe"}});
  const Strings got = lines(message);
  ASSERT_EQ(got.size(), 5u) << message;
  EXPECT_EQ(got[0], "test.toml:2:8: key 'server.port': expected integer, got string");
  EXPECT_EQ(got[1], "test.toml:3:1: unknown key 'server.prot' (did you mean 'server.port'?)");
  EXPECT_EQ(got[2].rfind("test.toml:4:13: key 'server.log_level': value \"loud\"", 0), 0u);
  EXPECT_EQ(got[3], "test.toml:6:11: key 'transcode.workers': value 0 is below the minimum 1");
  EXPECT_EQ(got[4],
            "environment variable VESSEL_SERVER_TLS (key 'server.tls'): expected boolean, got "
            "'maybe'");
}

TEST(ConfigTest, MissingFileReported) {
  TempDir dir;
  const std::filesystem::path missing = dir.path() / "absent.toml";
  Result<Config> result = Config::load(testSchema(), missing, envFrom({}));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, ErrorCode::kConfig);
  EXPECT_EQ(result.error().message,
            "config file '" + missing.string() + "': cannot read: No such file or directory");
}

TEST(ConfigTest, DirectoryInsteadOfFileReported) {
  TempDir dir;
  Result<Config> result = Config::load(testSchema(), dir.path(), envFrom({}));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().message,
            "config file '" + dir.path().string() + "': cannot read: Is a directory");
}

TEST(ConfigTest, LoadsFileAndNamesItInMessages) {
  TempDir dir;
  const std::filesystem::path good = dir.path() / "good.toml";
  std::ofstream(good) << "[server]\nport = 9100\n";
  Result<Config> loaded = Config::load(testSchema(), good, envFrom({}));
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded.value().getInt("server.port"), 9100);
  EXPECT_EQ(loaded.value().origin(), good.string());

  const std::filesystem::path bad = dir.path() / "bad.toml";
  std::ofstream(bad) << "\n[server]\nprot = 1\n";
  Result<Config> failed = Config::load(testSchema(), bad, envFrom({}));
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().message.rfind(bad.string() + ":3:1: unknown key 'server.prot'", 0), 0u)
      << failed.error().message;
}

TEST(ConfigTest, TomlSyntaxErrorReportedWithLine) {
  const std::string message = parseError("[server]\nport = 80\nhost = = \"x\"\n");
  EXPECT_EQ(message.rfind("test.toml:3:", 0), 0u) << message;
  EXPECT_EQ(lines(message).size(), 1u) << message;
}

TEST(ConfigTest, SyntaxErrorStillReportsEnvironmentProblems) {
  const Strings got = lines(parseError("[server\n", {{"VESSEL_SERVER_PORT", "eighty"}}));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].rfind("test.toml:1:", 0), 0u) << got[0];
  EXPECT_EQ(got[1],
            "environment variable VESSEL_SERVER_PORT (key 'server.port'): expected integer, got "
            "'eighty'");
}

TEST(ConfigTest, BadEnvironmentValuesForEachType) {
  const std::string message = parseError("", {
                                                 {"VESSEL_SERVER_TLS", "sure"},
                                                 {"VESSEL_SERVER_PORT", "80abc"},
                                                 {"VESSEL_TRANSCODE_WORKERS", ""},
                                                 {"VESSEL_TRANSCODE_QUALITY", "0.5x"},
                                                 {"VESSEL_SERVER_LOG_LEVEL", "loud"},
                                             });
  const std::string prefix = "environment variable ";
  EXPECT_NE(message.find(prefix + "VESSEL_SERVER_TLS (key 'server.tls'): expected boolean, "
                                  "got 'sure'"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find(prefix + "VESSEL_SERVER_PORT (key 'server.port'): expected integer, "
                                  "got '80abc'"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find(prefix + "VESSEL_TRANSCODE_WORKERS (key 'transcode.workers'): expected "
                                  "integer, got ''"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find(prefix + "VESSEL_TRANSCODE_QUALITY (key 'transcode.quality'): expected "
                                  "number, got '0.5x'"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find(prefix + "VESSEL_SERVER_LOG_LEVEL (key 'server.log_level'): value "
                                  "\"loud\" is not one of"),
            std::string::npos)
      << message;
  EXPECT_EQ(lines(message).size(), 5u) << message;
}

TEST(ConfigTest, EnvironmentIntegerRangeAndOverflow) {
  EXPECT_EQ(parseError("", {{"VESSEL_SERVER_PORT", "0"}}),
            "environment variable VESSEL_SERVER_PORT (key 'server.port'): value 0 is out of "
            "range [1, 65535]");
  EXPECT_EQ(parseError("", {{"VESSEL_SERVER_PORT", "99999999999999999999"}}),
            "environment variable VESSEL_SERVER_PORT (key 'server.port'): value "
            "'99999999999999999999' does not fit in a 64-bit integer");
  EXPECT_NE(parseError("", {{"VESSEL_SERVER_PORT", " 80"}}).find("expected integer, got ' 80'"),
            std::string::npos);
  const Config config =
      parseOk("", {{"VESSEL_SERVER_PORT", "443"}, {"VESSEL_TRANSCODE_WORKERS", "12"}});
  EXPECT_EQ(config.getInt("server.port"), 443);
  EXPECT_EQ(config.getInt("transcode.workers"), 12);
}

TEST(ConfigTest, StringListFromFileAndEnvironment) {
  const Config from_file = parseOk("[pipelines]\nenabled = [\"hls\", \"dash\"]\n");
  EXPECT_EQ(from_file.getStringList("pipelines.enabled"), (Strings{"hls", "dash"}));

  const Config from_env = parseOk("[pipelines]\nenabled = [\"hls\"]\n",
                                  {{"VESSEL_PIPELINES_ENABLED", " hls , ,dash,, mp3 "}});
  EXPECT_EQ(from_env.getStringList("pipelines.enabled"), (Strings{"hls", "dash", "mp3"}));
  EXPECT_EQ(from_env.source("pipelines.enabled"), ConfigSource::kEnvironment);

  // An empty variable is an explicit empty list, not "unset".
  const Config empty = parseOk("", {{"VESSEL_PIPELINES_ENABLED", ""}});
  EXPECT_TRUE(empty.getStringList("pipelines.enabled").empty());
}

TEST(ConfigTest, StringListRejectsNonStrings) {
  EXPECT_EQ(parseError("[pipelines]\nenabled = [\"hls\", 3]\n"),
            "test.toml:2:19: key 'pipelines.enabled': expected array of strings, got array "
            "containing integer");
  EXPECT_EQ(parseError("[pipelines]\nenabled = \"hls\"\n"),
            "test.toml:2:11: key 'pipelines.enabled': expected array of strings, got string");
}

TEST(ConfigTest, SecretNeverPrintedInDump) {
  const Config config =
      parseOk(std::string("[storage.s3]\nsecret_access_key = \"") + kSecret + "\"\n");
  ASSERT_EQ(config.getString("storage.s3.secret_access_key"), kSecret);
  const std::string dump = config.dump();
  EXPECT_EQ(dump.find(kSecret), std::string::npos) << dump;
  EXPECT_NE(dump.find("storage.s3.secret_access_key = <redacted>  # file\n"), std::string::npos)
      << dump;
  EXPECT_NE(dump.find("auth.pin = <redacted>  # default\n"), std::string::npos) << dump;
  EXPECT_EQ(config.section("storage.s3").dump().find(kSecret), std::string::npos);
}

TEST(ConfigTest, SecretNeverPrintedInErrors) {
  // A secret int with a bad value, from the environment and from the file.
  const std::string env_message = parseError("", {{"VESSEL_AUTH_PIN", kSecret}});
  EXPECT_EQ(env_message.find(kSecret), std::string::npos) << env_message;
  EXPECT_EQ(env_message,
            "environment variable VESSEL_AUTH_PIN (key 'auth.pin'): expected integer, got "
            "<redacted>");

  const std::string range_message = parseError("[auth]\npin = 31337\n");
  EXPECT_EQ(range_message.find("31337"), std::string::npos) << range_message;
  EXPECT_NE(range_message.find("value <redacted> is out of range"), std::string::npos);

  // Another error in the same run must not drag the secret along.
  const std::string mixed = parseError(
      std::string("[storage.s3]\nsecret_access_key = \"") + kSecret + "\"\nbuckett = \"x\"\n",
      {{"VESSEL_AUTH_PIN", "12"}});
  EXPECT_EQ(mixed.find(kSecret), std::string::npos) << mixed;
  EXPECT_EQ(lines(mixed).size(), 2u) << mixed;
}

TEST(ConfigTest, DumpListsEveryKeyWithValueAndSource) {
  const Config config = Config::fromValues({
      {"b.flag", true},
      {"a.count", std::int64_t{3}},
      {"c.ratio", 2.0},
      {"d.name", std::string("say \"hi\"\n")},
      {"e.list", Strings{"x", "y"}},
  });
  EXPECT_EQ(config.dump(),
            "a.count = 3  # default\n"
            "b.flag = true  # default\n"
            "c.ratio = 2.0  # default\n"
            "d.name = \"say \\\"hi\\\"\\n\"  # default\n"
            "e.list = [\"x\", \"y\"]  # default\n");
}

TEST(ConfigTest, DumpShowsSources) {
  const Config config = parseOk("[server]\nport = 9000\n", {{"VESSEL_SERVER_HOST", "::1"}});
  const std::string dump = config.dump();
  EXPECT_NE(dump.find("server.port = 9000  # file\n"), std::string::npos) << dump;
  EXPECT_NE(dump.find("server.host = \"::1\"  # environment\n"), std::string::npos) << dump;
  EXPECT_NE(dump.find("server.tls = false  # default\n"), std::string::npos) << dump;
}

TEST(ConfigTest, SectionStripsPrefixAndKeepsSources) {
  const Config config =
      parseOk("[storage.s3]\nregion = \"eu-west-1\"\n", {{"VESSEL_STORAGE_S3_BUCKET", "b"}});
  const Config s3 = config.section("storage.s3");
  ASSERT_TRUE(s3.has("bucket"));
  ASSERT_TRUE(s3.has("region"));
  ASSERT_TRUE(s3.has("secret_access_key"));
  EXPECT_FALSE(s3.has("storage.s3.bucket"));
  EXPECT_FALSE(s3.has("root"));  // storage.local.root is a sibling section
  EXPECT_EQ(s3.getString("bucket"), "b");
  EXPECT_EQ(s3.source("bucket"), ConfigSource::kEnvironment);
  EXPECT_EQ(s3.getString("region"), "eu-west-1");
  EXPECT_EQ(s3.source("region"), ConfigSource::kFile);
  EXPECT_EQ(s3.source("secret_access_key"), ConfigSource::kDefault);
  EXPECT_EQ(s3.dump().find("storage."), std::string::npos) << s3.dump();
  EXPECT_EQ(s3.origin(), "test.toml");
}

TEST(ConfigTest, SectionMatchesWholeSegmentsOnly) {
  const Config config = Config::fromValues(
      {{"storage.s3.bucket", std::string("b")}, {"storage.s3x.bucket", std::string("other")}});
  const Config s3 = config.section("storage.s3");
  EXPECT_EQ(lines(s3.dump()).size(), 1u) << s3.dump();
  ASSERT_TRUE(s3.has("bucket"));
  EXPECT_EQ(s3.getString("bucket"), "b");
}

TEST(ConfigTest, RejectUnknownFalseIgnoresUnknownButNotWrongTypes) {
  const ConfigLoadOptions lenient{.reject_unknown = false};
  const Config config =
      parseOk("[plugins]\npath = \"/opt\"\n[server]\nport = 81\nprot = 1\n", {}, lenient);
  EXPECT_EQ(config.getInt("server.port"), 81);
  EXPECT_FALSE(config.has("plugins.path"));
  EXPECT_FALSE(config.has("server.prot"));

  EXPECT_EQ(parseError("[plugins]\npath = 1\n[server]\nport = \"x\"\n", {}, lenient),
            "test.toml:4:8: key 'server.port': expected integer, got string");
}

TEST(ConfigTest, ExceptionFromEnvLookupBecomesError) {
  const EnvLookup throwing = [](const std::string&) -> std::optional<std::string> {
    throw std::runtime_error("lookup failed");
  };
  Result<Config> result = Config::parse(testSchema(), "", "test.toml", throwing);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, ErrorCode::kConfig);
  EXPECT_EQ(result.error().message, "test.toml: cannot load: lookup failed");
}

TEST(ConfigTest, FromValuesBuildsDefaultSourcedConfig) {
  const Config config = Config::fromValues({{"root", std::string("/tmp/x")}});
  EXPECT_TRUE(config.has("root"));
  EXPECT_EQ(config.getString("root"), "/tmp/x");
  EXPECT_EQ(config.source("root"), ConfigSource::kDefault);
  EXPECT_EQ(std::get<std::string>(config.get("root")), "/tmp/x");
}

TEST(ConfigDeathTest, GetterMisuseStopsNamingTheKey) {
  const Config config = Config::fromValues({{"root", std::string("/tmp/x")}});
  EXPECT_DEATH((void)config.getInt("root"), "key 'root' is not of type integer");
  EXPECT_DEATH((void)config.getString("missing"), "key 'missing' is not present");
}

}  // namespace
}  // namespace vessel
