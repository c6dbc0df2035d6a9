// GET /media/{user}/{upload}/…: the HLS files of a ready upload, owner only,
// with the HLS MIME types, ETag/304, single-range 206 and cache headers.
// Only master.m3u8, <rung>/playlist.m3u8 and <rung>/segment_NNN.ts are served
// (never the original or anything else under the prefix).
#include <zlib.h>

#include <chrono>
#include <cstdio>

#include "app.hpp"
#include "cache.hpp"
#include "signing.hpp"

namespace vessel::server {

namespace {

bool rungName(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
  }
  return true;
}

// "master.m3u8" | "<rung>/playlist.m3u8" | "<rung>/segment_<digits>.ts"; the
// content type, or nullptr when the path is not one we serve.
const char* servedType(std::string_view path) {
  if (path == "master.m3u8") return "application/vnd.apple.mpegurl";
  const auto slash = path.find('/');
  if (slash == std::string_view::npos || !rungName(path.substr(0, slash))) return nullptr;
  const std::string_view file = path.substr(slash + 1);
  if (file == "playlist.m3u8") return "application/vnd.apple.mpegurl";
  constexpr std::string_view kPrefix = "segment_", kSuffix = ".ts";
  if (file.size() > kPrefix.size() + kSuffix.size() && file.starts_with(kPrefix) &&
      file.ends_with(kSuffix)) {
    const std::string_view digits =
        file.substr(kPrefix.size(), file.size() - kPrefix.size() - kSuffix.size());
    if (digits.size() > 9) return nullptr;
    for (char c : digits) {
      if (c < '0' || c > '9') return nullptr;
    }
    return "video/mp2t";
  }
  return nullptr;
}

http::Response notFound() { return http::Response::error(404, "not_found", "no such file"); }

bool acceptsGzip(const http::Request& req) {
  auto ae = req.header("accept-encoding");
  if (!ae) return false;
  // Good enough for real clients: "gzip" listed and not refused with q=0.
  const auto at = ae->find("gzip");
  return at != std::string::npos && ae->find("gzip;q=0", at) != at;
}

// gzip (RFC 1952) of a small text body; nullopt if zlib fails.
std::optional<std::string> gzipped(const std::string& text) {
  z_stream zs{};
  if (deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return std::nullopt;
  }
  std::string out(deflateBound(&zs, text.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  zs.avail_in = static_cast<uInt>(text.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) return std::nullopt;
  return out;
}

// Playlists compressed when the client takes gzip (Apple's HLS authoring
// spec asks for it); Range requests get the identity bytes they addressed.
void maybeCompress(const http::Request& req, http::Response& resp) {
  resp.header("vary", "Accept-Encoding");
  if (resp.status != 200 || !acceptsGzip(req)) return;
  if (auto gz = gzipped(resp.body)) {
    resp.body = std::move(*gz);
    resp.header("content-encoding", "gzip");
  }
}

constexpr std::int64_t kSegmentUrlTtlSeconds = 3600;
constexpr std::int64_t kStreamUrlTtlSeconds = 3600;

std::int64_t nowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A playlist whose relative URIs carry the stream token, so a player that
// follows them stays authorised without headers.
std::string withToken(const std::string& playlist, const std::string& token) {
  std::string out;
  std::size_t pos = 0;
  while (pos < playlist.size()) {
    std::size_t end = playlist.find('\n', pos);
    if (end == std::string::npos) end = playlist.size();
    std::string line = playlist.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line[0] != '#' && line.find("://") == std::string::npos) {
      line += (line.find('?') == std::string::npos ? "?st=" : "&st=") + token;
    }
    out += line;
    out += '\n';
  }
  return out;
}

// A media playlist with every segment URI replaced by a presigned GET of the
// store, or nullopt when the store has no presigned URLs (local disk).
Result<std::optional<std::string>> presignSegments(App& app, const std::string& playlist,
                                                   const std::string& rung_prefix) {
  std::string out;
  std::size_t pos = 0;
  bool any = false;
  while (pos < playlist.size()) {
    std::size_t end = playlist.find('\n', pos);
    if (end == std::string::npos) end = playlist.size();
    std::string line = playlist.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty() && line[0] != '#') {
      if (!servedType(rung_prefix.substr(rung_prefix.rfind('/', rung_prefix.size() - 2) + 1) +
                      line)) {
        return makeError(ErrorCode::kInternal, "unexpected URI in a playlist: " + line);
      }
      auto url = app.storage->presignGet(rung_prefix + line, kSegmentUrlTtlSeconds);
      if (!url.ok()) return url.error();
      if (!url.value()) return std::optional<std::string>();
      line = url.value()->url;
      any = true;
    }
    out += line;
    out += '\n';
  }
  if (!any) return std::optional<std::string>();
  return std::optional<std::string>(std::move(out));
}

// GET /media/…: the owner (session or stream token) gets a ready upload's
// playlists and segments. With `fast` (on a loop thread, see
// http::Server::fastPath) it answers only what needs no database: a cached
// session, an upload cached as ready, and reads from local storage; nullopt
// otherwise.
std::optional<http::Response> mediaResponse(App& app, http::Request& req, bool fast) {
  if (fast && !app.settings.inline_media) return std::nullopt;
  const std::string path = req.param("path");
  const char* type = servedType(path);
  // A stream token stands in for the session, for this upload only.
  const std::string token = req.queryValue("st").value_or("");
  std::string caller_id;
  if (!token.empty()) {
    const SignatureCheck check =
        checkStreamToken(app.settings.secret_key, req.param("upload"), token, nowUnix());
    if (check == SignatureCheck::kExpired) {
      return http::Response::error(403, "url_expired", "the stream URL has expired");
    }
    if (check != SignatureCheck::kValid) return notFound();
    caller_id = req.param("user");  // checked against the upload's owner below
  } else if (fast) {
    auto cached = app.cachedCaller(req);
    if (!cached) return std::nullopt;
    caller_id = cached->id;
  } else {
    VESSEL_REQUIRE_CALLER(app, req, caller);
    caller_id = caller.id;
  }
  const AuthUser caller{caller_id, ""};
  // Another user's prefix, an unknown upload and an unserved path all look alike.
  if (!type || req.param("user") != caller.id) return notFound();
  // "This upload is the caller's and ready", remembered like a library page
  // (dropped by any change to the caller's library, see cache.hpp).
  const std::string upload_id = req.param("upload");
  const std::string ready_key = caller.id + std::string("\0ready\0", 7) + upload_id;
  if (!app.library_cache->get(caller.id, ready_key, &req)) {
    if (fast) return std::nullopt;
    const auto generation = app.library_cache->begin(caller.id);
    auto store = app.store();
    if (!store.ok()) return http::errorResponse(store.error());
    auto upload = store.value()->getUpload(upload_id);
    if (!upload.ok()) return http::errorResponse(upload.error());
    if (!upload.value() || upload.value()->user_id != caller.id ||
        upload.value()->status != "ready") {
      return notFound();
    }
    if (generation) app.library_cache->put(caller.id, ready_key, *generation, "1");
  }
  const std::string prefix = uploadPrefix(caller.id, upload_id);
  const std::string key = prefix + path;
  const bool playlist = std::string_view(type) == "application/vnd.apple.mpegurl";
  // A store clients can reach (S3): segments are fetched from it directly
  // with short-lived presigned URLs, so private buckets stream too.
  if (!playlist) {
    auto direct = app.storage->presignGet(key, kSegmentUrlTtlSeconds);
    if (!direct.ok()) return http::errorResponse(direct.error());
    if (direct.value()) {
      http::Response r = http::Response::empty(302);
      r.header("location", direct.value()->url).header("cache-control", "private, no-store");
      return r;
    }
  }
  // A segment on local disk: the open file answers its size and time too, so
  // one open replaces stat + open (bench/server).
  std::unique_ptr<ObjectReader> local;
  const LocalFileReader* local_file = nullptr;
  std::uint64_t size = 0, modified_ms = 0;
  if (!playlist && app.settings.inline_media) {
    auto whole = app.storage->openReader(key, 0, std::nullopt);
    if (!whole.ok()) {
      return whole.error().code == ErrorCode::kNotFound ? notFound()
                                                        : http::errorResponse(whole.error());
    }
    if (auto* file = dynamic_cast<const LocalFileReader*>(whole.value().get())) {
      local_file = file;
      size = file->fileSize();
      modified_ms = static_cast<std::uint64_t>(file->modifiedUnixMs());
      local = std::move(whole).value();
    }
  }
  if (!local) {
    auto info = app.storage->stat(key);
    if (!info.ok()) {
      return info.error().code == ErrorCode::kNotFound ? notFound()
                                                       : http::errorResponse(info.error());
    }
    size = info.value().size_bytes;
    modified_ms = info.value().modified_unix_ms;
  }
  char etag[64];
  std::snprintf(etag, sizeof etag, "\"%llx-%llx\"", static_cast<unsigned long long>(size),
                static_cast<unsigned long long>(modified_ms));
  // A ready upload's files never change (a new attempt only follows a
  // failure), but the cache must stay private: the URL grants nothing alone.
  const char* cache = playlist ? "private, max-age=60" : "private, max-age=86400, immutable";

  std::string gz_etag = etag;
  gz_etag.insert(gz_etag.size() - 1, "-gz");
  if (auto inm = req.header("if-none-match");
      inm && (*inm == etag || *inm == gz_etag || *inm == "*")) {
    http::Response r = http::Response::empty(304);
    r.header("etag", etag).header("cache-control", cache);
    return r;
  }
  std::uint64_t first = 0, count = size;
  int status = 200;
  if (auto range = req.header("range")) {
    bool unsatisfiable = false;
    auto r = parseRange(*range, size, unsatisfiable);
    if (unsatisfiable) {
      http::Response resp =
          http::Response::error(416, "range_not_satisfiable", "the range starts past the end");
      resp.header("content-range", "bytes */" + std::to_string(size));
      return resp;
    }
    if (r) {
      first = r->first;
      count = r->last - r->first + 1;
      status = 206;
    }
  }
  http::Response resp;
  resp.status = status;
  resp.content_type = type;
  // A segment in a local file is sent by the kernel from the open file to the
  // socket (sendfile, see http::Response::FileBody): no copy, no mapping.
  // Files are replaced by rename, never rewritten in place, so the open file
  // keeps the size its ETag and Content-Length were made from.
  if (local_file && count > 0) {
    const int fd = local_file->fileDescriptor();
    resp.file =
        http::Response::FileBody{std::shared_ptr<const void>(std::move(local)), fd, first, count};
  }
  std::unique_ptr<ObjectReader> reader;
  if (!resp.file) {
    auto opened = app.storage->openReader(key, first, count);
    if (!opened.ok()) return http::errorResponse(opened.error());
    reader = std::move(opened).value();
  }
  // Otherwise segments are read into a pooled buffer that libsoup writes from
  // without a copy; playlists into the string they are rewritten in.
  static const std::shared_ptr<http::BufferPool> pool = http::BufferPool::create();
  std::shared_ptr<http::Buffer> buffer;
  char* into = nullptr;
  if (resp.file) {
    // sent from the file
  } else if (playlist) {
    resp.body.resize(count);
    into = resp.body.data();
  } else {
    buffer = pool->take(count);
    into = buffer->data.get();
  }
  std::size_t got = into ? 0 : count;
  while (got < count) {
    auto n = reader->read(std::as_writable_bytes(std::span(into + got, count - got)));
    if (!n.ok()) return http::errorResponse(n.error());
    if (n.value() == 0) break;
    got += n.value();
  }
  if (got != count) {
    return http::Response::error(503, "unavailable", "the file changed while it was read");
  }
  if (buffer) {
    resp.shared_view = std::string_view(into, count);
    resp.shared_body = std::move(buffer);
  }
  if (playlist && path != "master.m3u8" && status == 200) {
    auto rewritten = presignSegments(app, resp.body, prefix + path.substr(0, path.find('/') + 1));
    if (!rewritten.ok()) return http::errorResponse(rewritten.error());
    if (rewritten.value()) {
      resp.body = std::move(*rewritten.value());
      // The URIs inside expire: never reuse this body from a cache.
      resp.header("cache-control", "private, no-store");
      maybeCompress(req, resp);
      return resp;
    }
  }
  if (playlist && !token.empty() && status == 200) {
    resp.body = withToken(resp.body, token);
    resp.header("cache-control", "private, no-store");
    maybeCompress(req, resp);
    return resp;
  }
  if (playlist) maybeCompress(req, resp);
  std::string tag = etag;
  for (const auto& [k, v] : resp.headers) {
    if (k == "content-encoding") tag.insert(tag.size() - 1, "-gz");  // another representation
  }
  resp.header("etag", tag).header("cache-control", cache).header("accept-ranges", "bytes");
  if (status == 206) {
    resp.header("content-range", "bytes " + std::to_string(first) + "-" +
                                     std::to_string(first + count - 1) + "/" +
                                     std::to_string(size));
  }
  return resp;
}

}  // namespace

