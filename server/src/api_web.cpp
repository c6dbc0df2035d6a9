// GET / and GET /assets/{path*}: the web app's static files from one web root
// (server.web_root, or found next to the executable like the pipelines: the
// build tree's server/web, then <datadir>/vessel/web when installed).
//
// Caching: index.html is "no-cache" (always revalidated with its ETag); an asset
// asked for with ?v=<its content hash> — what the build writes into index.html
// (server/web/stamp.py) — is immutable for a year; any other asset URL
// revalidates. ETags are the content hash, so a 304 costs one stat.
// index.html carries a strict Content-Security-Policy (no inline script or
// style) and the upload limits the client checks before uploading.
//
// Only names made of [A-Za-z0-9._-] (no leading dot) with a known extension are
// served; the resolved path must lie inside the canonical root (a symlink that
// points out is refused) and be a regular file.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>
#include <unordered_map>

#include "app.hpp"
#include "vessel/log.hpp"
#include "vessel/unique_fd.hpp"
#include "vessel/worker_protocol.hpp"

namespace vessel::server {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kContentSecurityPolicy =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
constexpr std::string_view kConfigPlaceholder = "%VESSEL_CONFIG%";
constexpr std::size_t kMaxFileBytes = 16 << 20;
constexpr std::size_t kMaxSegments = 4;

const char* mimeType(std::string_view name) {
  static constexpr std::pair<std::string_view, const char*> kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
      {".woff2", "font/woff2"},
      {".json", "application/json"},
      {".webmanifest", "application/manifest+json"},
      {".txt", "text/plain; charset=utf-8"},
  };
  for (const auto& [ext, type] : kTypes) {
    if (name.size() > ext.size() && name.ends_with(ext)) return type;
  }
  return nullptr;
}

bool safeSegment(std::string_view s) {
  if (s.empty() || s.size() > 128 || s.front() == '.') return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) {
      return false;
    }
  }
  return true;
}

// "a/b.js" → true when every segment is safe and there are few of them.
bool safeRelativePath(std::string_view rel) {
  std::size_t segments = 0;
  while (true) {
    const auto slash = rel.find('/');
    if (!safeSegment(rel.substr(0, slash)) || ++segments > kMaxSegments) return false;
    if (slash == std::string_view::npos) return true;
    rel.remove_prefix(slash + 1);
  }
}

/// Same as server/web/stamp.py: the first 16 hex digits of SHA-256.
std::string webAssetHash(std::string_view data) { return protocol::sha256Hex(data).substr(0, 16); }

std::string htmlAttributeEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

fs::path exeDir() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : p.parent_path();
}

std::vector<fs::path> defaultWebRoots() {
  std::vector<fs::path> dirs;
  if (auto exe = exeDir(); !exe.empty()) {
    dirs.push_back((exe / "web").lexically_normal());  // build tree: build/server/{vessel,web}
    dirs.push_back((exe / ".." / VESSEL_WEB_DATADIR_REL / "vessel" / "web").lexically_normal());
  }
  dirs.emplace_back(VESSEL_WEB_INSTALL_DIR);
  return dirs;
}

bool hasIndex(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / "index.html", ec);
}

bool insideRoot(const fs::path& root, const fs::path& p) {
  auto [r, q] = std::mismatch(root.begin(), root.end(), p.begin(), p.end());
  return r == root.end() && q != p.end();
}

struct File {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  std::int64_t mtime_ns = 0;
  std::string body;
  std::string hash;
};

