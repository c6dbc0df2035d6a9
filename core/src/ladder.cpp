// Ladder files (pipelines/*.toml) → Ladder, with file/key/reason errors.
#include "vessel/ladder.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

namespace vessel {
namespace {

std::string where(std::string_view origin, const toml::source_region& src) {
  std::ostringstream out;
  out << origin;
  if (src.begin.line) out << ':' << src.begin.line << ':' << src.begin.column;
  return out.str();
}

}  // namespace

Result<Ladder> parseLadder(std::string_view toml_text, std::string_view origin) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    return makeError(ErrorCode::kConfig,
                     where(origin, e.source()) + ": " + std::string(e.description()));
  }
  std::vector<std::string> problems;
  auto problem = [&](const toml::node* node, const std::string& msg) {
    problems.push_back((node ? where(origin, node->source()) : std::string(origin)) + ": " + msg);
  };
  static const std::set<std::string, std::less<>> kTopKeys = {"name", "description", "container",
                                                              "segment_duration_s", "rungs"};
  static const std::set<std::string, std::less<>> kRungKeys = {
      "name", "codec", "bitrate_kbps", "sample_rate_hz", "channels", "options"};
  Ladder ladder;
  for (auto&& [k, v] : root) {
    if (!kTopKeys.count(k.str())) problem(&v, "unknown key '" + std::string(k.str()) + "'");
  }
  auto str = [&](const toml::table& t, std::string_view key, std::string_view ctx,
                 bool required) -> std::string {
    const toml::node* n = t.get(key);
    if (!n) {
      if (required) problem(nullptr, "missing key '" + std::string(ctx) + std::string(key) + "'");
      return {};
    }
    if (!n->is_string()) {
      problem(n, "key '" + std::string(ctx) + std::string(key) + "': expected a string");
      return {};
    }
    return std::string(*n->value<std::string>());
  };
  auto integer = [&](const toml::table& t, std::string_view key, std::string_view ctx,
                     std::int64_t lo, std::int64_t hi) -> std::int64_t {
    const toml::node* n = t.get(key);
    std::string full = std::string(ctx) + std::string(key);
    if (!n) {
      problem(nullptr, "missing key '" + full + "'");
      return 0;
    }
    if (!n->is_integer()) {
      problem(n, "key '" + full + "': expected an integer");
      return 0;
    }
    std::int64_t v = *n->value<std::int64_t>();
    if (v < lo || v > hi) {
      problem(n, "key '" + full + "': " + std::to_string(v) + " is out of range [" +
                     std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    return v;
  };

  ladder.name = str(root, "name", "", true);
  ladder.description = str(root, "description", "", false);
  ladder.container = str(root, "container", "", true);
  if (!ladder.container.empty() && ladder.container != "mpegts") {
    problem(root.get("container"), "key 'container': only \"mpegts\" is supported (hlssink2)");
  }
  if (const toml::node* n = root.get("segment_duration_s"); !n) {
    problem(nullptr, "missing key 'segment_duration_s'");
  } else if (!n->is_number()) {
    problem(n, "key 'segment_duration_s': expected a number");
  } else {
    ladder.segment_duration_s = n->value<double>().value_or(0);
    if (ladder.segment_duration_s < 1 || ladder.segment_duration_s > 60) {
      problem(n, "key 'segment_duration_s': must be between 1 and 60 seconds");
    }
  }
  const toml::array* rungs = root["rungs"].as_array();
  if (!rungs || rungs->empty()) {
    problem(root.get("rungs"), "at least one [[rungs]] entry is required");
  } else {
    std::set<std::string> names;
    for (std::size_t i = 0; i < rungs->size(); ++i) {
      const toml::table* t = (*rungs)[i].as_table();
      std::string ctx = "rungs[" + std::to_string(i) + "].";
      if (!t) {
        problem(&(*rungs)[i], "'" + ctx + "' must be a table");
        continue;
      }
      for (auto&& [k, v] : *t) {
        if (!kRungKeys.count(k.str())) {
          problem(&v, "unknown key '" + ctx + std::string(k.str()) + "'");
        }
      }
      Rung rung;
      rung.name = str(*t, "name", ctx, true);
      rung.codec = str(*t, "codec", ctx, true);
      rung.bitrate_bps = integer(*t, "bitrate_kbps", ctx, 8, 1024) * 1000;
      rung.sample_rate_hz =
          static_cast<std::int32_t>(integer(*t, "sample_rate_hz", ctx, 8000, 96000));
      rung.channels = static_cast<std::int32_t>(integer(*t, "channels", ctx, 1, 8));
      if (const toml::node* o = t->get("options")) {
        if (const toml::table* opts = o->as_table()) {
          for (auto&& [k, v] : *opts) {
            if (auto text = v.value<std::string>(); text && v.is_string()) {
              rung.options[std::string(k.str())] = *text;
            } else {
              problem(&v,
                      "key '" + ctx + "options." + std::string(k.str()) + "': expected a string");
            }
          }
        } else {
          problem(o, "key '" + ctx + "options': expected a table, e.g. { coder = \"fast\" }");
        }
      }
      bool safe_name = !rung.name.empty() && rung.name.size() <= 64 &&
                       std::all_of(rung.name.begin(), rung.name.end(), [](char c) {
                         return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
                       });
      if (t->get("name") && t->get("name")->is_string() && !safe_name) {
        problem(t->get("name"), "key '" + ctx + "name': use letters, digits, '-' or '_' only");
      }
      if (!names.insert(rung.name).second) {
        problem(t->get("name"), "duplicate rung name '" + rung.name + "'");
      }
      ladder.rungs.push_back(std::move(rung));
    }
  }
  if (!problems.empty()) {
    std::string msg;
    for (const auto& p : problems) msg += (msg.empty() ? "" : "\n") + p;
    return makeError(ErrorCode::kConfig, msg);
  }
  return ladder;
}

Result<Ladder> loadLadderFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return makeError(ErrorCode::kNotFound, "cannot read pipeline file '" + path.string() + "'");
  std::ostringstream text;
  text << in.rdbuf();
  return parseLadder(text.str(), path.string());
}

std::vector<std::string> listLadders(const std::vector<std::filesystem::path>& search_dirs) {
  std::set<std::string> names;
  for (const auto& dir : search_dirs) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      if (entry.path().extension() == ".toml") names.insert(entry.path().stem().string());
    }
  }
  return {names.begin(), names.end()};
}

Result<Ladder> findLadder(std::string_view name,
                          const std::vector<std::filesystem::path>& search_dirs) {
  bool plain = !name.empty() && name.find('/') == std::string_view::npos &&
               name.find("..") == std::string_view::npos;
  if (plain) {
    for (const auto& dir : search_dirs) {
      std::filesystem::path candidate = dir / (std::string(name) + ".toml");
      std::error_code ec;
      if (std::filesystem::is_regular_file(candidate, ec)) return loadLadderFile(candidate);
    }
  }
  std::string known;
  for (const auto& n : listLadders(search_dirs)) known += (known.empty() ? "" : ", ") + n;
  return makeError(ErrorCode::kNotFound,
                   "unknown pipeline '" + std::string(name) +
                       "' (available: " + (known.empty() ? "none found" : known) + ")");
}

}  // namespace vessel