void addMediaRoutes(http::Server& server, App& app) {
  // A short-lived signed URL for players that cannot send headers (native
  // HLS players, cast devices): the token grants this one upload's files.
  server.route("GET", "/api/v1/uploads/{id}/stream-url", [&app](http::Request& req) {
    VESSEL_REQUIRE_CALLER(app, req, caller);
    auto store = app.store();
    if (!store.ok()) return http::errorResponse(store.error());
    auto upload = store.value()->getUpload(req.param("id"));
    if (!upload.ok()) return http::errorResponse(upload.error());
    if (!upload.value() || upload.value()->user_id != caller.id) {
      return http::Response::error(404, "not_found", "no such upload");
    }
    if (upload.value()->status != "ready") {
      return http::Response::error(409, "invalid_state", "the upload is not ready");
    }
    const std::int64_t expires = nowUnix() + kStreamUrlTtlSeconds;
    const std::string token = streamToken(app.settings.secret_key, upload.value()->id, expires);
    http::Response r =
        http::Response::json(200, {{"url", app.baseUrl(req) + "/media/" + caller.id + "/" +
                                               upload.value()->id + "/master.m3u8?st=" + token},
                                   {"expires_in_s", kStreamUrlTtlSeconds}});
    r.header("cache-control", "no-store");
    return r;
  });

  server.route("GET", "/media/{user}/{upload}/{path*}",
               [&app](http::Request& req) { return *mediaResponse(app, req, false); });
  server.fastPath("GET", "/media/{user}/{upload}/{path*}",
                  [&app](http::Request& req) { return mediaResponse(app, req, true); });
}

}  // namespace vessel::server
