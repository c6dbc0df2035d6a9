// `vessel worker`, `vessel submit`, `vessel status`, `vessel cleanup`: the
// PostgreSQL-backed commands.
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli.hpp"
#include "vessel/cleanup.hpp"
#include "vessel/jobs.hpp"
#include "vessel/log.hpp"
#include "vessel/runtime.hpp"
#include "vessel/scheduler.hpp"
#include "vessel/server.hpp"
#include "vessel/worker.hpp"

namespace fs = std::filesystem;

namespace vessel::cli {
namespace {

const std::vector<std::string> kCommonValued = {"--config", "--data-dir", "--database-url"};

}  // namespace

sigset_t blockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

std::optional<int> openEnv(const Flags& flags, Env& env, EnvNeeds needs) {
  RuntimeOptions options;
  options.extra_fields = serverConfigFields();  // one config file serves every command
  if (flags.has("--config")) options.config_file = fs::path(flags.get("--config"));
  auto rt = Runtime::create(options);
  if (!rt.ok()) return fail(kExitConfig, rt.error().message);
  env.runtime = std::move(rt).value();
  log::setLevel(env.runtime->config().getString("log.level"));
  env.data_dir = flags.has("--data-dir") ? fs::path(flags.get("--data-dir"))
                                         : fs::path(env.runtime->config().getString("data_dir"));
  if (needs.database) {
    auto db = env.runtime->openDatabase(env.data_dir, flags.get("--database-url"));
    if (!db.ok()) {
      return fail(db.error().code == ErrorCode::kConfig ? kExitConfig : kExitUnavailable,
                  "database: " + db.error().message);
    }
    env.db = std::move(db).value();
  }
  if (needs.storage) {
    auto storage = env.runtime->storageFor(env.data_dir);
    if (!storage.ok()) return fail(kExitConfig, storage.error().message);
    env.storage = storage.value();
  }
  return std::nullopt;
}

std::optional<int> workerCount(const Flags& flags, const Config& config, int& out) {
  long workers = config.getInt("workers.concurrency");
  if (flags.has("--workers")) {
    try {
      workers = std::stol(flags.get("--workers"));
    } catch (...) {
      return fail(kExitUsage, "--workers needs a number");
    }
    if (workers < 0 || workers > 256) return fail(kExitUsage, "--workers must be 0..256");
  } else if (workers == 0) {
    workers = static_cast<long>(std::max(1u, std::thread::hardware_concurrency()));
  }
  out = static_cast<int>(workers);
  return std::nullopt;
}

namespace {

QueueOptions queueOptions(const Config& c) {
  QueueOptions q;
  q.lease = std::chrono::seconds(c.getInt("workers.lease_s"));
  q.backoff_base = std::chrono::seconds(c.getInt("workers.backoff_base_s"));
  q.max_attempts = static_cast<std::int32_t>(c.getInt("workers.max_attempts"));
  return q;
}

nlohmann::json uploadJson(const UploadRecord& u) {
  nlohmann::json j = {{"id", u.id},
                      {"user_id", u.user_id},
                      {"filename", u.filename},
                      {"content_type", u.content_type},
                      {"size", u.size_bytes},
                      {"status", u.status},
                      {"progress", u.progress},
                      {"created_at", u.created_at},
                      {"updated_at", u.updated_at}};
  j["duration_s"] = u.duration_s ? nlohmann::json(*u.duration_s) : nlohmann::json(nullptr);
  j["error"] = u.error ? nlohmann::json(*u.error) : nlohmann::json(nullptr);
  j["title"] = u.title ? nlohmann::json(*u.title) : nlohmann::json(nullptr);
  j["artist"] = u.artist ? nlohmann::json(*u.artist) : nlohmann::json(nullptr);
  return j;
}

}  // namespace

int cmdWorker(int argc, char** argv) {
  Flags flags;
  if (auto err = parseFlags(argc, argv, 2,
                            {"--config", "--data-dir", "--database-url", "--workers", "--server",
                             "--worker-secret-file"},
                            {}, flags)) {
    return fail(kExitUsage, *err);
  }
  if (!flags.positional.empty()) return fail(kExitUsage, "worker takes no arguments (see --help)");
  if (flags.has("--server")) return cmdRemoteWorker(flags);
  if (flags.has("--worker-secret-file")) {
    return fail(kExitUsage, "--worker-secret-file is only for remote workers (with --server URL)");
  }
  // Before any thread starts: then only this thread receives them (sigwait).
  const sigset_t stop_signals = blockStopSignals();

  Env env;
  if (auto code = openEnv(flags, env)) return *code;
  const Config& c = env.runtime->config();
  WorkerOptions options;
  if (auto code = workerCount(flags, c, options.concurrency)) return *code;
  options.conninfo = env.db.conninfo;
  options.queue = queueOptions(c);
  options.heartbeat = std::chrono::seconds(c.getInt("workers.heartbeat_s"));
  options.shutdown_grace = std::chrono::seconds(c.getInt("workers.shutdown_grace_s"));
  options.stall_timeout = std::chrono::seconds(c.getInt("transcode.stall_timeout_s"));
  WorkerPool pool(*env.runtime, env.storage, options);
  pool.start();
  // Periodic maintenance (scheduler.enabled); runs in every worker process,
  // the plugins' own locks keep passes from overlapping across processes.
  std::vector<std::pair<std::string, std::shared_ptr<Scheduler>>> schedulers;
  for (const auto& name : c.getStringList("scheduler.enabled")) {
    auto s = env.runtime->plugins().createScheduler(name, c);
    if (!s.ok()) return fail(kExitConfig, s.error().message);
    schedulers.emplace_back(name, s.value());
  }
  SchedulerRunner runner(std::move(schedulers), {env.db.conninfo, env.storage});
  runner.start();
  log::info("worker started", {{"workers", static_cast<long long>(options.concurrency)},
                               {"embedded_db", env.db.embedded != nullptr}});
  int sig = 0;
  sigwait(&stop_signals, &sig);
  log::info("stopping: no new claims; running jobs finish or are released",
            {{"signal", static_cast<long long>(sig)}});
  runner.stop();
  pool.requestStop();
  pool.join();
  log::info("worker stopped", {{"done", static_cast<long long>(pool.jobsDone())},
                               {"failed", static_cast<long long>(pool.jobsFailed())}});
  return kExitOk;  // env (and an owned embedded cluster) is torn down here
}

int cmdSubmit(int argc, char** argv) {
  Flags flags;
  if (auto err = parseFlags(
          argc, argv, 2,
          {"--config", "--data-dir", "--database-url", "--user", "--pipeline", "--content-type"},
          {}, flags)) {
    return fail(kExitUsage, *err);
  }
  if (flags.positional.size() != 1) return fail(kExitUsage, "submit needs exactly one FILE");
  const std::string file = flags.positional[0];
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return fail(kExitInput, "cannot read '" + file + "'");
  Env env;
  if (auto code = openEnv(flags, env)) return *code;
  auto store = JobStore::connect(env.db.conninfo, queueOptions(env.runtime->config()));
  if (!store.ok()) return fail(kExitUnavailable, store.error().message);
  JobStore& s = *store.value();
  const std::string email = flags.get("--user", "admin@localhost");
  auto uid = s.findUserByEmail(email);
  if (!uid.ok()) return fail(kExitUnavailable, uid.error().message);
  std::string user_id;
  if (uid.value()) {
    user_id = *uid.value();
  } else {
    auto created = s.createUser(email, "");
    if (!created.ok()) return fail(kExitUnavailable, created.error().message);
    user_id = created.value();
  }
  NewUpload nu;
  nu.user_id = user_id;
  nu.filename = fs::path(file).filename().string();
  nu.content_type = flags.get("--content-type", "application/octet-stream");
  nu.size_bytes = static_cast<std::int64_t>(fs::file_size(file, ec));
  auto up = s.createUpload(nu);
  if (!up.ok()) return fail(kExitUnavailable, up.error().message);
  // Stream the file into storage, then enqueue (the upload row stays
  // `uploading` until the bytes are there).
  auto writer = env.storage->openWriter(up.value().storage_key, nu.content_type);
  if (!writer.ok()) return fail(exitCodeFor(writer.error().code), writer.error().message);
  std::ifstream in(file, std::ios::binary);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    std::streamsize n = in.gcount();
    if (n <= 0) break;
    auto w = writer.value()->write(
        std::span(reinterpret_cast<const std::byte*>(buf.data()), static_cast<std::size_t>(n)));
    if (!w.ok()) return fail(exitCodeFor(w.error().code), w.error().message);
  }
  if (auto r = writer.value()->commit(); !r.ok())
    return fail(exitCodeFor(r.error().code), r.error().message);
  const std::string pipeline =
      flags.get("--pipeline", env.runtime->config().getString("transcode.pipeline"));
  auto job = s.enqueue(up.value().id, pipeline);
  if (!job.ok()) return fail(kExitUnavailable, job.error().message);
  nlohmann::json out = {
      {"upload_id", up.value().id}, {"job_id", job.value()}, {"user_id", user_id}};
  std::cout << out.dump() << std::endl;
  return kExitOk;
}

