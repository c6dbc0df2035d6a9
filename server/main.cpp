// `vessel`: the command-line front end of the core (transcode, probe, plugins).
//
// Exit codes (sysexits.h): 0 ok, 64 usage, 65 bad input, 70 internal,
// 73 cannot create output, 75 temporary failure (stalled/timeout), 78 config.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli.hpp"
#include "vessel/probe.hpp"
#include "vessel/runtime.hpp"
#include "vessel/server.hpp"
#include "vessel/transcode.hpp"

namespace fs = std::filesystem;

namespace vessel::cli {

int fail(int code, const std::string& message) {
  std::string line = message;
  for (auto& c : line) {
    if (c == '\n') c = ';';
  }
  std::cerr << "vessel: error: " << line << std::endl;
  return code;
}

int exitCodeFor(ErrorCode code) {
  switch (code) {
    case ErrorCode::kUnsupportedInput:
    case ErrorCode::kCorruptInput:
    case ErrorCode::kNotFound:
      return kExitInput;
    case ErrorCode::kTimeout:
    case ErrorCode::kUnavailable:
      return kExitTempFail;
    case ErrorCode::kNoSpace:
    case ErrorCode::kPermissionDenied:
    case ErrorCode::kAlreadyExists:
      return kExitOutput;
    case ErrorCode::kConfig:
      return kExitConfig;
    case ErrorCode::kInvalidArgument:
      return kExitUsage;
    default:
      return kExitInternal;
  }
}

std::optional<std::string> parseFlags(int argc, char** argv, int start,
                                      const std::vector<std::string>& valued,
                                      const std::vector<std::string>& switches, Flags& out) {
  auto in = [](const std::vector<std::string>& v, const std::string& x) {
    return std::find(v.begin(), v.end(), x) != v.end();
  };
  for (int i = start; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") {
      for (++i; i < argc; ++i) out.positional.emplace_back(argv[i]);
      break;
    }
    if (a.size() > 1 && a[0] == '-') {
      std::string name = a, value;
      bool inline_value = false;
      if (auto eq = a.find('='); eq != std::string::npos) {
        name = a.substr(0, eq);
        value = a.substr(eq + 1);
        inline_value = true;
      }
      if (in(switches, name) && !inline_value) {
        out.values[name] = "1";
      } else if (in(valued, name)) {
        if (!inline_value) {
          if (i + 1 >= argc) return name + " needs a value";
          value = argv[++i];
        }
        if (value.empty()) return name + " needs a value";
        out.values[name] = value;
      } else {
        return "unknown option '" + a + "'";
      }
    } else {
      out.positional.push_back(a);
    }
  }
  return std::nullopt;
}

}  // namespace vessel::cli

namespace {

using namespace vessel::cli;

std::atomic<bool> g_cancel{false};

const char* kUsage =
    "usage: vessel <command> [options]\n"
    "\n"
    "commands:\n"
    "  transcode [--pipeline NAME] [--config FILE] INPUT OUTDIR\n"
    "                 make the HLS ladder of INPUT in OUTDIR (which must not exist or be empty)\n"
    "  probe [--config FILE] INPUT\n"
    "                 print what INPUT holds as JSON\n"
    "  plugins [--config FILE] [--json]\n"
    "                 list the plugins found: kind, name, version, ABI version, file\n"
    "  serve [--config FILE] [--data-dir DIR] [--listen HOST:PORT] [--workers N]\n"
    "        [--database-url URL]\n"
    "                 the HTTP server with in-process workers and the scheduler\n"
    "  worker [--data-dir DIR] [--database-url URL] [--workers N] [--config FILE]\n"
    "                 claim and run transcode jobs until SIGTERM/SIGINT\n"
    "  worker --server URL --worker-secret-file F [--workers N] [--data-dir DIR]\n"
    "                 the same without database credentials: claim and report over HTTP\n"
    "  submit FILE [--user EMAIL] [--pipeline NAME] [--data-dir DIR] [--database-url URL]\n"
    "                 store FILE as a new upload and queue its job; prints its id\n"
    "  status UPLOAD_ID [--data-dir DIR] [--database-url URL]\n"
    "                 print an upload's record as JSON\n"
    "  cleanup [--dry-run] [--data-dir DIR] [--database-url URL]\n"
    "                 one pass of the cleanup of failed and stale uploads\n"
    "  --help, --version\n"
    "\n"
    "Every config key can be set as VESSEL_<KEY> (e.g. VESSEL_TRANSCODE_PIPELINE=hls-aac-lite).\n"
    "exit codes: 0 ok, 64 usage, 65 bad input, 69 database unavailable, 70 internal,\n"
    "            73 cannot write output,\n"
    "            75 stalled/timed out (retry), 78 invalid config\n";

struct Args {
  std::vector<std::string> positional;
  std::optional<std::string> pipeline;
  std::optional<std::string> config;
  bool json = false;
};

// Parses flags allowed for a command; returns an error message on bad usage.
std::optional<std::string> parseArgs(int argc, char** argv, int start, bool allow_pipeline,
                                     bool allow_json, Args& out) {
  for (int i = start; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* flag) -> std::optional<std::string> {
      std::string prefix = std::string(flag) + "=";
      if (a.rfind(prefix, 0) == 0) return a.substr(prefix.size());
      if (i + 1 >= argc) return std::nullopt;
      return std::string(argv[++i]);
    };
    if (a == "--") {
      for (++i; i < argc; ++i) out.positional.emplace_back(argv[i]);
      break;
    }
    if (allow_pipeline && (a == "--pipeline" || a.rfind("--pipeline=", 0) == 0)) {
      out.pipeline = value("--pipeline");
      if (!out.pipeline || out.pipeline->empty()) return "--pipeline needs a NAME";
    } else if (a == "--config" || a.rfind("--config=", 0) == 0) {
      out.config = value("--config");
      if (!out.config || out.config->empty()) return "--config needs a FILE";
    } else if (allow_json && a == "--json") {
      out.json = true;
    } else if (a.size() > 1 && a[0] == '-') {
      return "unknown option '" + a + "'";
    } else {
      out.positional.push_back(a);
    }
  }
  return std::nullopt;
}

