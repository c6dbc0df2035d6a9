// Live status over Server-Sent Events: GET /api/v1/events (the caller's whole
// library) and GET /api/v1/uploads/{id}/events (one upload, owner only).
//
// The feed is PostgreSQL's: triggers append every visible change of an upload
// to upload_events and NOTIFY vessel_uploads (migration 0005), so a change made
// by a worker on another machine reaches the browser too. One hub thread per
// server LISTENs and fans each change out to the open streams of that user.
// Every event carries its upload_events id; a client that reconnects with
// Last-Event-ID gets what it missed (the current state of each upload that
// changed since), then live events. A comment line every 15 s keeps proxies
// and the client's watchdog from closing an idle stream.
//
// Wire format:
//   id: 42
//   event: upload            (or: deleted, with data {"id": "..."})
//   data: {the upload JSON of GET /api/v1/uploads/{id}}
#include "events.hpp"

#include <pqxx/pqxx>

#include "cache.hpp"
#include "signing.hpp"
#include "vessel/log.hpp"

namespace vessel::server {

namespace {

constexpr auto kHeartbeat = std::chrono::seconds(15);
constexpr std::size_t kReplayLimit = 1000;

std::string frame(std::int64_t id, const char* event, const nlohmann::json& data) {
  return "id: " + std::to_string(id) + "\nevent: " + event +
         "\ndata: " + data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n\n";
}

}  // namespace

struct EventHub::Subscriber {
  std::string user_id;
  std::string upload_id;  ///< "" = the whole library
  std::shared_ptr<http::ResponseStream> stream;
  std::mutex mu;  ///< orders catch-up and live sends
  std::int64_t last_id = 0;
};

EventHub::EventHub(App& app) : app_(app) {}

EventHub::~EventHub() { stop(); }

void EventHub::start() {
  thread_ = std::thread([this] { run(); });
}

void EventHub::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mu_);
  for (auto& [user, subs] : subscribers_) {
    for (auto& s : subs) s->stream->close();
  }
  subscribers_.clear();
}

std::size_t EventHub::subscribers() const {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  for (const auto& [user, subs] : subscribers_) n += subs.size();
  return n;
}

// Sends `upload_id`'s current state (or its deletion) as event `id`.
bool EventHub::deliver(JobStore& store, Subscriber& sub, std::int64_t id,
                       const std::string& upload_id) {
  if (id <= sub.last_id) return true;
  auto u = store.getUpload(upload_id);
  if (!u.ok()) return true;  // the database blinked: the next event or resume catches up
  bool alive;
  if (!u.value() || u.value()->user_id != sub.user_id) {
    alive = sub.stream->send(frame(id, "deleted", {{"id", upload_id}}));
  } else {
    alive = sub.stream->send(frame(id, "upload", uploadJson(*u.value(), app_.storage.get())));
  }
  sub.last_id = id;
  return alive;
}

// Sends the newest state of every upload that changed after sub.last_id.
void EventHub::catchUp(JobStore& store, Subscriber& sub) {
  std::lock_guard lock(sub.mu);
  auto events = store.eventsSince(sub.user_id, sub.last_id, kReplayLimit);
  if (!events.ok()) return;
  // The newest event per upload, in event order.
  std::map<std::string, std::int64_t> newest;
  for (const auto& e : events.value()) {
    if (sub.upload_id.empty() || e.upload_id == sub.upload_id) newest[e.upload_id] = e.id;
  }
  std::vector<std::pair<std::int64_t, std::string>> ordered;
  for (const auto& [upload, id] : newest) ordered.emplace_back(id, upload);
  std::sort(ordered.begin(), ordered.end());
  for (const auto& [id, upload] : ordered) {
    if (!deliver(store, sub, id, upload)) return;
  }
  if (!events.value().empty()) sub.last_id = std::max(sub.last_id, events.value().back().id);
}

Result<void> EventHub::subscribe(const std::string& user_id, const std::string& upload_id,
                                 std::shared_ptr<http::ResponseStream> stream,
                                 std::int64_t last_event_id) {
  auto sub = std::make_shared<Subscriber>();
  sub->user_id = user_id;
  sub->upload_id = upload_id;
  sub->stream = std::move(stream);
  auto store = app_.store();
  if (!store.ok()) return store.error();
  {
    std::lock_guard lock(sub->mu);
    sub->stream->send("retry: 3000\n\n");
    if (last_event_id > 0) {
      sub->last_id = last_event_id;
    } else {
      auto latest = store.value()->latestEventId(user_id);
      if (!latest.ok()) return latest.error();
      sub->last_id = latest.value();
      // One upload: its state now, so the client needs no separate fetch.
      if (!upload_id.empty()) {
        const std::int64_t id = sub->last_id;
        sub->last_id = id - 1;
        deliver(*store.value(), *sub, id, upload_id);
      }
    }
  }
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      sub->stream->close();
      return {};
    }
    subscribers_[user_id].push_back(sub);
  }
  // Registered first, replayed second: nothing that happens in between is lost.
  if (last_event_id > 0) catchUp(*store.value(), *sub);
  return {};
}

void EventHub::dispatch(JobStore& store, std::int64_t id, const std::string& user_id,
                        const std::string& upload_id) {
  std::vector<std::shared_ptr<Subscriber>> subs;
  {
    std::lock_guard lock(mu_);
    auto it = subscribers_.find(user_id);
    if (it == subscribers_.end()) return;
    subs = it->second;
  }
  for (auto& sub : subs) {
    if (!sub->upload_id.empty() && sub->upload_id != upload_id) continue;
    std::lock_guard lock(sub->mu);
    if (sub->stream->closed()) continue;
    // A gap (notifications lost while reconnecting) is filled from the table.
    deliver(store, *sub, id, upload_id);
  }
  prune();
}

