// The embedded Vessel server (libvessel-server): the HTTP API, upload intake,
// private streaming, remote-worker callbacks, in-process workers and the
// scheduler, assembled from a Runtime. `vessel serve` is one client of it; an
// integrating app starts the same server the same way:
//
//   auto rt = vessel::Runtime::create({.extra_fields = vessel::serverConfigFields()});
//   vessel::ServeOptions o;  o.data_dir = "./var";  o.listen = "127.0.0.1:0";
//   auto app = vessel::AppServer::start(*rt.value(), o);
//   ... app.value()->port() ...
//   app.value()->stop();
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vessel/config.hpp"
#include "vessel/result.hpp"
#include "vessel/runtime.hpp"

namespace vessel {

/// The `server.*` config keys; add them to RuntimeOptions::extra_fields.
std::vector<ConfigField> serverConfigFields();

struct ServeOptions {
  std::filesystem::path data_dir = "var";
  /// "host:port"; empty = server.listen. Port 0 picks a free port.
  std::string listen;
  /// In-process workers; nullopt = workers.concurrency (0 there = one per core).
  std::optional<int> workers;
  /// Overrides database.url (empty = config, else the embedded cluster).
  std::string database_url;
};

class AppServer {
 public:
  /// Opens the database (migrating it), storage and auth, starts workers, the
  /// scheduler and the HTTP server. Errors: kConfig, kUnavailable.
  static Result<std::unique_ptr<AppServer>> start(Runtime& runtime, const ServeOptions& options);
  ~AppServer();

  std::uint16_t port() const;
  /// "http://host:port"
  std::string url() const;
  /// Graceful stop: no new connections or claims, in-flight requests finish,
  /// running jobs finish or are released within workers.shutdown_grace_s, then
  /// the embedded database (if ours) stops. Idempotent.
  void stop();

  struct Impl;

 private:
  explicit AppServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace vessel
