// The live-status hub: LISTENs on vessel_uploads and fans changes out to the
// open Server-Sent Events streams of each user. See events.cpp.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "app.hpp"

namespace vessel::server {

class EventHub {
 public:
  explicit EventHub(App& app);
  ~EventHub();
  void start();
  /// Closes every stream and stops the listener.
  void stop();

  /// Registers a stream for `user_id` (one upload, or "" for the library). With
  /// a Last-Event-ID, first replays what changed since; without one, a
  /// one-upload stream starts with that upload's current state.
  Result<void> subscribe(const std::string& user_id, const std::string& upload_id,
                         std::shared_ptr<http::ResponseStream> stream, std::int64_t last_event_id);
  std::size_t subscribers() const;

 private:
  struct Subscriber;
  void run();
  bool stopping() const;
  bool deliver(JobStore& store, Subscriber& sub, std::int64_t id, const std::string& upload_id);
  void catchUp(JobStore& store, Subscriber& sub);
  void dispatch(JobStore& store, std::int64_t id, const std::string& user_id,
                const std::string& upload_id);
  void heartbeat();
  void prune();

  App& app_;
  mutable std::mutex mu_;
  bool stopping_ = false;
  std::map<std::string, std::vector<std::shared_ptr<Subscriber>>> subscribers_;
  std::thread thread_;
};

void addEventRoutes(http::Server& server, App& app);

}  // namespace vessel::server