void EventHub::prune() {
  std::lock_guard lock(mu_);
  for (auto it = subscribers_.begin(); it != subscribers_.end();) {
    std::erase_if(it->second, [](const auto& s) { return s->stream->closed(); });
    it = it->second.empty() ? subscribers_.erase(it) : std::next(it);
  }
}

void EventHub::heartbeat() {
  std::vector<std::shared_ptr<Subscriber>> all;
  {
    std::lock_guard lock(mu_);
    for (const auto& [user, subs] : subscribers_) all.insert(all.end(), subs.begin(), subs.end());
  }
  for (auto& s : all) s->stream->send(": ping\n\n");
  prune();
}

bool EventHub::stopping() const {
  std::lock_guard lock(mu_);
  return stopping_;
}

void EventHub::run() {
  class Receiver final : public pqxx::notification_receiver {
   public:
    Receiver(pqxx::connection_base& c, std::vector<std::string>& out)
        : pqxx::notification_receiver(c, "vessel_uploads"), out_(out) {}
    void operator()(const std::string& payload, int) override { out_.push_back(payload); }

   private:
    std::vector<std::string>& out_;
  };

  auto store = JobStore::connect(app_.conninfo, app_.queue);
  auto last_beat = std::chrono::steady_clock::now();
  auto last_prune = std::chrono::steady_clock::time_point{};
  bool reconnected = false;
  while (!stopping()) {
    try {
      pqxx::connection conn(app_.conninfo);
      std::vector<std::string> payloads;
      Receiver receiver(conn, payloads);
      // LISTEN is in place: from now on no change to a library goes unseen.
      app_.library_cache->setLive(true);
      if (reconnected && store.ok()) {
        // Notifications sent while we were away are gone: replay from the table.
        std::vector<std::shared_ptr<Subscriber>> all;
        {
          std::lock_guard lock(mu_);
          for (const auto& [u, subs] : subscribers_)
            all.insert(all.end(), subs.begin(), subs.end());
        }
        for (auto& s : all) catchUp(*store.value(), *s);
      }
      while (!stopping()) {
        conn.await_notification(1, 0);
        if (!store.ok()) store = JobStore::connect(app_.conninfo, app_.queue);
        for (const std::string& p : payloads) {
          // "<event id>:<user>:<upload>"
          const auto a = p.find(':'), b = p.rfind(':');
          if (a == std::string::npos || b == a) continue;
          app_.libraryChanged(p.substr(a + 1, b - a - 1));
          if (!store.ok()) continue;
          auto id = parseUnsigned(std::string_view(p).substr(0, a));
          if (!id) continue;
          dispatch(*store.value(), static_cast<std::int64_t>(*id), p.substr(a + 1, b - a - 1),
                   p.substr(b + 1));
        }
        payloads.clear();
        const auto now = std::chrono::steady_clock::now();
        if (now - last_beat >= kHeartbeat) {
          heartbeat();
          last_beat = now;
        }
        if (now - last_prune >= std::chrono::hours(1) && store.ok()) {
          (void)store.value()->pruneEvents(std::chrono::hours(24));
          last_prune = now;
        }
      }
    } catch (const std::exception& e) {
      app_.library_cache->setLive(false);
      log::warn("events: database connection lost; reconnecting",
                {{"error", std::string(e.what())}});
      reconnected = true;
      for (int i = 0; i < 10 && !stopping(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  }
}

namespace {

std::int64_t lastEventId(const http::Request& req) {
  auto h = req.header("last-event-id");
  if (!h) h = req.queryValue("last_event_id");
  if (!h) return 0;
  auto v = parseUnsigned(*h);
  return v && *v < static_cast<std::uint64_t>(INT64_MAX) ? static_cast<std::int64_t>(*v) : 0;
}

http::StreamStart eventStream(App& app, std::string user_id, std::string upload_id,
                              std::int64_t last_id) {
  http::StreamStart start;
  start.content_type = "text/event-stream";
  start.headers = {{"cache-control", "no-store"}, {"x-accel-buffering", "no"}};
  start.open = [&app, user_id = std::move(user_id), upload_id = std::move(upload_id),
                last_id](std::shared_ptr<http::ResponseStream> stream) {
    auto r = app.events->subscribe(user_id, upload_id, stream, last_id);
    if (!r.ok()) {
      stream->send(
          "event: error\ndata: " +
          nlohmann::json({{"code", "unavailable"}, {"message", r.error().message}}).dump() +
          "\n\n");
      stream->close();
    }
  };
  return start;
}

}  // namespace

void addEventRoutes(http::Server& server, App& app) {
  server.eventRoute("GET", "/api/v1/events",
                    [&app](http::Request& req) -> std::variant<http::Response, http::StreamStart> {
                      VESSEL_REQUIRE_CALLER(app, req, user);
                      return eventStream(app, user.id, "", lastEventId(req));
                    });
  server.eventRoute("GET", "/api/v1/uploads/{id}/events",
                    [&app](http::Request& req) -> std::variant<http::Response, http::StreamStart> {
                      VESSEL_REQUIRE_CALLER(app, req, user);
                      auto store = app.store();
                      if (!store.ok()) return http::errorResponse(store.error());
                      auto u = store.value()->getUpload(req.param("id"));
                      if (!u.ok()) return http::errorResponse(u.error());
                      if (!u.value() || u.value()->user_id != user.id) {
                        return http::Response::error(404, "not_found", "no such upload");
                      }
                      return eventStream(app, user.id, u.value()->id, lastEventId(req));
                    });
}

}  // namespace vessel::server
