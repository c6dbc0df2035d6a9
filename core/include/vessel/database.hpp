// PostgreSQL: the embedded private cluster Vessel starts itself, connection
// settings, and schema migrations.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "vessel/result.hpp"

namespace vessel {

/// A private PostgreSQL cluster under `<data_dir>/postgres`, reached only over a
/// Unix socket in `<data_dir>/run` (no TCP port). When the process runs as root
/// the cluster runs as the unprivileged system user `vessel` (created if
/// missing), since initdb refuses root.
class EmbeddedPostgres {
 public:
  struct Options {
    std::filesystem::path data_dir;  ///< e.g. ./var
    std::string database = "vessel";
    std::string system_user = "vessel";  ///< used only when running as root
    std::chrono::seconds start_timeout{60};
  };

  /// initdb on first use, then starts the server and creates the database; or,
  /// if a server from the same data dir is already running (a `vessel serve`),
  /// attaches to it without taking ownership. Errors name the failing command
  /// and include its output.
  static Result<std::unique_ptr<EmbeddedPostgres>> start(const Options& options);

  /// Detaches; the last Vessel process using the cluster (started it or
  /// attached to it) stops it (pg_ctl stop -m fast). Every user holds a shared
  /// flock on <data_dir>/postgres.users, so "last" is exact across processes.
  ~EmbeddedPostgres();
  EmbeddedPostgres(const EmbeddedPostgres&) = delete;
  EmbeddedPostgres& operator=(const EmbeddedPostgres&) = delete;

  /// libpq connection string, e.g. "host=/abs/var/run dbname=vessel user=vessel".
  const std::string& connectionString() const { return conninfo_; }
  /// Whether this object started the server (rather than attaching to one).
  bool owned() const { return owned_; }
  /// Detaches and, if no other process uses the cluster, stops it.
  Result<void> stop();

 private:
  EmbeddedPostgres() = default;
  Result<void> registerUser(const std::filesystem::path& data_dir);
  std::string conninfo_;
  std::filesystem::path pgdata_;
  std::filesystem::path socket_dir_;
  std::string run_as_;  // empty: current user
  std::string bin_dir_;
  bool owned_ = false;
  int users_fd_ = -1;  ///< shared flock on postgres.users while attached
};

/// Applies the migrations compiled into the core (core/migrations/NNNN_*.sql) in
/// order, each in its own transaction, recording them in schema_migrations.
/// A pg_advisory_lock serialises concurrent starters; a database whose schema
/// is newer than this binary knows is refused (kConfig) naming both versions.
/// Returns the schema version now in place.
Result<int> migrateDatabase(const std::string& conninfo) noexcept;

/// The highest migration version this binary carries.
int latestSchemaVersion() noexcept;

}  // namespace vessel
