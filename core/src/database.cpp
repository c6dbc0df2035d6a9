// EmbeddedPostgres: a private cluster driven through initdb/pg_ctl, run as an
// unprivileged user when we are root; and the schema migrations compiled into
// the core (see core/migrations/embed.py).
#include "vessel/database.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <optional>
#include <pqxx/pqxx>
#include <set>
#include <sstream>
#include <system_error>
#include <thread>
#include <utility>

#include "embedded_migrations.hpp"
#include "vessel/unique_fd.hpp"

namespace vessel {
namespace {

namespace fs = std::filesystem;

// Only a Unix socket is used, so the port is just the socket file's name
// (.s.PGSQL.5432) inside our private directory and cannot collide with anything.
constexpr int kPort = 5432;
constexpr const char* kSocketName = ".s.PGSQL.5432";
// Enough of a command's output or log to show the actual error line(s).
constexpr std::size_t kTailBytes = 1500;
// Output kept from a child; initdb and pg_ctl print little, but never grow unbounded.
constexpr std::size_t kMaxCapturedBytes = 64 * 1024;
// Session advisory-lock key serialising migrations ("vessel" in ASCII, then 1).
constexpr long long kMigrationLockKey = 0x76657373656c0001LL;

std::string tail(const std::string& text, std::size_t bytes = kTailBytes) {
  std::string out = text.size() > bytes ? "..." + text.substr(text.size() - bytes) : text;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

std::string fileTail(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  const std::streamoff from = std::max<std::streamoff>(0, size - std::streamoff(kTailBytes));
  in.seekg(from);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return tail(text);
}

std::string errnoText(int err) { return std::error_code(err, std::generic_category()).message(); }

Error unavailable(std::string message) {
  return makeError(ErrorCode::kUnavailable, std::move(message));
}

/// Who the server commands run as, resolved up front because nothing that
/// reads /etc/passwd or /etc/group is safe between fork and exec.
struct Identity {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
  std::vector<gid_t> groups;
  bool switch_user = false;  ///< false: run as ourselves
};

// The name, ids and home of a passwd entry (groups are filled by lookupUser).
Identity identityFrom(const passwd& pw) {
  Identity id;
  id.name = pw.pw_name;
  id.uid = pw.pw_uid;
  id.gid = pw.pw_gid;
  id.home = pw.pw_dir ? pw.pw_dir : "/";
  return id;
}

std::optional<Identity> lookupUser(const std::string& name) {
  std::vector<char> buffer(16384);
  passwd entry{};
  passwd* found = nullptr;
  if (getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 || !found) {
    return std::nullopt;
  }
  Identity id = identityFrom(*found);
  int count = 32;
  id.groups.resize(count);
  if (getgrouplist(id.name.c_str(), id.gid, id.groups.data(), &count) < 0) {
    id.groups.resize(count);  // count now holds the required size
    getgrouplist(id.name.c_str(), id.gid, id.groups.data(), &count);
  }
  id.groups.resize(std::max(count, 0));
  return id;
}

std::optional<Identity> currentUser() {
  std::vector<char> buffer(16384);
  passwd entry{};
  passwd* found = nullptr;
  if (getpwuid_r(geteuid(), &entry, buffer.data(), buffer.size(), &found) != 0 || !found) {
    return std::nullopt;
  }
  return identityFrom(*found);
}

struct CommandResult {
  int wait_status = 0;
  std::string output;  ///< stdout and stderr interleaved

  bool succeeded() const { return WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0; }
  std::string describeExit() const {
    if (WIFEXITED(wait_status)) return "exit " + std::to_string(WEXITSTATUS(wait_status));
    if (WIFSIGNALED(wait_status)) return "signal " + std::to_string(WTERMSIG(wait_status));
    return "status " + std::to_string(wait_status);
  }
};

/// Runs argv[0] (an absolute path) with argv, no shell, optionally as `as`,
/// and waits for it. Only fails itself if the child could not be created.
Result<CommandResult> runCommand(const std::vector<std::string>& argv, const Identity& as) {
  // Everything the child needs is built here: between fork and exec only
  // async-signal-safe calls are allowed (we may be one thread of many).
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);

  // A fixed environment: the server must not pick up PG* variables, a locale
  // that does not exist, or whatever else the embedding process carries.
  std::vector<std::string> env_strings = {
      "PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
      "LC_ALL=C",
      "LANG=C",
      "HOME=" + (as.home.empty() ? std::string("/") : as.home),
      "USER=" + as.name,
      "LOGNAME=" + as.name,
  };
  if (const char* tz = std::getenv("TZ")) env_strings.push_back(std::string("TZ=") + tz);
  std::vector<char*> env;
  for (auto& entry : env_strings) env.push_back(entry.data());
  env.push_back(nullptr);
  const std::string exec_failed = "cannot execute " + argv[0] + "\n";

  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return unavailable("pipe: " + errnoText(errno));
  UniqueFd read_end(pipe_fds[0]);
  UniqueFd write_end(pipe_fds[1]);
  UniqueFd dev_null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!dev_null.valid()) return unavailable("/dev/null: " + errnoText(errno));

