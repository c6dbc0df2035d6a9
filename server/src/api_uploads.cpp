// The upload flow and the library: create (signed PUT URL) → PUT the bytes
// (streamed to storage) → complete (checked, queued) → status / list / retry /
// delete. Every lookup is owner-scoped: another user's upload is "not found".
#include <chrono>
#include <ctime>

#include "app.hpp"
#include "cache.hpp"
#include "json_text.hpp"
#include "signing.hpp"
#include "vessel/log.hpp"

namespace vessel::server {

namespace {

std::int64_t nowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string isoTime(std::int64_t unix_s) {
  std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

http::Response notFound() { return http::Response::error(404, "not_found", "no such upload"); }

// A storage failure while taking an original: clients learn whether to wait
// (full: 507; unwritable or down: 503), never where or how the store keeps it.
http::Response storageRefused(const Error& e, const std::string& upload_id) {
  log::warn("upload: storage refused the original",
            {{"upload_id", upload_id}, {"error", e.message}});
  if (e.code == ErrorCode::kNoSpace) {
    return http::Response::error(507, "insufficient_storage", "storage is full; try again later");
  }
  return http::Response::error(503, "storage_unavailable",
                               "storage is not accepting files right now; try again later");
}

// The caller's upload `id`, or the response to send (404 for someone else's).
std::variant<UploadRecord, http::Response> ownUpload(App& app, const AuthUser& user,
                                                     const std::string& id) {
  auto store = app.store();
  if (!store.ok()) return http::errorResponse(store.error());
  auto u = store.value()->getUpload(id);
  if (!u.ok()) return http::errorResponse(u.error());
  if (!u.value() || u.value()->user_id != user.id) return notFound();
  return std::move(*u.value());
}

std::string mediaType(std::string_view content_type) {
  std::string t(content_type.substr(0, content_type.find(';')));
  while (!t.empty() && t.back() == ' ') t.pop_back();
  for (char& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return t;
}

// Streams one PUT body into the original's ObjectWriter. Runs on the server
// thread; the upload row's content_state (receiving) keeps a second PUT out.
class OriginalSink final : public http::BodySink {
 public:
  OriginalSink(App& app, UploadRecord upload, std::unique_ptr<ObjectWriter> writer)
      : app_(app), upload_(std::move(upload)), writer_(std::move(writer)) {}
  ~OriginalSink() override {
    if (!done_) abort();
  }

  // libsoup hands the body over in 8 KiB pieces; the store gets 1 MiB writes
  // (a 2 GiB PUT: 2,048 writes instead of 262,144; bench/server).
  Result<void> chunk(std::string_view data) noexcept override {
    if (received_ + data.size() > static_cast<std::uint64_t>(upload_.size_bytes)) {
      return makeError(ErrorCode::kInvalidArgument, "body longer than the declared size");
    }
    received_ += data.size();
    try {
      if (pending_.capacity() < kWriteBytes) pending_.reserve(kWriteBytes);
    } catch (...) {
      return makeError(ErrorCode::kInternal, "out of memory");
    }
    while (!data.empty()) {
      const std::size_t n = std::min(data.size(), kWriteBytes - pending_.size());
      pending_.append(data.data(), n);
      data.remove_prefix(n);
      if (pending_.size() == kWriteBytes) {
        if (auto r = flush(); !r.ok()) return r;
      }
    }
    return {};
  }

  http::Response finish() noexcept override {
    done_ = true;
    if (auto r = flush(); !r.ok()) {
      writer_->abort();
      release(false);
      return storageRefused(r.error(), upload_.id);
    }
    if (writer_->bytesWritten() != static_cast<std::uint64_t>(upload_.size_bytes)) {
      writer_->abort();
      release(false);
      return http::Response::error(400, "size_mismatch",
                                   "received " + std::to_string(writer_->bytesWritten()) +
                                       " bytes, declared " + std::to_string(upload_.size_bytes));
    }
    if (auto r = writer_->commit(); !r.ok()) {
      release(false);
      return storageRefused(r.error(), upload_.id);
    }
    auto store = app_.store();
    Result<void> ended =
        store.ok() ? store.value()->endContent(upload_.id, true) : Result<void>(store.error());
    if (!ended.ok()) {
      // Deleted while the bytes were coming in: do not leave them behind.
      (void)app_.storage->remove(upload_.storage_key);
      return ended.error().code == ErrorCode::kNotFound ? notFound()
                                                        : http::errorResponse(ended.error());
    }
    app_.libraryChanged(upload_.user_id);
    app_.metrics->uploaded_bytes += static_cast<std::uint64_t>(upload_.size_bytes);
    log::info("upload received", {{"upload_id", upload_.id},
                                  {"user_id", upload_.user_id},
                                  {"bytes", static_cast<long long>(upload_.size_bytes)}});
    return http::Response::json(200, {{"id", upload_.id}, {"size", upload_.size_bytes}});
  }

  void abort() noexcept override {
    if (released_) return;
    done_ = true;
    writer_->abort();  // the partial object never becomes visible
    release(false);
    log::info("upload aborted; partial data discarded", {{"upload_id", upload_.id}});
  }

 private:
  void release(bool stored) {
    if (released_) return;
    released_ = true;
    if (!stored) {
      auto store = app_.store();
      if (store.ok()) (void)store.value()->endContent(upload_.id, false);
      app_.libraryChanged(upload_.user_id);
    }
  }

  Result<void> flush() noexcept {
    if (pending_.empty()) return {};
    auto r = writer_->write(std::as_bytes(std::span(pending_.data(), pending_.size())));
    pending_.clear();
    return r;
  }

  static constexpr std::size_t kWriteBytes = 1u << 20;
  App& app_;
  UploadRecord upload_;
  std::unique_ptr<ObjectWriter> writer_;
  std::string pending_;  ///< received, not yet written
  std::uint64_t received_ = 0;
  bool done_ = false;
  bool released_ = false;
};

// The library page's query, validated (or the 400 to send).
std::variant<LibraryQuery, http::Response> parseLibraryQuery(const http::Request& req,
                                                             const std::string& user_id) {
  LibraryQuery q;
  q.user_id = user_id;
  q.q = req.queryValue("q").value_or("");
  if (q.q.size() > 200) {
    return http::Response::error(400, "invalid_query", "'q' is longer than 200 bytes");
  }
  q.status = req.queryValue("status").value_or("");
  static const std::set<std::string, std::less<>> kStatuses = {"",           "uploading", "queued",
                                                               "processing", "ready",     "failed"};
  if (!kStatuses.count(q.status)) {
    return http::Response::error(400, "invalid_query",
                                 "'status' must be uploading, queued, processing, ready or "
                                 "failed");
  }
  q.limit = 20;
  if (auto l = req.queryValue("limit")) {
    auto v = parseUnsigned(*l);
    if (!v || *v < 1 || *v > 100) {
      return http::Response::error(400, "invalid_query", "'limit' must be 1..100");
    }
    q.limit = static_cast<int>(*v);
  }
  if (auto c = req.queryValue("cursor"); c && !c->empty()) {
    auto decoded = decodeCursor(*c);
    if (!decoded) return http::Response::error(400, "invalid_cursor", "'cursor' is not valid");
    q.after_sort_key = decoded->first;
    q.after_id = decoded->second;
  }
  return q;
}

// Everything a library page depends on, user first (LibraryCache keys).
std::string libraryCacheKey(const LibraryQuery& q) {
  std::string key = q.user_id;
  for (const std::string* part : {&q.q, &q.status, &q.after_sort_key, &q.after_id}) {
    key += '\0';
    key += *part;
  }
  key += '\0';
  key += std::to_string(q.limit);
  return key;
}

http::Response libraryResponse(std::string text) {
  http::Response r = http::Response::jsonText(200, std::move(text));
  r.header("cache-control", "no-store");
  return r;
}

}  // namespace

void addUploadRoutes(http::Server& server, App& app) {
  server.route("POST", "/api/v1/uploads", [&app](http::Request& req) {
    VESSEL_REQUIRE_CALLER(app, req, user);
    auto parsed = parseObject(req.body, {"filename", "content_type", "size"});
    if (auto* r = std::get_if<http::Response>(&parsed)) return std::move(*r);
    const nlohmann::json& j = std::get<nlohmann::json>(parsed);
    auto filename = requireString(j, "filename", 255);
    if (auto* r = std::get_if<http::Response>(&filename)) return std::move(*r);
    auto ctype = requireString(j, "content_type", 100);
    if (auto* r = std::get_if<http::Response>(&ctype)) return std::move(*r);
    auto size_it = j.find("size");
    if (size_it == j.end())
      return http::Response::error(400, "missing_field", "'size' is required");
    if (!size_it->is_number_integer() || size_it->get<std::int64_t>() < 1) {
      return http::Response::error(400, "invalid_field", "'size' must be a positive integer");
    }
    const std::string type = mediaType(std::get<std::string>(ctype));
    if (!app.settings.content_types.count(type)) {
      return http::Response::error(415, "unsupported_media_type",
                                   "content type '" + type + "' is not accepted");
    }
    const auto size = size_it->get<std::int64_t>();
    if (static_cast<std::uint64_t>(size) > app.settings.max_upload_bytes) {
      return http::Response::error(413, "payload_too_large",
                                   "the file is larger than the limit of " +
                                       std::to_string(app.settings.max_upload_bytes) + " bytes");
    }
    auto store = app.store();
    if (!store.ok()) return http::errorResponse(store.error());
    auto created = store.value()->createUpload(
        NewUpload{user.id, std::get<std::string>(filename), type, size});
    if (!created.ok()) return http::errorResponse(created.error());
    const UploadRecord& u = created.value();
    app.libraryChanged(user.id);
    log::info("upload created",
              {{"upload_id", u.id}, {"user_id", user.id}, {"request_id", req.request_id}});
    // Stores clients reach directly (S3) take the bytes themselves: the
    // browser PUTs to a presigned URL and the bytes never pass through Vessel.
    auto presigned = app.storage->presignPut(u.storage_key, type, static_cast<std::uint64_t>(size),
                                             app.settings.upload_url_ttl.count());
    if (!presigned.ok()) return http::errorResponse(presigned.error());
    if (presigned.value()) {
      const PresignedRequest& p = *presigned.value();
      nlohmann::json headers = nlohmann::json::object();
      for (const auto& [k, v] : p.headers) headers[k] = v;
      return http::Response::json(201, {{"id", u.id},
                                        {"status", u.status},
                                        {"upload",
                                         {{"method", p.method},
                                          {"url", p.url},
                                          {"headers", headers},
                                          {"expires_at", isoTime(p.expires_unix)}}}});
    }
    const std::int64_t expires = nowUnix() + app.settings.upload_url_ttl.count();
    const std::string url =
        app.baseUrl(req) + "/api/v1/uploads/" + u.id +
        "/content?expires=" + std::to_string(expires) + "&sig=" +
        uploadSignature(app.settings.secret_key, u.id, static_cast<std::uint64_t>(size), expires);
    return http::Response::json(201, {{"id", u.id},
                                      {"status", u.status},
                                      {"upload",
                                       {{"method", "PUT"},
                                        {"url", url},
                                        {"headers", {{"Content-Type", type}}},
                                        {"expires_at", isoTime(expires)}}}});
  });

  // The signed PUT: no session needed, like a presigned S3 URL.
  server.streamingRoute(
      "PUT", "/api/v1/uploads/{id}/content",
      [&app](http::Request& req) -> std::variant<http::Response, std::unique_ptr<http::BodySink>> {
        const std::string id = req.param("id");
        auto store = app.store();
        if (!store.ok()) return http::errorResponse(store.error());
        auto found = store.value()->getUpload(id);
        if (!found.ok()) return http::errorResponse(found.error());
        // Without a valid signature nothing tells whether the id exists.
        const std::uint64_t size =
            found.value() ? static_cast<std::uint64_t>(found.value()->size_bytes) : 0;
        const SignatureCheck check = checkUploadSignature(
            app.settings.secret_key, id, size, req.queryValue("expires").value_or(""),
            req.queryValue("sig").value_or(""), nowUnix());
        if (!found.value() || check == SignatureCheck::kBad) {
          return http::Response::error(403, "invalid_signature",
                                       "the upload URL is not valid (tampered or for another "
                                       "upload)");
        }
        if (check == SignatureCheck::kExpired) {
          return http::Response::error(403, "url_expired", "the upload URL has expired");
        }
        UploadRecord u = std::move(*found.value());
        auto length = req.header("content-length");
        if (!length) {
          return http::Response::error(411, "length_required",
                                       "send Content-Length equal to the declared size");
        }
        auto declared = parseUnsigned(*length);
        if (!declared || *declared != size) {
          return http::Response::error(
              declared && *declared > size ? 413 : 400, "size_mismatch",
              "Content-Length must equal the declared size " + std::to_string(size));
        }
        if (auto begun = store.value()->beginContent(id); !begun.ok()) {
          if (begun.error().code == ErrorCode::kAlreadyExists) {
            return http::Response::error(409, "already_uploaded",
                                         "this upload URL was already used");
          }
          if (begun.error().code == ErrorCode::kNotFound) return notFound();
          if (begun.error().code == ErrorCode::kInvalidArgument) {
            return http::Response::error(409, "invalid_state", begun.error().message);
          }
          return http::errorResponse(begun.error());
        }
        auto writer = app.storage->openWriter(u.storage_key, u.content_type);
        if (!writer.ok()) {
          (void)store.value()->endContent(id, false);
          return storageRefused(writer.error(), id);
        }
        return std::unique_ptr<http::BodySink>(
            new OriginalSink(app, std::move(u), std::move(writer).value()));
      });

  server.route("POST", "/api/v1/uploads/{id}/complete", [&app](http::Request& req) {
    VESSEL_REQUIRE_CALLER(app, req, user);
    auto own = ownUpload(app, user, req.param("id"));
    if (auto* r = std::get_if<http::Response>(&own)) return std::move(*r);
    const UploadRecord& u = std::get<UploadRecord>(own);
    if (u.status != "uploading") {
      return http::Response::error(409, "invalid_state",
                                   "the upload is " + u.status + ", not uploading");
    }
    if (u.content_state == "receiving") {
      return http::Response::error(409, "content_missing", "the file is still being uploaded");
    }
    // Through Vessel (local storage) content_state says the bytes arrived; with
    // a presigned PUT (S3) only the store knows: ask it either way.
    auto info = app.storage->stat(u.storage_key);
    if (!info.ok()) {
      if (info.error().code == ErrorCode::kNotFound) {
        return http::Response::error(409, "content_missing", "upload the file to upload.url first");
      }
      return http::errorResponse(info.error());
    }
    if (info.value().size_bytes != static_cast<std::uint64_t>(u.size_bytes)) {
      return http::Response::error(409, "size_mismatch",
                                   "stored " + std::to_string(info.value().size_bytes) +
                                       " bytes, declared " + std::to_string(u.size_bytes));
    }
    auto reader = app.storage->openReader(u.storage_key, 0, 64);
    if (!reader.ok()) return http::errorResponse(reader.error());
    std::string head(64, '\0');
    auto n = reader.value()->read(std::as_writable_bytes(std::span(head.data(), head.size())));
    if (!n.ok()) return http::errorResponse(n.error());
    head.resize(n.value());
    if (!sniffAudio(head)) {
      return http::Response::error(415, "not_audio",
                                   "the file's content is not a supported audio format");
    }
    auto store = app.store();
    if (!store.ok()) return http::errorResponse(store.error());
    auto job = store.value()->enqueue(u.id, app.settings.pipeline);
    app.libraryChanged(user.id);
    if (!job.ok()) {
      if (job.error().code == ErrorCode::kInvalidArgument) {
        return http::Response::error(409, "invalid_state", job.error().message);
      }
      return http::errorResponse(job.error());
    }
    log::info("upload queued", {{"upload_id", u.id},
                                {"user_id", user.id},
                                {"job_id", static_cast<long long>(job.value())}});
    return http::Response::json(202, {{"id", u.id}, {"status", "queued"}});
  });

  server.route("GET", "/api/v1/uploads/{id}", [&app](http::Request& req) {
    VESSEL_REQUIRE_CALLER(app, req, user);
    auto own = ownUpload(app, user, req.param("id"));
    if (auto* r = std::get_if<http::Response>(&own)) return std::move(*r);
    http::Response r =
        http::Response::json(200, uploadJson(std::get<UploadRecord>(own), app.storage.get()));
    r.header("cache-control", "no-store");
    return r;
  });

  server.route("GET", "/api/v1/uploads", [&app](http::Request& req) {
    VESSEL_REQUIRE_CALLER(app, req, user);
    auto parsed = parseLibraryQuery(req, user.id);
    if (auto* r = std::get_if<http::Response>(&parsed)) return std::move(*r);
    const LibraryQuery& q = std::get<LibraryQuery>(parsed);
    const std::string key = libraryCacheKey(q);
    if (auto hit = app.library_cache->get(user.id, key, &req)) {
      return libraryResponse(std::move(*hit));
    }
    const auto generation = app.library_cache->begin(user.id);
    auto store = app.store();
    if (!store.ok()) return http::errorResponse(store.error());
    auto page = store.value()->listUploads(q);
    if (!page.ok()) {
      if (page.error().code == ErrorCode::kInvalidArgument) {
        return http::Response::error(400, "invalid_cursor", "'cursor' is not valid");
      }
      return http::errorResponse(page.error());
    }
    const auto& items = page.value().items;
    std::string body;
    body.reserve(256 + items.size() * 512);
    body += "{\"items\":[";
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (i) body += ',';
      appendUploadJson(body, items[i], app.storage.get());
    }
    body += "],\"next_cursor\":";
    if (page.value().more && !items.empty()) {
      json_text::appendString(body, encodeCursor(items.back().sort_key, items.back().id));
    } else {
      body += "null";
    }
    body += '}';
    if (generation) app.library_cache->put(user.id, key, *generation, body);
    return libraryResponse(std::move(body));
  });
  // A page in the cache for a session in the cache is answered on the server
  // thread, without the hop to a handler thread (bench/server).
  server.fastPath("GET", "/api/v1/uploads", [&app](http::Request& req) {
    std::optional<http::Response> out;
    auto user = app.cachedCaller(req);
    if (!user) return out;
    auto parsed = parseLibraryQuery(req, user->id);
    if (auto* q = std::get_if<LibraryQuery>(&parsed)) {
      if (auto hit = app.library_cache->get(user->id, libraryCacheKey(*q), &req)) {
        out = libraryResponse(std::move(*hit));
      }
    }
    return out;
  });

  server.route("POST", "/api/v1/uploads/{id}/retry", [&app](http::Request& req) {
    VESSEL_REQUIRE_CALLER(app, req, user);
    auto own = ownUpload(app, user, req.param("id"));
    if (auto* r = std::get_if<http::Response>(&own)) return std::move(*r);
    const UploadRecord& u = std::get<UploadRecord>(own);
    if (u.status != "failed") {
      return http::Response::error(409, "invalid_state",
                                   "only a failed upload can be retried (it is " + u.status + ")");
    }
    auto exists = app.storage->exists(u.storage_key);
    if (!exists.ok()) return http::errorResponse(exists.error());
    if (!exists.value()) {
      return http::Response::error(409, "original_missing",
                                   "the original file is no longer stored; upload it again");
    }
    auto store = app.store();
    if (!store.ok()) return http::errorResponse(store.error());
    auto job = store.value()->retry(u.id, app.settings.pipeline);
    app.libraryChanged(user.id);
    if (!job.ok()) {
      if (job.error().code == ErrorCode::kInvalidArgument) {
        return http::Response::error(409, "invalid_state", job.error().message);
      }
      return http::errorResponse(job.error());
    }
    log::info("upload retried", {{"upload_id", u.id}, {"user_id", user.id}});
    return http::Response::json(202, {{"id", u.id}, {"status", "queued"}});
  });

  // Cancels a live job first (its worker stops at its next heartbeat and
  // removes what it wrote after this), then removes every stored file, then
  // the row. A storage error keeps the row so that nothing is orphaned.
  server.route("DELETE", "/api/v1/uploads/{id}", [&app](http::Request& req) {
    VESSEL_REQUIRE_CALLER(app, req, user);
    auto own = ownUpload(app, user, req.param("id"));
    if (auto* r = std::get_if<http::Response>(&own)) return std::move(*r);
    const UploadRecord& u = std::get<UploadRecord>(own);
    auto store = app.store();
    if (!store.ok()) return http::errorResponse(store.error());
    auto cancelled = store.value()->cancelJobs(u.id);
    app.libraryChanged(user.id);
    if (!cancelled.ok()) return http::errorResponse(cancelled.error());
    auto removed = app.storage->removePrefix(uploadPrefix(u.user_id, u.id));
    if (!removed.ok()) {
      log::warn("delete: storage refused; row kept",
                {{"upload_id", u.id}, {"error", removed.error().message}});
      return http::errorResponse(removed.error());
    }
    auto deleted = store.value()->deleteUpload(u.id);
    app.libraryChanged(user.id);
    if (!deleted.ok() && deleted.error().code != ErrorCode::kNotFound) {
      return http::errorResponse(deleted.error());
    }
    log::info("upload deleted", {{"upload_id", u.id},
                                 {"user_id", user.id},
                                 {"objects", static_cast<long long>(removed.value())},
                                 {"job_cancelled", cancelled.value()}});
    return http::Response::empty(204);
  });
}

}  // namespace vessel::server