int cmdStatus(int argc, char** argv) {
  Flags flags;
  if (auto err = parseFlags(argc, argv, 2, kCommonValued, {}, flags)) return fail(kExitUsage, *err);
  if (flags.positional.size() != 1) return fail(kExitUsage, "status needs exactly one UPLOAD_ID");
  Env env;
  if (auto code = openEnv(flags, env, {.storage = false})) return *code;
  auto store = JobStore::connect(env.db.conninfo);
  if (!store.ok()) return fail(kExitUnavailable, store.error().message);
  auto up = store.value()->getUpload(flags.positional[0]);
  if (!up.ok()) return fail(exitCodeFor(up.error().code), up.error().message);
  if (!up.value()) return fail(kExitInput, "no upload " + flags.positional[0]);
  std::cout << uploadJson(*up.value()).dump(2) << std::endl;
  return kExitOk;
}

int cmdCleanup(int argc, char** argv) {
  Flags flags;
  if (auto err = parseFlags(argc, argv, 2, kCommonValued, {"--dry-run"}, flags)) {
    return fail(kExitUsage, *err);
  }
  if (!flags.positional.empty()) return fail(kExitUsage, "cleanup takes no arguments");
  Env env;
  if (auto code = openEnv(flags, env)) return *code;
  // One pass of the `cleanup` scheduler plugin, exactly as the scheduler runs it.
  auto scheduler = env.runtime->plugins().createScheduler("cleanup", env.runtime->config());
  if (!scheduler.ok()) return fail(kExitConfig, scheduler.error().message);
  auto summary = scheduler.value()->runOnce({env.db.conninfo, env.storage}, flags.has("--dry-run"));
  if (!summary.ok()) return fail(exitCodeFor(summary.error().code), summary.error().message);
  std::cout << summary.value() << std::endl;
  auto parsed = nlohmann::json::parse(summary.value(), nullptr, false);
  bool errors = parsed.is_object() && parsed.value("errors", 0) > 0;
  return errors ? kExitTempFail : kExitOk;
}

}  // namespace vessel::cli
