// Operations endpoints: GET /healthz (the process is up), GET /readyz (the
// database and the storage answer) and GET /metrics (Prometheus text format,
// optionally behind server.metrics_token). Queue depth and the age of the
// oldest due job are what an autoscaler (KEDA, HPA) scales workers on.
#include <cstdio>

#include "app.hpp"
#include "events.hpp"
#include "vessel/scheduler.hpp"
#include "vessel/worker_protocol.hpp"

namespace vessel::server {

namespace {

constexpr double kBuckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

std::string escapeLabel(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

}  // namespace

void Metrics::record(const http::Request& req, const http::Response& resp, double seconds) {
  std::lock_guard lock(mu);
  ++requests[{req.route.empty() ? "unmatched" : req.route, req.method, resp.status}];
  for (std::size_t i = 0; i < std::size(kBuckets); ++i) {
    if (seconds <= kBuckets[i]) ++latency_buckets[i];
  }
  latency_sum += seconds;
  ++latency_count;
  if (req.route.starts_with("/media/") && (resp.status == 200 || resp.status == 206)) {
    served_bytes += resp.bodySize();
  }
}

void addOpsRoutes(http::Server& server, App& app) {
  server.route("GET", "/healthz", [](http::Request&) {
    return http::Response::json(200, {{"status", "ok"}});
  });

  server.route("GET", "/readyz", [&app](http::Request&) {
    nlohmann::json checks = nlohmann::json::object();
    bool ready = true;
    auto store = app.store();
    Result<void> db = store.ok() ? store.value()->ping() : Result<void>(store.error());
    checks["database"] = db.ok() ? "ok" : db.error().message;
    ready = ready && db.ok();
    auto probe = app.storage->exists(".readyz");
    checks["storage"] = probe.ok() ? "ok" : probe.error().message;
    ready = ready && probe.ok();
    http::Response r = http::Response::json(
        ready ? 200 : 503, {{"status", ready ? "ready" : "unavailable"}, {"checks", checks}});
    r.header("cache-control", "no-store");
    return r;
  });

  server.route("GET", "/metrics", [&app](http::Request& req) {
    if (!app.settings.metrics_token.empty()) {
      const std::string want = "Bearer " + app.settings.metrics_token;
      auto given = req.header("authorization");
      if (!given ||
          !protocol::secretsEqual(protocol::sha256Hex(*given), protocol::sha256Hex(want))) {
        return http::Response::error(401, "unauthenticated", "metrics need the metrics token");
      }
    }
    std::string out;
    auto line = [&out](const std::string& s) {
      out += s;
      out += '\n';
    };
    Metrics& m = *app.metrics;
    {
      std::lock_guard lock(m.mu);
      line("# HELP vessel_http_requests_total HTTP requests by route, method and status.");
      line("# TYPE vessel_http_requests_total counter");
      for (const auto& [key, count] : m.requests) {
        const auto& [route, method, status] = key;
        line("vessel_http_requests_total{route=\"" + escapeLabel(route) + "\",method=\"" +
             escapeLabel(method) + "\",status=\"" + std::to_string(status) + "\"} " +
             std::to_string(count));
      }
      line("# HELP vessel_http_request_duration_seconds Time from request start to response.");
      line("# TYPE vessel_http_request_duration_seconds histogram");
      for (std::size_t i = 0; i < std::size(kBuckets); ++i) {
        char le[32];
        std::snprintf(le, sizeof le, "%g", kBuckets[i]);
        line("vessel_http_request_duration_seconds_bucket{le=\"" + std::string(le) + "\"} " +
             std::to_string(m.latency_buckets[i]));
      }
      line("vessel_http_request_duration_seconds_bucket{le=\"+Inf\"} " +
           std::to_string(m.latency_count));
      line("vessel_http_request_duration_seconds_sum " + num(m.latency_sum));
      line("vessel_http_request_duration_seconds_count " + std::to_string(m.latency_count));
    }
    line("# HELP vessel_upload_bytes_total Bytes of originals received.");
    line("# TYPE vessel_upload_bytes_total counter");
    line("vessel_upload_bytes_total " + std::to_string(m.uploaded_bytes.load()));
    line("# HELP vessel_served_bytes_total Bytes of HLS media served.");
    line("# TYPE vessel_served_bytes_total counter");
    line("vessel_served_bytes_total " + std::to_string(m.served_bytes.load()));
    line("# HELP vessel_rate_limited_total Requests refused with 429.");
    line("# TYPE vessel_rate_limited_total counter");
    line("vessel_rate_limited_total " + std::to_string(m.rate_limited.load()));
    if (app.events) {
      line("# HELP vessel_event_streams Open Server-Sent Events streams.");
      line("# TYPE vessel_event_streams gauge");
      line("vessel_event_streams " + std::to_string(app.events->subscribers()));
    }

    auto store = app.store();
    auto stats =
        store.ok() ? store.value()->queueStats() : Result<JobStore::QueueStats>(store.error());
    line("# HELP vessel_database_up Whether the metrics query reached PostgreSQL.");
    line("# TYPE vessel_database_up gauge");
    line(std::string("vessel_database_up ") + (stats.ok() ? "1" : "0"));
    if (stats.ok()) {
      const auto& s = stats.value();
      line("# HELP vessel_jobs Jobs by state.");
      line("# TYPE vessel_jobs gauge");
      for (const char* state : {"queued", "running", "succeeded", "failed", "cancelled"}) {
        auto it = s.jobs_by_state.find(state);
        line(std::string("vessel_jobs{state=\"") + state + "\"} " +
             std::to_string(it == s.jobs_by_state.end() ? 0 : it->second));
      }
      line("# HELP vessel_uploads Uploads by status.");
      line("# TYPE vessel_uploads gauge");
      for (const char* status : {"uploading", "queued", "processing", "ready", "failed"}) {
        auto it = s.uploads_by_status.find(status);
        line(std::string("vessel_uploads{status=\"") + status + "\"} " +
             std::to_string(it == s.uploads_by_status.end() ? 0 : it->second));
      }
      line("# HELP vessel_queue_depth Queued jobs that are due now.");
      line("# TYPE vessel_queue_depth gauge");
      line("vessel_queue_depth " + std::to_string(s.due));
      line("# HELP vessel_queue_oldest_age_seconds How long the oldest due job has waited.");
      line("# TYPE vessel_queue_oldest_age_seconds gauge");
      line("vessel_queue_oldest_age_seconds " + num(s.oldest_due_age_s));
      line(
          "# HELP vessel_transcode_seconds_per_audio_second Wall seconds per audio second of "
          "the jobs finished in the last hour (all workers).");
      line("# TYPE vessel_transcode_seconds_per_audio_second gauge");
      line("vessel_transcode_seconds_per_audio_second " +
           num(s.audio_seconds_1h > 0 ? s.transcode_seconds_1h / s.audio_seconds_1h : 0));
    }
    if (app.scheduler) {
      line("# HELP vessel_scheduler_runs_total Scheduler runs (e.g. cleanup) in this process.");
      line("# TYPE vessel_scheduler_runs_total counter");
      line("# HELP vessel_scheduler_failures_total Scheduler runs that failed.");
      line("# TYPE vessel_scheduler_failures_total counter");
      line("# HELP vessel_cleanup_last Counts of the last cleanup pass.");
      line("# TYPE vessel_cleanup_last gauge");
      for (const auto& st : app.scheduler->stats()) {
        const std::string n = escapeLabel(st.name);
        line("vessel_scheduler_runs_total{scheduler=\"" + n + "\"} " + std::to_string(st.runs));
        line("vessel_scheduler_failures_total{scheduler=\"" + n + "\"} " +
             std::to_string(st.failures));
        if (st.name != "cleanup" || st.last_summary.empty()) continue;
        auto j = nlohmann::json::parse(st.last_summary, nullptr, false);
        if (!j.is_object()) continue;
        for (const auto& [k, v] : j.items()) {
          if (v.is_number()) {
            line("vessel_cleanup_last{field=\"" + escapeLabel(k) + "\"} " + num(v.get<double>()));
          }
        }
      }
    }
    http::Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = std::move(out);
    r.header("cache-control", "no-store");
    return r;
  });
}

}  // namespace vessel::server