  const pid_t pid = fork();
  if (pid < 0) return unavailable("fork: " + errnoText(errno));
  if (pid == 0) {
    if (dup2(dev_null.get(), STDIN_FILENO) < 0 || dup2(write_end.get(), STDOUT_FILENO) < 0 ||
        dup2(write_end.get(), STDERR_FILENO) < 0) {
      _exit(127);
    }
    // pg_ctl's postmaster outlives us: it must not hold our sockets or files.
    close_range(3, ~0U, 0);
    // Undo what the embedding process may have set (a server blocks signals for
    // sigwait and ignores SIGPIPE); dispositions of ignored signals survive exec.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &dfl, nullptr);
    sigaction(SIGCHLD, &dfl, nullptr);
    if (as.switch_user) {
      if (setgroups(as.groups.size(), as.groups.data()) != 0 || setgid(as.gid) != 0 ||
          setuid(as.uid) != 0) {
        _exit(126);
      }
    }
    // Our cwd (say /root) may not be readable by the cluster user, and initdb
    // and pg_ctl call getcwd(); all paths we pass are absolute.
    if (chdir("/") != 0) _exit(126);
    execve(args[0], args.data(), env.data());
    [[maybe_unused]] auto ignored = write(STDERR_FILENO, exec_failed.data(), exec_failed.size());
    _exit(127);
  }
  write_end.reset();
  dev_null.reset();

