// `vessel serve`: the whole product in one process — the HTTP server, workers
// and the scheduler on the embedded defaults (or the configured database and
// storage). SIGTERM/SIGINT stop it gracefully.
#include <signal.h>

#include "cli.hpp"
#include "vessel/log.hpp"
#include "vessel/server.hpp"

namespace vessel::cli {

int cmdServe(int argc, char** argv) {
  Flags flags;
  if (auto err = parseFlags(argc, argv, 2,
                            {"--config", "--data-dir", "--database-url", "--listen", "--workers"},
                            {}, flags)) {
    return fail(kExitUsage, *err);
  }
  if (!flags.positional.empty()) return fail(kExitUsage, "serve takes no arguments (see --help)");
  // Before any thread starts: then only this thread receives them (sigwait).
  const sigset_t stop_signals = blockStopSignals();

  Env env;
  if (auto code = openEnv(flags, env, EnvNeeds{.storage = false, .database = false})) return *code;
  int workers = 0;
  if (auto code = workerCount(flags, env.runtime->config(), workers)) return *code;
  ServeOptions options;
  options.data_dir = env.data_dir;
  options.listen = flags.get("--listen");
  options.workers = workers;
  options.database_url = flags.get("--database-url");
  auto app = AppServer::start(*env.runtime, options);
  if (!app.ok()) {
    const ErrorCode code = app.error().code;
    return fail(code == ErrorCode::kConfig        ? kExitConfig
                : code == ErrorCode::kUnavailable ? kExitUnavailable
                                                  : exitCodeFor(code),
                app.error().message);
  }
  int sig = 0;
  sigwait(&stop_signals, &sig);
  log::info("stopping: in-flight requests finish, running jobs finish or are released",
            {{"signal", static_cast<long long>(sig)}});
  app.value()->stop();
  app.value().reset();  // the embedded database (if ours) stops here
  return kExitOk;
}

}  // namespace vessel::cli
