// Shared pieces of the `vessel` command line: exit codes and the one-line error.
#pragma once

#include <signal.h>

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vessel/result.hpp"
#include "vessel/runtime.hpp"

namespace vessel::cli {

constexpr int kExitOk = 0;
constexpr int kExitUsage = 64;
constexpr int kExitInput = 65;
constexpr int kExitUnavailable = 69;
constexpr int kExitInternal = 70;
constexpr int kExitOutput = 73;
constexpr int kExitTempFail = 75;
constexpr int kExitConfig = 78;

/// Prints "vessel: error: MESSAGE" as exactly one line and returns `code`.
int fail(int code, const std::string& message);
int exitCodeFor(ErrorCode code);

/// Generic flags: "--name VALUE", "--name=VALUE" for valued flags, "--name" for
/// switches. Unknown flags are a usage error.
struct Flags {
  std::map<std::string, std::string> values;
  std::vector<std::string> positional;
  bool has(const std::string& name) const { return values.count(name) > 0; }
  std::string get(const std::string& name, const std::string& fallback = "") const {
    auto it = values.find(name);
    return it == values.end() ? fallback : it->second;
  }
};
std::optional<std::string> parseFlags(int argc, char** argv, int start,
                                      const std::vector<std::string>& valued,
                                      const std::vector<std::string>& switches, Flags& out);

/// What a command opened: config and plugins, the data dir and, as asked, the
/// database (embedded or external, migrated) and the storage.
struct Env {
  std::unique_ptr<Runtime> runtime;
  std::filesystem::path data_dir;
  Runtime::DatabaseHandle db;  ///< empty unless EnvNeeds::database
  std::shared_ptr<Storage> storage;
};
struct EnvNeeds {
  bool storage = true;
  bool database = true;
};
/// On failure prints the one error line and returns the exit code.
std::optional<int> openEnv(const Flags& flags, Env& env, EnvNeeds needs = {});
/// Worker threads: --workers N (0..256), else workers.concurrency (0 = one per
/// CPU core). On a bad value prints the error and returns the exit code.
std::optional<int> workerCount(const Flags& flags, const Config& config, int& out);

/// Blocks SIGINT and SIGTERM in the calling thread (and the threads it starts
/// afterwards) and returns that set, for the main thread to sigwait() on.
sigset_t blockStopSignals();

int cmdWorker(int argc, char** argv);
/// `vessel worker --server URL`: claims and reports over HTTP, no database.
int cmdRemoteWorker(const Flags& flags);
int cmdServe(int argc, char** argv);
int cmdSubmit(int argc, char** argv);
int cmdStatus(int argc, char** argv);
int cmdCleanup(int argc, char** argv);

}  // namespace vessel::cli