  CommandResult result;
  char chunk[4096];
  for (;;) {
    const ssize_t n = read(read_end.get(), chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    result.output.append(chunk, std::size_t(n));
    if (result.output.size() > kMaxCapturedBytes) {
      result.output.erase(0, result.output.size() - kMaxCapturedBytes);
    }
  }
  while (waitpid(pid, &result.wait_status, 0) < 0) {
    if (errno != EINTR) return unavailable(argv[0] + ": waitpid: " + errnoText(errno));
  }
  return result;
}

/// The most recently written file in `dir` (the server's log_directory).
fs::path newestFile(const fs::path& dir) {
  fs::path newest;
  fs::file_time_type newest_time{};
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code time_ec;
    const auto time = it->last_write_time(time_ec);
    if (!time_ec && it->is_regular_file(time_ec) && (newest.empty() || time > newest_time)) {
      newest = it->path();
      newest_time = time;
    }
  }
  return newest;
}

/// `logs`: files whose tails explain the failure (pg_ctl's -l file has what
/// happened before the logging collector took over, the collector's file the rest).
Error commandFailed(const std::string& what, const CommandResult& result,
                    const std::vector<fs::path>& logs = {}) {
  std::string message = what + " failed (" + result.describeExit() + "): " + tail(result.output);
  for (const auto& log : logs) {
    if (log.empty()) continue;
    const std::string log_tail = fileTail(log);
    if (!log_tail.empty()) message += "\nlog " + log.string() + ":\n" + log_tail;
  }
  return unavailable(std::move(message));
}

bool isExecutable(const fs::path& path) { return ::access(path.c_str(), X_OK) == 0; }

std::vector<int> parseVersion(const std::string& text) {
  std::vector<int> parts;
  std::size_t begin = 0;
  while (begin <= text.size()) {
    const std::size_t end = std::min(text.find('.', begin), text.size());
    int value = 0;
    const auto [ptr, ec] = std::from_chars(text.data() + begin, text.data() + end, value);
    if (ec != std::errc() || ptr != text.data() + end) return {};
    parts.push_back(value);
    begin = end + 1;
  }
  return parts;
}

/// The directory holding initdb and pg_ctl. Debian's pg_config belongs to the
/// client package and names a bindir without the server, so look where the
/// server packages put them: the cluster's own major version if it has one,
/// else the newest installed, else PATH.
Result<fs::path> findServerBinDir(const std::string& cluster_version) {
  auto usable = [](const fs::path& dir) {
    return isExecutable(dir / "initdb") && isExecutable(dir / "pg_ctl");
  };
  const fs::path root = "/usr/lib/postgresql";
  if (!cluster_version.empty() && usable(root / cluster_version / "bin")) {
    return root / cluster_version / "bin";
  }
  std::optional<std::pair<std::vector<int>, fs::path>> best;
  std::error_code ec;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const std::vector<int> version = parseVersion(it->path().filename().string());
    if (version.empty() || !usable(it->path() / "bin")) continue;
    if (!best || version > best->first) best.emplace(version, it->path() / "bin");
  }
  if (best) return best->second;
  if (const char* path = std::getenv("PATH")) {
    std::stringstream dirs(path);
    std::string dir;
    while (std::getline(dirs, dir, ':')) {
      if (!dir.empty() && usable(dir)) return fs::path(dir);
    }
  }
  return unavailable(
      "PostgreSQL server binaries not found (no /usr/lib/postgresql/<version>/bin/initdb, no "
      "initdb and pg_ctl on PATH); install the postgresql server package");
}

/// Ensures the system user exists, creating it (as a no-login system account)
/// if missing. Tolerates a concurrent creator.
Result<Identity> ensureSystemUser(const std::string& name) {
  if (auto id = lookupUser(name)) return *id;
  fs::path useradd;
  for (const char* candidate : {"/usr/sbin/useradd", "/sbin/useradd"}) {
    if (isExecutable(candidate)) {
      useradd = candidate;
      break;
    }
  }
  if (useradd.empty()) {
    return unavailable("system user '" + name + "' does not exist and useradd was not found");
  }
  Identity root = currentUser().value_or(Identity{});
  if (root.name.empty()) root.name = "root";
  auto run = runCommand({useradd.string(), "--system", "--home-dir", "/nonexistent", "--shell",
                         "/usr/sbin/nologin", name},
                        root);
  if (!run.ok()) return std::move(run).error();
  // Whether we or a concurrent starter created it, it now has to exist.
  if (auto id = lookupUser(name)) return *id;
  return commandFailed("useradd " + name, run.value());
}

Result<void> chownRecursive(const fs::path& top, const Identity& id) {
  auto change = [&](const fs::path& path) -> Result<void> {
    if (lchown(path.c_str(), id.uid, id.gid) != 0) {
      return unavailable("chown " + path.string() + " to " + id.name + ": " + errnoText(errno));
    }
    return {};
  };
  if (auto r = change(top); !r.ok()) return r;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(top, ec), end; !ec && it != end; it.increment(ec)) {
    if (auto r = change(it->path()); !r.ok()) return r;
  }
  if (ec) return unavailable("walking " + top.string() + ": " + ec.message());
  return {};
}