vessel::Result<std::unique_ptr<vessel::Runtime>> makeRuntime(const Args& args) {
  vessel::RuntimeOptions options;
  options.extra_fields = vessel::serverConfigFields();  // one config file serves every command
  if (args.config) options.config_file = fs::path(*args.config);
  return vessel::Runtime::create(options);
}

int cmdPlugins(const Args& args) {
  if (!args.positional.empty()) return fail(kExitUsage, "plugins takes no arguments (see --help)");
  auto rt = makeRuntime(args);
  if (!rt.ok()) return fail(kExitConfig, rt.error().message);
  auto& host = rt.value()->plugins();
  if (args.json) {
    nlohmann::json j;
    j["plugins"] = nlohmann::json::array();
    for (const auto& p : host.plugins()) {
      j["plugins"].push_back({{"kind", vessel::pluginKindName(p.kind)},
                              {"name", p.name},
                              {"version", p.version},
                              {"abi_version", p.abi_version},
                              {"description", p.description},
                              {"path", p.path.string()}});
    }
    j["problems"] = host.problems();
    std::cout << j.dump(2) << std::endl;
  } else {
    std::printf("%-10s %-14s %-9s %-4s %s\n", "KIND", "NAME", "VERSION", "ABI", "FILE");
    for (const auto& p : host.plugins()) {
      std::printf("%-10s %-14s %-9s %-4u %s\n", vessel::pluginKindName(p.kind), p.name.c_str(),
                  p.version.c_str(), p.abi_version, p.path.c_str());
    }
    for (const auto& problem : host.problems()) std::printf("skipped: %s\n", problem.c_str());
  }
  return kExitOk;
}

int cmdProbe(const Args& args) {
  if (args.positional.size() != 1)
    return fail(kExitUsage, "probe needs exactly one INPUT (see --help)");
  auto rt = makeRuntime(args);
  if (!rt.ok()) return fail(kExitConfig, rt.error().message);
  auto timeout = std::chrono::seconds(rt.value()->config().getInt("transcode.probe_timeout_s"));
  auto probe = vessel::probeFile(args.positional[0], timeout);
  if (!probe.ok()) {
    int code = exitCodeFor(probe.error().code);
    return fail(code == kExitUsage ? kExitInput : code, probe.error().message);
  }
  std::cout << vessel::toJson(probe.value()).dump(2) << std::endl;
  return kExitOk;
}

// Removes a staging directory we created (never anything else).
void removeTree(const fs::path& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
}

class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled) {}
  void update(double p) {
    if (!enabled_) return;
    int width = 30;
    int filled = static_cast<int>(p * width);
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.resize(static_cast<std::size_t>(width), ' ');
    std::fprintf(stderr, "\r[%s] %3d%%", bar.c_str(), static_cast<int>(p * 100));
    std::fflush(stderr);
    shown_ = true;
  }
  void finish() {
    if (shown_) std::fprintf(stderr, "\r%*s\r", 40, "");
  }

 private:
  bool enabled_;
  bool shown_ = false;
};