std::int64_t mtimeNs(const struct stat& st) {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

// The files of one web root, read on first use and re-read when they change on
// disk (so `server.web_root` may point at server/web while editing).
class WebRoot {
 public:
  WebRoot(fs::path root, std::string config_json)
      : root_(std::move(root)), config_attr_(htmlAttributeEscape(config_json)) {}

  const fs::path& path() const { return root_; }

  /// The file, or nullptr for anything we do not serve (missing, outside the
  /// root, not a regular file, too large).
  std::shared_ptr<const File> get(const std::string& rel) {
    std::error_code ec;
    const fs::path real = fs::canonical(root_ / rel, ec);
    if (ec || !insideRoot(root_, real)) return nullptr;
    UniqueFd fd(::open(real.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd.valid()) return nullptr;
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
        static_cast<std::uint64_t>(st.st_size) > kMaxFileBytes) {
      return nullptr;
    }
    {
      std::lock_guard lock(mu_);
      auto it = files_.find(rel);
      if (it != files_.end() && it->second->dev == st.st_dev && it->second->ino == st.st_ino &&
          it->second->size == st.st_size && it->second->mtime_ns == mtimeNs(st)) {
        return it->second;
      }
    }
    auto file = std::make_shared<File>();
    file->dev = st.st_dev;
    file->ino = st.st_ino;
    file->size = st.st_size;
    file->mtime_ns = mtimeNs(st);
    file->body.resize(static_cast<std::size_t>(st.st_size));
    std::size_t got = 0;
    while (got < file->body.size()) {
      const ssize_t n = ::pread(fd.get(), file->body.data() + got, file->body.size() - got,
                                static_cast<off_t>(got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
    if (got != file->body.size()) {
      log::warn("web: short read", {{"path", real.string()}});
      return nullptr;
    }
    if (rel == "index.html") {
      if (auto at = file->body.find(kConfigPlaceholder); at != std::string::npos) {
        file->body.replace(at, kConfigPlaceholder.size(), config_attr_);
      }
    }
    file->hash = webAssetHash(file->body);
    std::lock_guard lock(mu_);
    files_[rel] = file;
    return file;
  }

 private:
  fs::path root_;  // canonical
  std::string config_attr_;
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const File>> files_;
};

bool etagMatches(std::string_view header, std::string_view etag) {
  // If-None-Match: a list of (possibly weak) tags, or "*".
  while (!header.empty()) {
    const auto comma = header.find(',');
    std::string_view tag = header.substr(0, comma);
    while (!tag.empty() && tag.front() == ' ') tag.remove_prefix(1);
    while (!tag.empty() && tag.back() == ' ') tag.remove_suffix(1);
    if (tag.starts_with("W/")) tag.remove_prefix(2);
    if (tag == "*" || tag == etag) return true;
    if (comma == std::string_view::npos) break;
    header.remove_prefix(comma + 1);
  }
  return false;
}

http::Response serve(WebRoot& root, const std::string& rel, const http::Request& req) {
  const char* type = mimeType(rel);
  if (!type || !safeRelativePath(rel)) {
    return http::Response::error(404, "not_found", "no such file");
  }
  auto file = root.get(rel);
  if (!file) return http::Response::error(404, "not_found", "no such file");

  const bool html = rel == "index.html";
  const std::string etag = "\"" + file->hash + "\"";
  std::string cache = "no-cache";
  if (!html && req.queryValue("v") == file->hash) cache = "public, max-age=31536000, immutable";

  http::Response r;
  if (auto inm = req.header("if-none-match"); inm && etagMatches(*inm, etag)) {
    r = http::Response::empty(304);
  } else {
    r.status = 200;
    r.content_type = type;
    r.shared_view = file->body;  // shared, not copied: files are immutable once loaded
    r.shared_body = file;
  }
  r.header("etag", etag).header("cache-control", cache);
  // same-origin, not no-referrer: with no-referrer a same-origin POST carries
  // "Origin: null" and the API's CSRF check (Origin must be ours) refuses it.
  r.header("x-content-type-options", "nosniff").header("referrer-policy", "same-origin");
  if (html) {
    r.header("content-security-policy", std::string(kContentSecurityPolicy));
    r.header("x-frame-options", "DENY");
    r.header("cross-origin-opener-policy", "same-origin");
  }
  return r;
}

}  // namespace

Result<void> addWebRoutes(http::Server& server, App& app) {
  const std::string configured = app.runtime->config().getString("server.web_root");
  fs::path found;
  if (!configured.empty()) {
    if (!hasIndex(configured)) {
      return makeError(ErrorCode::kConfig,
                       "server.web_root: '" + configured + "' has no index.html");
    }
    found = configured;
  } else {
    for (const auto& dir : defaultWebRoots()) {
      if (hasIndex(dir)) {
        found = dir;
        break;
      }
    }
  }
  if (found.empty()) {
    log::warn("web app not found (set server.web_root); GET / answers 404");
    server.route("GET", "/", [](http::Request&) {
      return http::Response::error(404, "not_found",
                                   "the web app is not installed (see server.web_root)");
    });
    return {};
  }
  std::error_code ec;
  fs::path canonical = fs::canonical(found, ec);
  if (ec)
    return makeError(ErrorCode::kConfig,
                     "server.web_root: '" + found.string() + "': " + ec.message());
  // What the client checks before it uploads anything; the API checks again.
  nlohmann::json config = {
      {"max_upload_bytes", app.settings.max_upload_bytes},
      {"content_types", nlohmann::json(std::vector<std::string>(app.settings.content_types.begin(),
                                                                app.settings.content_types.end()))},
  };
  auto root = std::make_shared<WebRoot>(canonical, config.dump());
  log::info("web app", {{"root", canonical.string()}});

  server.route("GET", "/", [root](http::Request& req) { return serve(*root, "index.html", req); });
  server.route("GET", "/assets/{path*}", [root](http::Request& req) {
    const std::string rel = req.param("path");
    if (rel == "index.html") return http::Response::error(404, "not_found", "no such file");
    return serve(*root, rel, req);
  });
  return {};
}

}  // namespace vessel::server