/// The cluster user must be able to reach pgdata and the log file; a data dir
/// under a 0700 root-owned parent (mkdtemp, /root) fails in initdb with a
/// message that does not say why, so say it here.
Result<void> checkSearchable(const fs::path& dir, const Identity& id) {
  for (fs::path p = dir; !p.empty(); p = p.parent_path()) {
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0) {
      const bool ok = (st.st_mode & S_IXOTH) || (st.st_uid == id.uid && (st.st_mode & S_IXUSR)) ||
                      (st.st_gid == id.gid && (st.st_mode & S_IXGRP));
      if (!ok) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
        return makeError(ErrorCode::kPermissionDenied,
                         "the PostgreSQL cluster runs as user '" + id.name +
                             "', which cannot enter " + p.string() + " (mode " + mode +
                             "); make it searchable (chmod o+x) or choose another data dir");
      }
    }
    if (p == p.root_path()) break;
  }
  return {};
}

/// Exclusive lock on a file for the duration of start()/stop(), so that two
/// starters (threads or processes) never both run initdb or pg_ctl start.
class FileLock {
 public:
  static Result<FileLock> acquire(const fs::path& path) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd.valid()) return unavailable("open " + path.string() + ": " + errnoText(errno));
    while (flock(fd.get(), LOCK_EX) != 0) {
      if (errno != EINTR) return unavailable("flock " + path.string() + ": " + errnoText(errno));
    }
    return FileLock(std::move(fd));
  }

 private:
  explicit FileLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;  // closing it releases the lock
};

