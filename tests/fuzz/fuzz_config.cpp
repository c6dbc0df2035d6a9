// Fuzz target: config files (core/include/vessel/config.hpp Config::parse, the
// string form of Config::load) against the real core schema plus a section with
// every field type. Properties: no crash, hang or UB; refusals are kConfig with
// a message; an accepted config dumps, and every declared key reads back with
// its declared type and within its declared bounds.
#include <cstdint>
#include <string>

#include "fuzz_check.hpp"
#include "vessel/config.hpp"
#include "vessel/runtime.hpp"

namespace {

vessel::ConfigSchema makeSchema() {
  using vessel::ConfigField;
  using vessel::ConfigType;
  vessel::ConfigSchema schema = vessel::Runtime::coreSchema();
  auto field = [](std::string key, ConfigType type, vessel::ConfigValue def) {
    ConfigField f;
    f.key = std::move(key);
    f.type = type;
    f.default_value = std::move(def);
    f.doc = "fuzz";
    return f;
  };
  ConfigField count = field("count", ConfigType::kInt, std::int64_t{3});
  count.min_int = 0;
  count.max_int = 100;
  ConfigField mode = field("mode", ConfigType::kString, std::string("a"));
  mode.allowed = {"a", "b"};
  ConfigField token = field("token", ConfigType::kString, std::string());
  token.secret = true;
  schema.addSection("fuzz", {field("flag", ConfigType::kBool, false), count,
                             field("ratio", ConfigType::kDouble, 0.5), mode, token,
                             field("names", ConfigType::kStringList, std::vector<std::string>{})});
  return schema;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const vessel::ConfigSchema schema = makeSchema();
  const vessel::EnvLookup no_env = [](const std::string&) { return std::optional<std::string>(); };
  const auto text = vessel::fuzz::bytes(data, size);
  for (bool strict : {true, false}) {
    auto c = vessel::Config::parse(schema, text, "fuzz.toml", no_env,
                                   vessel::ConfigLoadOptions{.reject_unknown = strict});
    if (!c.ok()) {
      FUZZ_CHECK(c.error().code == vessel::ErrorCode::kConfig, "a refusal is kConfig");
      FUZZ_CHECK(!c.error().message.empty(), "a refusal says why");
      continue;
    }
    const vessel::Config& config = c.value();
    (void)config.dump();
    for (const auto& [key, field] : schema.fields()) {
      FUZZ_CHECK(config.has(key), "every declared key is present");
      const vessel::ConfigValue& v = config.get(key);
      FUZZ_CHECK(static_cast<int>(v.index()) + 1 == static_cast<int>(field.type), "declared type");
      if (field.type == vessel::ConfigType::kInt) {
        const auto i = std::get<std::int64_t>(v);
        FUZZ_CHECK(!field.min_int || i >= *field.min_int, "int >= min");
        FUZZ_CHECK(!field.max_int || i <= *field.max_int, "int <= max");
      }
      if (field.type == vessel::ConfigType::kString && !field.allowed.empty()) {
        bool ok = false;
        for (const auto& a : field.allowed) ok = ok || a == std::get<std::string>(v);
        FUZZ_CHECK(ok, "string among the allowed values");
      }
    }
    (void)config.section("fuzz");
  }
  return 0;
}