int cmdTranscode(const Args& args) {
  if (args.positional.size() != 2) {
    return fail(kExitUsage, "transcode needs INPUT and OUTDIR (see --help)");
  }
  const std::string input = args.positional[0];
  const fs::path outdir = fs::absolute(fs::path(args.positional[1])).lexically_normal();

  auto rt_result = makeRuntime(args);
  if (!rt_result.ok()) return fail(kExitConfig, rt_result.error().message);
  vessel::Runtime& rt = *rt_result.value();

  std::string pipeline =
      args.pipeline ? *args.pipeline : rt.config().getString("transcode.pipeline");
  auto ladder = rt.ladder(pipeline);
  if (!ladder.ok()) {
    return fail(ladder.error().code == vessel::ErrorCode::kNotFound ? kExitUsage : kExitConfig,
                ladder.error().message);
  }

  // The output: OUTDIR must be absent or empty, and its parent a writable directory.
  std::error_code ec;
  fs::path parent = outdir.parent_path();
  if (outdir.filename().empty() || outdir == parent) {
    return fail(kExitUsage, "OUTDIR '" + outdir.string() + "' is not a usable directory name");
  }
  bool out_exists = fs::exists(fs::symlink_status(outdir, ec));
  if (out_exists) {
    if (!fs::is_directory(outdir, ec)) {
      return fail(kExitOutput, "OUTDIR '" + outdir.string() + "' exists and is not a directory");
    }
    if (!fs::is_empty(outdir, ec)) {
      return fail(kExitOutput,
                  "OUTDIR '" + outdir.string() + "' is not empty; refusing to overwrite");
    }
  }
  if (!fs::is_directory(parent, ec)) {
    return fail(kExitOutput, "cannot create OUTDIR '" + outdir.string() + "': '" + parent.string() +
                                 "' is not a directory");
  }
  if (::access(parent.c_str(), W_OK | X_OK) != 0) {
    return fail(kExitOutput, "cannot create OUTDIR '" + outdir.string() + "': '" + parent.string() +
                                 "' is not writable: " + std::strerror(errno));
  }

  auto probe = vessel::probeFile(
      input, std::chrono::seconds(rt.config().getInt("transcode.probe_timeout_s")));
  if (!probe.ok()) {
    int code = exitCodeFor(probe.error().code);
    return fail(code == kExitUsage ? kExitInput : code, probe.error().message);
  }
  auto codecs = rt.codecsFor(ladder.value());
  if (!codecs.ok()) return fail(kExitConfig, codecs.error().message);

  // Work in a hidden sibling directory; rename it into place only when complete.
  std::string pattern = (parent / ("." + outdir.filename().string() + ".vessel-XXXXXX")).string();
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) {
    return fail(kExitOutput, "cannot create a working directory in '" + parent.string() +
                                 "': " + std::strerror(errno));
  }
  const fs::path staging(buf.data());
  auto storage = rt.storageWith("local", {{"root", staging.string()}, {"create_root", false}});
  if (!storage.ok()) {
    removeTree(staging);
    return fail(kExitConfig, storage.error().message);
  }

  vessel::TranscodeRequest req;
  req.input_path = input;
  req.ladder = ladder.value();
  req.codecs = std::move(codecs).value();
  req.storage = storage.value();
  req.source_duration_s = probe.value().duration_s;
  req.stall_timeout = std::chrono::seconds(rt.config().getInt("transcode.stall_timeout_s"));
  req.cancel = &g_cancel;
  ProgressBar bar(::isatty(STDERR_FILENO) == 1);
  req.on_progress = [&bar](double p) { bar.update(p); };

  auto started = std::chrono::steady_clock::now();
  auto result = vessel::transcodeLadder(req);
  bar.finish();
  req.storage.reset();
  storage = vessel::makeError(vessel::ErrorCode::kInternal, "released");
  if (!result.ok()) {
    removeTree(staging);
    if (result.error().code == vessel::ErrorCode::kCancelled) {
      return fail(130, "interrupted; no output written");
    }
    return fail(exitCodeFor(result.error().code), result.error().message);
  }
  if (out_exists) fs::remove(outdir, ec);  // empty, checked above
  if (::rename(staging.c_str(), outdir.c_str()) != 0) {
    int err = errno;
    removeTree(staging);
    return fail(kExitOutput, "cannot move the finished ladder to '" + outdir.string() +
                                 "': " + std::strerror(err));
  }
  double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const auto& r = result.value();
  std::printf("%s: %zu rungs, %zu segments per rung, %.3f s of audio in %.1f s (%.1fx realtime)\n",
              outdir.c_str(), r.rungs.size(), r.rungs.empty() ? 0 : r.rungs[0].segments.size(),
              r.duration_s, elapsed, elapsed > 0 ? r.duration_s / elapsed : 0.0);
  return kExitOk;
}

void onSignal(int) { g_cancel.store(true); }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return fail(kExitUsage, "no command given (see vessel --help)");
  std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::cout << kUsage;
    return kExitOk;
  }
  if (cmd == "--version") {
    std::cout << "vessel " << vessel::versionString() << std::endl;
    return kExitOk;
  }
  if (cmd == "serve") return cmdServe(argc, argv);
  if (cmd == "worker") return cmdWorker(argc, argv);
  if (cmd == "submit") return cmdSubmit(argc, argv);
  if (cmd == "status") return cmdStatus(argc, argv);
  if (cmd == "cleanup") return cmdCleanup(argc, argv);
  std::signal(SIGINT, onSignal);
  std::signal(SIGTERM, onSignal);
  Args args;
  bool known = cmd == "transcode" || cmd == "probe" || cmd == "plugins";
  if (!known) return fail(kExitUsage, "unknown command '" + cmd + "' (see vessel --help)");
  if (auto err = parseArgs(argc, argv, 2, cmd == "transcode", cmd == "plugins", args)) {
    return fail(kExitUsage, *err);
  }
  try {
    if (cmd == "transcode") return cmdTranscode(args);
    if (cmd == "probe") return cmdProbe(args);
    return cmdPlugins(args);
  } catch (const std::exception& e) {
    return fail(kExitInternal, std::string("internal error: ") + e.what());
  }
}