/// Value for a libpq conninfo string: quoted only when it has to be.
std::string conninfoValue(const std::string& value) {
  const bool plain = !value.empty() && value.find_first_of(" \t\n'\\=") == std::string::npos;
  if (plain) return value;
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

std::string conninfoFor(const fs::path& socket_dir, const std::string& database,
                        const std::string& user) {
  return "host=" + conninfoValue(socket_dir.string()) + " port=" + std::to_string(kPort) +
         " dbname=" + conninfoValue(database) + " user=" + conninfoValue(user);
}

/// pg_ctl hands -o to /bin/sh (it runs "exec postgres <options>"), so each
/// argument must be shell-quoted even though we never build a shell command.
std::string shellQuote(const std::string& arg) {
  std::string out = "'";
  for (char c : arg) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string serverOptions(const fs::path& socket_dir) {
  // unix_socket_directories is a comma-separated list with "" quoting.
  std::string quoted_dir = "\"";
  for (char c : socket_dir.string()) {
    if (c == '"') quoted_dir += '"';
    quoted_dir += c;
  }
  quoted_dir += '"';
  const std::vector<std::string> settings = {
      // No TCP listener at all: the Unix socket in our directory is the only door,
      // which is what makes trust authentication acceptable.
      "listen_addresses=",
      "unix_socket_directories=" + quoted_dir,
      // Group access only; root connects regardless of mode, a non-root Vessel
      // runs the cluster as itself.
      "unix_socket_permissions=0770",
      "max_connections=100",
      "shared_buffers=64MB",
      "fsync=on",  // the queue and metadata must survive a power cut
      "logging_collector=on",
      "log_directory=log",  // relative to pgdata
      // One file per weekday, overwritten a week later: bounded disk use.
      "log_filename=postgresql-%a.log",
      "log_truncate_on_rotation=on",
      "log_rotation_age=1d",
      "log_rotation_size=0",
  };
  std::string options = "-p " + std::to_string(kPort);
  for (const auto& setting : settings) options += " -c " + shellQuote(setting);
  return options;
}

std::string readFirstLine(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

/// Whether the server behind our socket accepts connections as `user`; if
/// not, `why` gets libpq's reason.
bool serverAccepts(const fs::path& socket_dir, const std::string& user,
                   std::string* why = nullptr) {
  try {
    pqxx::connection conn(conninfoFor(socket_dir, "postgres", user) + " connect_timeout=5");
    return conn.is_open();
  } catch (const std::exception& e) {
    if (why) *why = tail(e.what());
    return false;
  }
}

/// The pid in a postgres lock file (postmaster.pid, or the socket's .lock) if
/// that process is still a running postgres. A zombie (left by an init that reaps lazily) or an
/// unrelated process that got the pid after a reboot or container restart does not count, although
/// postgres itself refuses to start over either.
std::optional<pid_t> lockHolder(const fs::path& lock_file) {
  const std::string line = readFirstLine(lock_file);
  long pid = 0;
  const auto [ptr, ec] = std::from_chars(line.data(), line.data() + line.size(), pid);
  if (ec != std::errc() || pid <= 0) return std::nullopt;
  std::ifstream stat_file("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(stat_file, stat)) {
    // No /proc to ask: fall back to "some process has that pid".
    if (::kill(pid_t(pid), 0) == 0 || errno == EPERM) return pid_t(pid);
    return std::nullopt;
  }
  // "<pid> (<comm>) <state> ..."; comm may itself contain ") ".
  const std::size_t open = stat.find('(');
  const std::size_t close = stat.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close + 2 >= stat.size()) {
    return pid_t(pid);  // unparseable: assume alive, the safe side
  }
  const std::string comm = stat.substr(open + 1, close - open - 1);
  const char state = stat[close + 2];
  if (state == 'Z' || state == 'X' || comm != "postgres") return std::nullopt;
  return pid_t(pid);
}

std::optional<pid_t> livePostmaster(const fs::path& pgdata) {
  return lockHolder(pgdata / "postmaster.pid");
}

Result<void> createDatabaseIfMissing(const fs::path& socket_dir, const std::string& user,
                                     const std::string& database) {
  try {
    pqxx::connection conn(conninfoFor(socket_dir, "postgres", user));
    pqxx::nontransaction tx(conn);
    if (tx.exec_params("SELECT 1 FROM pg_database WHERE datname = $1", database).empty()) {
      try {
        tx.exec0("CREATE DATABASE " + tx.quote_name(database));
      } catch (const pqxx::sql_error& e) {
        // 42P04 duplicate_database: a concurrent starter outside our lock made it.
        if (e.sqlstate() != "42P04") throw;
      }
    }
    return {};
  } catch (const pqxx::broken_connection& e) {
    return unavailable("connecting to the embedded PostgreSQL at " + socket_dir.string() + ": " +
                       tail(e.what()));
  } catch (const std::exception& e) {
    return unavailable("creating database '" + database + "': " + tail(e.what()));
  }
}

}  // namespace

Result<std::unique_ptr<EmbeddedPostgres>> EmbeddedPostgres::start(const Options& options) {
  try {
    if (options.data_dir.empty()) {
      return makeError(ErrorCode::kInvalidArgument, "EmbeddedPostgres: empty data_dir");
    }
    if (options.database.empty()) {
      return makeError(ErrorCode::kInvalidArgument, "EmbeddedPostgres: empty database name");
    }
    const fs::path data_dir = fs::absolute(options.data_dir).lexically_normal();
    const fs::path pgdata = data_dir / "postgres";
    const fs::path socket_dir = data_dir / "run";
    const fs::path log_file = data_dir / "postgres.log";
    if ((socket_dir / kSocketName).string().size() >= sizeof(sockaddr_un{}.sun_path)) {
      return makeError(ErrorCode::kConfig, "data dir path " + data_dir.string() +
                                               " is too long for a Unix socket path (limit " +
                                               std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) +
                                               " bytes incl. /run/" + kSocketName + ")");
    }

    Identity as;
    if (geteuid() == 0) {
      // initdb refuses to run as root, and a server compromised through SQL
      // should not own the machine.
      auto user = ensureSystemUser(options.system_user);
      if (!user.ok()) return std::move(user).error();
      as = std::move(user).value();
      as.switch_user = true;
    } else {
      auto self = currentUser();
      if (!self) {
        return unavailable("cannot determine the current user's name (uid " +
                           std::to_string(geteuid()) + " has no passwd entry)");
      }
      as = std::move(*self);
    }

    std::error_code ec;
    fs::create_directories(data_dir, ec);
    if (ec) return unavailable("creating " + data_dir.string() + ": " + ec.message());
    // Declared before the lock: if a failure return destroys an owning `pg`,
    // its stop() takes the lock again, so ours must already be released.
    std::unique_ptr<EmbeddedPostgres> pg(new EmbeddedPostgres());
    auto lock = FileLock::acquire(data_dir / "postgres.lock");
    if (!lock.ok()) return std::move(lock).error();

    pg->pgdata_ = pgdata;
    pg->socket_dir_ = socket_dir;
    pg->run_as_ = as.switch_user ? as.name : std::string();
    pg->conninfo_ = conninfoFor(socket_dir, options.database, as.name);

    // A running `vessel serve` (or an earlier start() in this process) owns the
    // server: share it rather than fight over the lock file. One that is still
    // starting up or shutting down gets until the start timeout to settle.
    const auto deadline = std::chrono::steady_clock::now() + options.start_timeout;
    while (const auto pid = livePostmaster(pgdata)) {
      std::string why;
      if (serverAccepts(socket_dir, as.name, &why)) {
        auto created = createDatabaseIfMissing(socket_dir, as.name, options.database);
        if (!created.ok()) return std::move(created).error();
        auto bin = findServerBinDir(readFirstLine(pgdata / "PG_VERSION"));
        if (!bin.ok()) return std::move(bin).error();
        pg->bin_dir_ = bin.value().string();
        pg->owned_ = false;
        if (auto r = pg->registerUser(data_dir); !r.ok()) return r.error();
        return pg;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        return unavailable("a PostgreSQL server (pid " + std::to_string(*pid) + ") is running on " +
                           pgdata.string() + " but does not accept connections as '" + as.name +
                           "' at " + socket_dir.string() + ": " + why);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }

    const bool initialised = fs::exists(pgdata / "PG_VERSION");
    auto bin_dir = findServerBinDir(initialised ? readFirstLine(pgdata / "PG_VERSION") : "");
    if (!bin_dir.ok()) return std::move(bin_dir).error();
    pg->bin_dir_ = bin_dir.value().string();
    const std::string initdb = (bin_dir.value() / "initdb").string();
    const std::string pg_ctl = (bin_dir.value() / "pg_ctl").string();

    if (as.switch_user) {
      if (auto r = checkSearchable(data_dir, as); !r.ok()) return r.error();
    }
    for (const auto& [dir, mode] :
         {std::pair{pgdata, fs::perms(0700)}, std::pair{socket_dir, fs::perms(0755)}}) {
      fs::create_directory(dir, ec);
      if (!ec) fs::permissions(dir, mode, ec);
      if (ec) return unavailable("creating " + dir.string() + ": " + ec.message());
    }
    // pg_ctl appends to the log as the cluster user; data_dir itself may be ours.
    UniqueFd log_fd(::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
    if (!log_fd.valid())
      return unavailable("creating " + log_file.string() + ": " + errnoText(errno));
    if (as.switch_user) {
      if (fchown(log_fd.get(), as.uid, as.gid) != 0) {
        return unavailable("chown " + log_file.string() + ": " + errnoText(errno));
      }
      // Socket dir 0755 owned by the cluster user: only it can create the socket;
      // we (root) connect over trust as the cluster's role. Safe because there is
      // no TCP listener and pgdata is private (0700).
      if (auto r = chownRecursive(socket_dir, as); !r.ok()) return r.error();
      // Only walk pgdata when its top is not the cluster user's already (a data
      // dir copied or restored by root, or made by a non-root run): a large
      // cluster has many files, and a correct one needs no walk.
      struct stat st {};
      if (::stat(pgdata.c_str(), &st) != 0 || st.st_uid != as.uid) {
        if (auto r = chownRecursive(pgdata, as); !r.ok()) return r.error();
      }
    }
    log_fd.reset();

    if (!initialised) {
      // Local trust only; host connections rejected outright in case TCP is
      // ever switched on. Access control is the private socket directory.
      auto run =
          runCommand({initdb, "-D", pgdata.string(), "--auth-local=trust", "--auth-host=reject",
                      "--username=" + as.name, "--encoding=UTF8", "--locale=C",
                      // Byte-order collation, but lower() and pg_trgm know
                      // non-ASCII letters (case-insensitive library search).
                      "--lc-ctype=C.UTF-8"},
                     as);
      if (!run.ok()) return std::move(run).error();
      if (!run.value().succeeded()) return commandFailed("initdb", run.value());
    }

    // postgres refuses to start while the pid in a leftover lock file exists
    // at all; when that pid is provably not a live postgres, move the file
    // aside (kept for diagnosis). Postgres still refuses if the old shared
    // memory segment has processes attached, so this cannot double-start.
    for (const fs::path& lock_file :
         {pgdata / "postmaster.pid", socket_dir / (std::string(kSocketName) + ".lock")}) {
      if (fs::exists(lock_file) && !lockHolder(lock_file)) {
        fs::rename(lock_file, fs::path(lock_file).concat(".stale"), ec);
        if (ec)
          return unavailable("moving aside stale " + lock_file.string() + ": " + ec.message());
      }
    }

    const std::string timeout =
        std::to_string(std::max<long long>(1, options.start_timeout.count()));
    auto run = runCommand({pg_ctl, "-D", pgdata.string(), "-l", log_file.string(), "-w", "-t",
                           timeout, "-o", serverOptions(socket_dir), "start"},
                          as);
    if (!run.ok()) return std::move(run).error();
    if (!run.value().succeeded()) {
      return commandFailed("pg_ctl start", run.value(), {log_file, newestFile(pgdata / "log")});
    }
    pg->owned_ = true;
    if (auto r = pg->registerUser(data_dir); !r.ok()) return r.error();
    // From here the destructor stops the server if anything below fails.
    auto created = createDatabaseIfMissing(socket_dir, as.name, options.database);
    if (!created.ok()) return std::move(created).error();
    return pg;
  } catch (const std::exception& e) {
    return makeError(ErrorCode::kInternal, std::string("EmbeddedPostgres::start: ") + e.what());
  }
}

Result<void> EmbeddedPostgres::registerUser(const fs::path& data_dir) {
  users_fd_ = ::open((data_dir / "postgres.users").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (users_fd_ < 0) return unavailable("open postgres.users: " + errnoText(errno));
  while (flock(users_fd_, LOCK_SH) != 0) {
    if (errno != EINTR) return unavailable("flock postgres.users: " + errnoText(errno));
  }
  return {};
}

Result<void> EmbeddedPostgres::stop() {
  if (users_fd_ < 0) return {};
  try {
    Identity as;
    if (!run_as_.empty()) {
      auto user = lookupUser(run_as_);
      if (!user) return unavailable("stopping PostgreSQL: system user '" + run_as_ + "' vanished");
      as = std::move(*user);
      as.switch_user = true;
    } else {
      as = currentUser().value_or(Identity{});
    }
    auto lock = FileLock::acquire(pgdata_.parent_path() / "postgres.lock");
    if (!lock.ok()) return std::move(lock).error();
    // Last one out stops the server: with the start lock held nobody can attach
    // meanwhile; an exclusive lock on postgres.users succeeds only when no other
    // process holds its shared one.
    const bool last = flock(users_fd_, LOCK_EX | LOCK_NB) == 0;
    ::close(users_fd_);
    users_fd_ = -1;
    if (!last) {
      owned_ = false;
      return {};
    }
    // Already gone (crashed, stopped by hand): the goal state is reached, and
    // pg_ctl would otherwise wait its full timeout for a dead server's pid file.
    if (!livePostmaster(pgdata_)) {
      owned_ = false;
      return {};
    }
    auto run = runCommand({(fs::path(bin_dir_) / "pg_ctl").string(), "-D", pgdata_.string(), "-m",
                           "fast", "-w", "stop"},
                          as);
    if (!run.ok()) return std::move(run).error();
    if (!run.value().succeeded()) {
      // It may have exited on its own between our check and pg_ctl's.
      if (!livePostmaster(pgdata_)) {
        owned_ = false;
        return {};
      }
      return commandFailed("pg_ctl stop", run.value(),
                           {pgdata_.parent_path() / "postgres.log", newestFile(pgdata_ / "log")});
    }
    owned_ = false;
    return {};
  } catch (const std::exception& e) {
    return makeError(ErrorCode::kInternal, std::string("EmbeddedPostgres::stop: ") + e.what());
  }
}

EmbeddedPostgres::~EmbeddedPostgres() {
  try {
    // Nothing useful to do with a failure here; stop() is the checked path.
    (void)stop();
  } catch (...) {
  }
}

// ---------------------------------------------------------------------------
// Migrations

int latestSchemaVersion() noexcept {
  int latest = 0;
  for (std::size_t i = 0; i < detail::kEmbeddedMigrationCount; ++i) {
    latest = std::max(latest, detail::kEmbeddedMigrations[i].version);
  }
  return latest;
}

namespace {

Result<int> migrate(pqxx::connection& conn) {
  const std::string lock_key = std::to_string(kMigrationLockKey);
  {
    pqxx::nontransaction tx(conn);
    // "relation already exists, skipping" notices would otherwise go to stderr.
    tx.exec0("SET client_min_messages = warning");
    // Session-level, so it spans the per-migration transactions below; a
    // dropped connection releases it.
    tx.exec("SELECT pg_advisory_lock(" + lock_key + ")");
    tx.exec0(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY,"
        " name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())");
  }
  std::set<int> applied;
  int current = 0;
  {
    pqxx::nontransaction tx(conn);
    for (const auto& row : tx.exec("SELECT version FROM schema_migrations")) {
      const int version = row[0].as<int>();
      applied.insert(version);
      current = std::max(current, version);
    }
  }
  const int latest = latestSchemaVersion();
  if (current > latest) {
    return makeError(ErrorCode::kConfig, "database schema version " + std::to_string(current) +
                                             " is newer than this Vessel (knows up to " +
                                             std::to_string(latest) + "); upgrade Vessel");
  }
  for (std::size_t i = 0; i < detail::kEmbeddedMigrationCount; ++i) {
    const auto& migration = detail::kEmbeddedMigrations[i];
    if (applied.count(migration.version)) continue;
    try {
      pqxx::work tx(conn);
      tx.exec(migration.sql);
      tx.exec_params0("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                      migration.version, std::string(migration.name));
      tx.commit();
    } catch (const pqxx::broken_connection&) {
      throw;
    } catch (const std::exception& e) {
      return makeError(ErrorCode::kInternal, "migration " + std::to_string(migration.version) +
                                                 " (" + migration.name +
                                                 ") failed: " + tail(e.what()));
    }
    current = std::max(current, migration.version);
  }
  pqxx::nontransaction tx(conn);
  tx.exec("SELECT pg_advisory_unlock(" + lock_key + ")");
  return current;
}

}  // namespace

Result<int> migrateDatabase(const std::string& conninfo) noexcept {
  try {
    pqxx::connection conn(conninfo);
    // Any early return leaves the advisory lock held until `conn` closes,
    // which is right here at scope exit.
    return migrate(conn);
  } catch (const pqxx::broken_connection& e) {
    return makeError(ErrorCode::kUnavailable, "database unavailable: " + tail(e.what()));
  } catch (const std::exception& e) {
    return makeError(ErrorCode::kInternal, "database migration failed: " + tail(e.what()));
  } catch (...) {
    return makeError(ErrorCode::kInternal, "database migration failed: unknown exception");
  }
}

}  // namespace vessel
