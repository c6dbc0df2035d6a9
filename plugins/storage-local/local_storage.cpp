// LocalStorage: keys resolved component by component from a root directory fd,
// never by concatenating untrusted keys into paths (see local_storage.hpp).
#include "local_storage.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <mutex>
#include <new>
#include <random>
#include <shared_mutex>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "vessel/unique_fd.hpp"

namespace vessel::plugins {

namespace {

constexpr mode_t kDirMode = 0755;
constexpr mode_t kFileMode = 0644;
// Directories are walked with O_PATH: only search permission is needed, and the fd
// is good as the dirfd of every *at() call. O_NOFOLLOW makes a symlink fail the open.
constexpr int kWalkFlags = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
constexpr int kListFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
// A temp name is ".<stem>.tmp.<16 hex>"; the stem is cut so the name fits NAME_MAX (255).
constexpr std::string_view kTempMarker = ".tmp.";
constexpr std::size_t kTempHexDigits = 16;
constexpr std::size_t kTempStemMax = 200;
// remove() prunes empty directories. Within one process prune_mutex_ keeps that from
// racing a write; another process sharing the root can still delete a directory a
// put() just walked into (ENOENT), and the put then walks again, recreating it.
constexpr int kPrunedDirAttempts = 8;
constexpr std::size_t kRemovePrefixBatch = 1000;

// ---------------------------------------------------------------------------
// Messages and error codes

/// Escapes control bytes so keys with NULs or newlines cannot garble a log line.
std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      out += escaped;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

/// "local storage: put 'a/b.ts'"
std::string describe(std::string_view op, std::string_view key) {
  std::string out = "local storage: ";
  out += op;
  out += " '";
  out += printable(key);
  out += '\'';
  return out;
}

ErrorCode codeForErrno(int err) noexcept {
  switch (err) {
    case ENOENT:
      return ErrorCode::kNotFound;
    case EACCES:
    case EPERM:
    case EROFS:
    case ELOOP:
      return ErrorCode::kPermissionDenied;
    case ENOSPC:
    case EDQUOT:
      return ErrorCode::kNoSpace;
    case EEXIST:
    case ENOTEMPTY:
      return ErrorCode::kAlreadyExists;
    case ENOTDIR:
    case EISDIR:
    case ENAMETOOLONG:
    case EINVAL:
      return ErrorCode::kInvalidArgument;
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case EAGAIN:
    case EBUSY:
    case ETIMEDOUT:
      return ErrorCode::kUnavailable;
    default:
      return ErrorCode::kInternal;
  }
}

Error sysError(std::string_view op, std::string_view key, int err) {
  return makeError(codeForErrno(err),
                   describe(op, key) + ": " + std::generic_category().message(err));
}

Error detailError(ErrorCode code, std::string_view op, std::string_view key,
                  std::string_view detail) {
  std::string message = describe(op, key);
  message += ": ";
  message += detail;
  return makeError(code, std::move(message));
}

Error symlinkError(std::string_view op, std::string_view key, std::string_view link_path) {
  return detailError(ErrorCode::kPermissionDenied, op, key,
                     "'" + printable(link_path) +
                         "' is a symbolic link; links below the storage root are never followed");
}

/// Runs `fn`, turning any exception into an kInternal error naming op and key.
template <typename T, typename Fn>
Result<T> guarded(std::string_view op, std::string_view key, Fn&& fn) noexcept {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    return detailError(ErrorCode::kInternal, op, key, "out of memory");
  } catch (const std::exception& e) {
    return detailError(ErrorCode::kInternal, op, key, e.what());
  } catch (...) {
    return detailError(ErrorCode::kInternal, op, key, "unknown exception");
  }
}

// ---------------------------------------------------------------------------
// Keys, prefixes and temp names

std::vector<std::string_view> splitKey(std::string_view key) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (start <= key.size()) {
    std::size_t end = key.find('/', start);
    if (end == std::string_view::npos) end = key.size();
    parts.push_back(key.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

std::string_view lastComponent(std::string_view key) {
  const std::size_t slash = key.rfind('/');
  return slash == std::string_view::npos ? key : key.substr(slash + 1);
}

/// Valid keys whose last component is not one of our temp names.
Result<void> validateKey(std::string_view op, std::string_view key) {
  if (!isValidKey(key)) {
    return detailError(ErrorCode::kInvalidArgument, op, key,
                       "invalid key (must be 1-1024 bytes, relative, '/'-separated, without "
                       "empty, '.' or '..' components, NUL or backslash)");
  }
  if (isLocalTempName(lastComponent(key))) {
    return detailError(ErrorCode::kInvalidArgument, op, key,
                       "the name is reserved for in-progress temp files");
  }
  return {};
}

/// A prefix is valid when some valid key could start with it: everything up to the
/// last '/' is a valid key, and the partial last component has no NUL or backslash.
bool isValidPrefix(std::string_view prefix) noexcept {
  if (prefix.empty()) return true;
  if (prefix.size() > 1024) return false;
  const std::size_t slash = prefix.rfind('/');
  std::string_view tail = prefix;
  if (slash != std::string_view::npos) {
    if (!isValidKey(prefix.substr(0, slash))) return false;
    tail = prefix.substr(slash + 1);
  }
  return tail.find('\0') == std::string_view::npos && tail.find('\\') == std::string_view::npos;
}

std::string makeTempName(std::string_view name) {
  thread_local std::mt19937_64 rng{(std::uint64_t{std::random_device{}()} << 32) ^
                                   std::random_device{}()};
  char hex[kTempHexDigits + 1];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(rng()));
  std::string out = ".";
  out += name.substr(0, kTempStemMax);
  out += kTempMarker;
  out += hex;
  return out;
}

// ---------------------------------------------------------------------------
// Walking keys

enum class Access { kRead, kWrite };

/// Explains why a key's directory component could not be opened.
Error componentError(Access access, std::string_view op, std::string_view key,
                     std::string_view component_path, int parent_fd, const std::string& component,
                     int err) {
  if (err == ENOTDIR || err == ELOOP) {
    struct stat st {};
    if (::fstatat(parent_fd, component.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (S_ISLNK(st.st_mode)) return symlinkError(op, key, component_path);
      return detailError(
          access == Access::kWrite ? ErrorCode::kAlreadyExists : ErrorCode::kNotFound, op, key,
          "'" + printable(component_path) + "' is an object, not a directory");
    }
  }
  return sysError(op, key, err);
}

/// The directories of a walked key, outermost first. With keep_chain false only the
/// innermost one is kept open.
struct WalkedDirs {
  std::vector<UniqueFd> fds;
  int innermost(int root_fd) const noexcept { return fds.empty() ? root_fd : fds.back().get(); }
};

/// Opens `dirs` (components of `key`) one by one below root_fd without following
/// symlinks; for kWrite, creates missing ones.
Result<WalkedDirs> walkDirs(int root_fd, std::string_view op, std::string_view key,
                            std::span<const std::string_view> dirs, Access access,
                            bool keep_chain) {
  WalkedDirs walked;
  walked.fds.reserve(keep_chain ? dirs.size() : 1);
  std::string component;
  std::size_t path_end = 0;
  for (const std::string_view dir : dirs) {
    component.assign(dir);
    path_end += (path_end == 0 ? 0 : 1) + dir.size();
    const std::string_view component_path = key.substr(0, path_end);
    const int parent = walked.innermost(root_fd);
    int fd = ::openat(parent, component.c_str(), kWalkFlags);
    if (fd < 0 && errno == ENOENT && access == Access::kWrite) {
      if (::mkdirat(parent, component.c_str(), kDirMode) != 0 && errno != EEXIST) {
        const int err = errno;
        return componentError(access, op, key, component_path, parent, component, err);
      }
      fd = ::openat(parent, component.c_str(), kWalkFlags);
    }
    if (fd < 0) {
      const int err = errno;
      return componentError(access, op, key, component_path, parent, component, err);
    }
    UniqueFd owned(fd);
    if (!keep_chain) walked.fds.clear();
    walked.fds.push_back(std::move(owned));
  }
  return walked;
}

/// The read paths' shortcut (stat, openReader): one openat2(2) below the root
/// that refuses a symlink in any component and any escape from the root, which
/// is what walkParent checks component by component with one open and close
/// each (a segment's key has 3 directories: 8 system calls saved per lookup;
/// bench/server). -1 with errno on any failure: the caller then walks, which
/// also gives the precise error. Off for good after ENOSYS (kernel < 5.6) or
/// EPERM (a seccomp filter).
int openBeneath(int root_fd, std::string_view key, int flags) {
  static std::atomic<bool> available{true};
  if (!available.load(std::memory_order_relaxed)) {
    errno = ENOSYS;
    return -1;
  }
  open_how how{};
  how.flags = static_cast<std::uint64_t>(flags);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  const std::string path(key);
  const long fd = ::syscall(SYS_openat2, root_fd, path.c_str(), &how, sizeof how);
  if (fd < 0 && (errno == ENOSYS || errno == EPERM)) {
    available.store(false, std::memory_order_relaxed);
  }
  return static_cast<int>(fd);
}

/// Walks every directory component of `key` but the last.
Result<WalkedDirs> walkParent(int root_fd, std::string_view op, std::string_view key, Access access,
                              bool keep_chain,
                              std::vector<std::string_view>* components_out = nullptr) {
  std::vector<std::string_view> parts = splitKey(key);
  auto walked =
      walkDirs(root_fd, op, key, std::span(parts).first(parts.size() - 1), access, keep_chain);
  if (components_out != nullptr) *components_out = std::move(parts);
  return walked;
}

/// Refuses to publish over a symlink or a directory (rename would replace the link,
/// which is harmless, but a key that resolves to a link is refused everywhere).
Result<void> checkWriteTarget(std::string_view op, std::string_view key, int parent,
                              const std::string& name) {
  struct stat st {};
  if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return {};
    return sysError(op, key, errno);
  }
  if (S_ISLNK(st.st_mode)) return symlinkError(op, key, key);
  if (S_ISDIR(st.st_mode)) {
    return detailError(ErrorCode::kAlreadyExists, op, key,
                       "a directory holding other keys is in the way");
  }
  return {};
}

int writeAll(int fd, std::span<const std::byte> data) noexcept {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data = data.subspan(static_cast<std::size_t>(n));
  }
  return 0;
}

/// fsyncs a directory (through a readable fd: O_PATH fds cannot be synced).
int syncDir(int dir_fd) noexcept {
  UniqueFd readable(::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!readable.valid()) return errno;
  return ::fsync(readable.get()) == 0 ? 0 : errno;
}

Result<UniqueFd> createTemp(std::string_view op, std::string_view key, int parent,
                            std::string_view name, std::string& temp_name) {
  for (int attempt = 0; attempt < 4; ++attempt) {
    temp_name = makeTempName(name);
    const int fd = ::openat(parent, temp_name.c_str(),
                            O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, kFileMode);
    if (fd >= 0) return UniqueFd(fd);
    if (errno != EEXIST) return sysError(op, key, errno);
  }
  return sysError(op, key, EEXIST);
}

/// Finishes a temp file: optional fdatasync, close, rename over `name`, optional
/// directory sync. On failure the temp file is unlinked. Returns 0 or an errno.
int publish(UniqueFd& file, int parent, const std::string& temp_name, const std::string& name,
            bool durable) noexcept {
  int err = 0;
  if (durable && ::fdatasync(file.get()) != 0) err = errno;
  const int close_err = file.close();
  if (err == 0) err = close_err;
  if (err == 0 && ::renameat(parent, temp_name.c_str(), parent, name.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlinkat(parent, temp_name.c_str(), 0);
    return err;
  }
  if (durable) return syncDir(parent);
  return 0;
}

Error publishError(std::string_view op, std::string_view key, int err) {
  if (err == EISDIR) {
    return detailError(ErrorCode::kAlreadyExists, op, key,
                       "a directory holding other keys is in the way");
  }
  return sysError(op, key, err);
}

std::int64_t modifiedUnixMs(const struct stat& st) noexcept {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000;
}

// ---------------------------------------------------------------------------
// Writer and reader

class LocalObjectWriter final : public ObjectWriter {
 public:
  LocalObjectWriter(std::string key, UniqueFd dir, UniqueFd file, std::string temp_name,
                    std::string name, bool durable) noexcept
      : key_(std::move(key)),
        dir_(std::move(dir)),
        file_(std::move(file)),
        temp_name_(std::move(temp_name)),
        name_(std::move(name)),
        durable_(durable) {}

  ~LocalObjectWriter() override { abort(); }

  Result<void> write(std::span<const std::byte> data) noexcept override {
    return guarded<void>("write", key_, [&]() -> Result<void> {
      if (!file_.valid()) {
        return detailError(ErrorCode::kInvalidArgument, "write", key_,
                           "the writer was already committed or aborted");
      }
      if (const int err = writeAll(file_.get(), data); err != 0) {
        failed_ = true;
        return sysError("write", key_, err);
      }
      bytes_written_ += data.size();
      return {};
    });
  }

  Result<void> commit() noexcept override {
    return guarded<void>("commit", key_, [&]() -> Result<void> {
      if (!file_.valid()) {
        return detailError(ErrorCode::kInvalidArgument, "commit", key_,
                           "the writer was already committed or aborted");
      }
      if (failed_) {
        abort();
        return detailError(ErrorCode::kInvalidArgument, "commit", key_,
                           "an earlier write failed; the object was discarded");
      }
      const int err = publish(file_, dir_.get(), temp_name_, name_, durable_);
      temp_name_.clear();
      dir_.reset();
      if (err != 0) return publishError("commit", key_, err);
      return {};
    });
  }

  void abort() noexcept override {
    file_.reset();
    if (dir_.valid() && !temp_name_.empty()) ::unlinkat(dir_.get(), temp_name_.c_str(), 0);
    dir_.reset();
  }

  std::uint64_t bytesWritten() const noexcept override { return bytes_written_; }

 private:
  std::string key_;
  UniqueFd dir_;  ///< the directory holding the temp file
  UniqueFd file_;
  std::string temp_name_;
  std::string name_;
  bool durable_;
  bool failed_ = false;
  std::uint64_t bytes_written_ = 0;
};

class LocalObjectReader final : public ObjectReader, public LocalFileReader {
 public:
  LocalObjectReader(std::string key, UniqueFd file, const struct stat& st, std::uint64_t offset,
                    std::uint64_t length) noexcept
      : key_(std::move(key)),
        file_(std::move(file)),
        file_size_(static_cast<std::uint64_t>(st.st_size)),
        modified_ms_(vessel::plugins::modifiedUnixMs(st)),
        offset_(offset),
        position_(offset),
        length_(length),
        remaining_(length) {}

  int fileDescriptor() const noexcept override { return file_.get(); }
  std::uint64_t rangeOffset() const noexcept override { return offset_; }
  std::uint64_t fileSize() const noexcept override { return file_size_; }
  std::int64_t modifiedUnixMs() const noexcept override { return modified_ms_; }

  Result<std::size_t> read(std::span<std::byte> buffer) noexcept override {
    return guarded<std::size_t>("read", key_, [&]() -> Result<std::size_t> {
      if (remaining_ == 0 || buffer.empty()) return std::size_t{0};
      const std::size_t want =
          static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), remaining_));
      for (;;) {
        const ssize_t n = ::pread(file_.get(), buffer.data(), want, static_cast<off_t>(position_));
        if (n < 0) {
          if (errno == EINTR) continue;
          return sysError("read", key_, errno);
        }
        if (n == 0) {  // truncated under us: end early
          remaining_ = 0;
          return std::size_t{0};
        }
        position_ += static_cast<std::uint64_t>(n);
        remaining_ -= static_cast<std::uint64_t>(n);
        return static_cast<std::size_t>(n);
      }
    });
  }

  std::uint64_t sizeBytes() const noexcept override { return length_; }

 private:
  std::string key_;
  UniqueFd file_;
  std::uint64_t file_size_ = 0;
  std::int64_t modified_ms_ = 0;
  std::uint64_t offset_;
  std::uint64_t position_;
  std::uint64_t length_;
  std::uint64_t remaining_;
};

// ---------------------------------------------------------------------------
// Listing

struct DirEntry {
  std::string name;
  bool is_dir = false;
  std::string sort_key;  ///< name, plus '/' for directories: gives key order
};

/// Reads a directory's entries that could hold objects: regular files and real
/// directories whose name starts with `name_filter`, minus our temp files.
Result<std::vector<DirEntry>> readEntries(std::string_view op, std::string_view key, int dir_fd,
                                          std::string_view name_filter) {
  const int dup_fd = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return sysError(op, key, errno);
  DIR* dir = ::fdopendir(dup_fd);
  if (dir == nullptr) {
    const int err = errno;
    ::close(dup_fd);
    return sysError(op, key, err);
  }
  std::unique_ptr<DIR, int (*)(DIR*)> closer(dir, &::closedir);

  std::vector<DirEntry> entries;
  for (;;) {
    errno = 0;
    const dirent* ent = ::readdir(dir);
    if (ent == nullptr) {
      if (errno != 0) return sysError(op, key, errno);
      break;
    }
    const std::string_view name(ent->d_name);
    if (name == "." || name == ".." || !name.starts_with(name_filter) || isLocalTempName(name)) {
      continue;
    }
    bool is_dir = ent->d_type == DT_DIR;
    if (ent->d_type == DT_UNKNOWN) {
      struct stat st {};
      if (::fstatat(dir_fd, ent->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) continue;
      is_dir = S_ISDIR(st.st_mode);
    } else if (ent->d_type != DT_DIR && ent->d_type != DT_REG) {
      continue;  // symlinks, fifos, sockets, devices are not objects
    }
    DirEntry entry;
    entry.name.assign(name);
    entry.is_dir = is_dir;
    entry.sort_key = entry.name;
    if (is_dir) entry.sort_key.push_back('/');
    entries.push_back(std::move(entry));
  }
  std::sort(entries.begin(), entries.end(),
            [](const DirEntry& a, const DirEntry& b) { return a.sort_key < b.sort_key; });
  return entries;
}

/// Depth-first walk in key order, collecting objects after `token` until `limit`.
/// Sorting each directory by name + ('/' for directories) yields global byte order.
Result<void> collect(std::string_view op, std::string_view prefix, int dir_fd,
                     const std::string& base, std::string_view name_filter, std::string_view token,
                     std::size_t limit, std::vector<ObjectInfo>& out) {
  auto entries = readEntries(op, prefix, dir_fd, name_filter);
  if (!entries) return std::move(entries).error();
  for (const DirEntry& entry : entries.value()) {
    std::string full = base + entry.name;
    if (entry.is_dir) {
      const std::string sub = full + '/';
      // Every key below `sub` sorts before the token unless the token is inside it.
      if (!token.empty() && sub < token && !token.starts_with(sub)) continue;
      if (!isValidKey(full)) continue;
      UniqueFd child(::openat(dir_fd, entry.name.c_str(), kListFlags));
      if (!child.valid()) {
        const int err = errno;
        if (err == ENOENT || err == ELOOP || err == ENOTDIR) continue;  // raced with a change
        return sysError(op, prefix, err);
      }
      auto result = collect(op, prefix, child.get(), sub, {}, token, limit, out);
      if (!result) return result;
    } else {
      if (!token.empty() && std::string_view(full) <= token) continue;
      if (!isValidKey(full)) continue;
      struct stat st {};
      if (::fstatat(dir_fd, entry.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      if (!S_ISREG(st.st_mode)) continue;
      out.push_back(
          ObjectInfo{std::move(full), static_cast<std::uint64_t>(st.st_size), modifiedUnixMs(st)});
    }
    if (out.size() >= limit) return {};
  }
  return {};
}

/// Removes our temp files (left by a writer that died: kill -9, power loss) and
/// then-empty directories below `dir_fd`. Symlinks are never followed.
void sweepTempFiles(int dir_fd) {
  // The walk's fds may be O_PATH: open the directory itself for reading.
  const int dup_fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup_fd < 0) return;
  DIR* dir = ::fdopendir(dup_fd);
  if (dir == nullptr) {
    ::close(dup_fd);
    return;
  }
  std::unique_ptr<DIR, int (*)(DIR*)> closer(dir, &::closedir);
  std::vector<std::string> subdirs;
  std::vector<std::string> temps;
  while (const dirent* ent = ::readdir(dir)) {
    const std::string_view name(ent->d_name);
    if (name == "." || name == "..") continue;
    struct stat st {};
    if (::fstatat(dir_fd, ent->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      subdirs.emplace_back(name);
    } else if (S_ISREG(st.st_mode) && isLocalTempName(name)) {
      temps.emplace_back(name);
    }
  }
  for (const auto& t : temps) ::unlinkat(dir_fd, t.c_str(), 0);
  for (const auto& d : subdirs) {
    UniqueFd child(::openat(dir_fd, d.c_str(), kListFlags));
    if (!child.valid()) continue;
    sweepTempFiles(child.get());
    ::unlinkat(dir_fd, d.c_str(), AT_REMOVEDIR);  // only succeeds when empty
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Public functions

bool isLocalTempName(std::string_view name) noexcept {
  const std::size_t suffix = kTempMarker.size() + kTempHexDigits;
  if (name.size() < 2 + suffix || name.front() != '.') return false;
  if (name.substr(name.size() - suffix, kTempMarker.size()) != kTempMarker) return false;
  return std::all_of(name.end() - static_cast<std::ptrdiff_t>(kTempHexDigits), name.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

LocalStorage::LocalStorage(std::string root, int root_fd, bool durable) noexcept
    : root_(std::move(root)), root_fd_(root_fd), durable_(durable) {}

LocalStorage::~LocalStorage() {
  if (root_fd_ >= 0) ::close(root_fd_);
}

Result<std::unique_ptr<LocalStorage>> LocalStorage::open(
    const std::filesystem::path& root, const LocalStorageOptions& options) noexcept {
  const std::string shown = root.string();
  return guarded<std::unique_ptr<LocalStorage>>(
      "open root", shown, [&]() -> Result<std::unique_ptr<LocalStorage>> {
        if (root.empty()) {
          return detailError(ErrorCode::kInvalidArgument, "open root", shown,
                             "the root path is empty");
        }
        std::error_code ec;
        std::filesystem::path absolute = std::filesystem::absolute(root, ec);
        if (ec) return detailError(ErrorCode::kInvalidArgument, "open root", shown, ec.message());
        std::string path = absolute.lexically_normal().string();
        while (path.size() > 1 && path.back() == '/') path.pop_back();

        int fd = ::open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT && options.create_root) {
          std::filesystem::create_directories(path, ec);
          if (ec) {
            return detailError(codeForErrno(ec.value()), "create root", path, ec.message());
          }
          fd = ::open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
        }
        if (fd < 0) {
          const int err = errno;
          if (err == ENOTDIR) {
            return detailError(ErrorCode::kInvalidArgument, "open root", path,
                               "not a directory (the root, or one of its parents, is a file)");
          }
          if (err == ENOENT) {
            return detailError(ErrorCode::kNotFound, "open root", path,
                               "no such directory (and create_root is false)");
          }
          return sysError("open root", path, err);
        }
        return std::unique_ptr<LocalStorage>(
            new LocalStorage(std::move(path), fd, options.durable));
      });
}

Result<void> LocalStorage::put(std::string_view key, std::span<const std::byte> data,
                               std::string_view /*content_type*/) noexcept {
  return guarded<void>("put", key, [&]() -> Result<void> {
    if (auto valid = validateKey("put", key); !valid) return valid;
    Result<void> result;
    for (int attempt = 0; attempt < kPrunedDirAttempts; ++attempt) {
      result = putOnce(key, data);
      if (result || result.error().code != ErrorCode::kNotFound) break;
      std::this_thread::yield();  // another process pruned the directory
    }
    return result;
  });
}

Result<void> LocalStorage::putOnce(std::string_view key, std::span<const std::byte> data) {
  std::shared_lock no_pruning(prune_mutex_);
  auto walked = walkParent(root_fd_, "put", key, Access::kWrite, false);
  if (!walked) return std::move(walked).error();
  const int parent = walked.value().innermost(root_fd_);
  const std::string name(lastComponent(key));
  if (auto target = checkWriteTarget("put", key, parent, name); !target) return target;

  std::string temp_name;
  auto file = createTemp("put", key, parent, name, temp_name);
  if (!file) return std::move(file).error();
  no_pruning.unlock();  // from now on the temp file keeps the directory from being pruned
  if (const int err = writeAll(file.value().get(), data); err != 0) {
    file.value().reset();
    ::unlinkat(parent, temp_name.c_str(), 0);
    return sysError("put", key, err);
  }
  if (const int err = publish(file.value(), parent, temp_name, name, durable_); err != 0) {
    return publishError("put", key, err);
  }
  return {};
}

Result<std::unique_ptr<ObjectWriter>> LocalStorage::openWriter(
    std::string_view key, std::string_view /*content_type*/) noexcept {
  return guarded<std::unique_ptr<ObjectWriter>>(
      "openWriter", key, [&]() -> Result<std::unique_ptr<ObjectWriter>> {
        if (auto valid = validateKey("openWriter", key); !valid) return std::move(valid).error();
        Result<std::unique_ptr<ObjectWriter>> result =
            detailError(ErrorCode::kInternal, "openWriter", key, "not attempted");
        for (int attempt = 0; attempt < kPrunedDirAttempts; ++attempt) {
          result = openWriterOnce(key);
          if (result || result.error().code != ErrorCode::kNotFound) break;
          std::this_thread::yield();  // another process pruned the directory
        }
        return result;
      });
}

Result<std::unique_ptr<ObjectWriter>> LocalStorage::openWriterOnce(std::string_view key) {
  const std::shared_lock no_pruning(prune_mutex_);
  auto walked = walkParent(root_fd_, "openWriter", key, Access::kWrite, false);
  if (!walked) return std::move(walked).error();
  UniqueFd dir;
  if (walked.value().fds.empty()) {
    // The writer may outlive this object; give it its own handle on the root.
    dir = UniqueFd(::fcntl(root_fd_, F_DUPFD_CLOEXEC, 0));
    if (!dir.valid()) return sysError("openWriter", key, errno);
  } else {
    dir = std::move(walked.value().fds.back());
  }
  std::string name(lastComponent(key));
  if (auto target = checkWriteTarget("openWriter", key, dir.get(), name); !target) {
    return std::move(target).error();
  }
  std::string temp_name;
  auto file = createTemp("openWriter", key, dir.get(), name, temp_name);
  if (!file) return std::move(file).error();
  return std::unique_ptr<ObjectWriter>(
      new LocalObjectWriter(std::string(key), std::move(dir), std::move(file).value(),
                            std::move(temp_name), std::move(name), durable_));
}

Result<std::unique_ptr<ObjectReader>> LocalStorage::openReader(
    std::string_view key, std::uint64_t offset, std::optional<std::uint64_t> length) noexcept {
  return guarded<std::unique_ptr<ObjectReader>>(
      "openReader", key, [&]() -> Result<std::unique_ptr<ObjectReader>> {
        constexpr std::string_view op = "openReader";
        if (auto valid = validateKey(op, key); !valid) return std::move(valid).error();
        // O_NONBLOCK: a FIFO planted under the root must not hang the open.
        constexpr int kFileFlags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
        UniqueFd file(openBeneath(root_fd_, key, kFileFlags));
        if (!file.valid()) {
          auto walked = walkParent(root_fd_, op, key, Access::kRead, false);
          if (!walked) return std::move(walked).error();
          const int parent = walked.value().innermost(root_fd_);
          const std::string name(lastComponent(key));
          file = UniqueFd(::openat(parent, name.c_str(), kFileFlags));
        }
        if (!file.valid()) {
          const int err = errno;
          if (err == ELOOP) return symlinkError(op, key, key);
          return sysError(op, key, err);
        }
        struct stat st {};
        if (::fstat(file.get(), &st) != 0) return sysError(op, key, errno);
        if (!S_ISREG(st.st_mode)) {
          return detailError(ErrorCode::kNotFound, op, key,
                             S_ISDIR(st.st_mode) ? "a directory, not an object" : "not an object");
        }
        const auto size = static_cast<std::uint64_t>(st.st_size);
        if (offset > size) {
          return detailError(ErrorCode::kInvalidArgument, op, key,
                             "offset " + std::to_string(offset) + " is past the end (size " +
                                 std::to_string(size) + ")");
        }
        const std::uint64_t readable = length ? std::min(*length, size - offset) : size - offset;
        return std::unique_ptr<ObjectReader>(
            new LocalObjectReader(std::string(key), std::move(file), st, offset, readable));
      });
}

Result<ObjectInfo> LocalStorage::stat(std::string_view key) noexcept {
  return guarded<ObjectInfo>("stat", key, [&]() -> Result<ObjectInfo> {
    constexpr std::string_view op = "stat";
    if (auto valid = validateKey(op, key); !valid) return std::move(valid).error();
    if (UniqueFd fd(openBeneath(root_fd_, key, O_PATH | O_NOFOLLOW | O_CLOEXEC)); fd.valid()) {
      struct stat st {};
      if (::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode)) {
        return ObjectInfo{std::string(key), static_cast<std::uint64_t>(st.st_size),
                          modifiedUnixMs(st)};
      }
      // A symlink (O_PATH | O_NOFOLLOW opens the link itself), a directory, ...:
      // the walk below says what.
    }
    auto walked = walkParent(root_fd_, op, key, Access::kRead, false);
    if (!walked) return std::move(walked).error();
    const std::string name(lastComponent(key));
    struct stat st {};
    if (::fstatat(walked.value().innermost(root_fd_), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) !=
        0) {
      return sysError(op, key, errno);
    }
    if (S_ISLNK(st.st_mode)) return symlinkError(op, key, key);
    if (!S_ISREG(st.st_mode)) {
      return detailError(ErrorCode::kNotFound, op, key,
                         S_ISDIR(st.st_mode) ? "a directory, not an object" : "not an object");
    }
    return ObjectInfo{std::string(key), static_cast<std::uint64_t>(st.st_size), modifiedUnixMs(st)};
  });
}

Result<bool> LocalStorage::exists(std::string_view key) noexcept {
  return guarded<bool>("exists", key, [&]() -> Result<bool> {
    auto info = stat(key);
    if (info) return true;
    if (info.error().code == ErrorCode::kNotFound) return false;
    Error error = std::move(info).error();
    // Re-label the operation: callers asked "exists", not "stat".
    const std::string from = describe("stat", key);
    if (error.message.starts_with(from)) {
      error.message.replace(0, from.size(), describe("exists", key));
    }
    return error;
  });
}

Result<void> LocalStorage::remove(std::string_view key) noexcept {
  return guarded<void>("remove", key, [&]() -> Result<void> { return removeKey("remove", key); });
}

Result<void> LocalStorage::removeKey(std::string_view op, std::string_view key) {
  if (auto valid = validateKey(op, key); !valid) return valid;
  std::vector<std::string_view> components;
  auto walked = walkParent(root_fd_, op, key, Access::kRead, true, &components);
  if (!walked) {
    if (walked.error().code == ErrorCode::kNotFound) return {};  // nothing there: done
    return std::move(walked).error();
  }
  std::vector<UniqueFd>& dirs = walked.value().fds;
  const int parent = walked.value().innermost(root_fd_);
  const std::string name(components.back());

  struct stat st {};
  if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return {};
    return sysError(op, key, errno);
  }
  if (S_ISLNK(st.st_mode)) return symlinkError(op, key, key);
  if (!S_ISREG(st.st_mode)) return {};  // a directory (or other non-object): no such object
  if (::unlinkat(parent, name.c_str(), 0) != 0 && errno != ENOENT) return sysError(op, key, errno);

  // Best effort: remove directories left empty, innermost first, stopping at the
  // first that is not empty (or was re-populated by a concurrent put).
  if (dirs.empty()) return {};
  const std::unique_lock pruning(prune_mutex_);
  std::string component;
  for (std::size_t i = dirs.size(); i-- > 0;) {
    const int above = i == 0 ? root_fd_ : dirs[i - 1].get();
    component.assign(components[i]);
    dirs[i].reset();
    if (::unlinkat(above, component.c_str(), AT_REMOVEDIR) != 0) break;
  }
  return {};
}

Result<ListPage> LocalStorage::list(std::string_view prefix, std::string_view page_token,
                                    std::size_t max_keys) noexcept {
  return guarded<ListPage>(
      "list", prefix, [&]() -> Result<ListPage> { return listImpl(prefix, page_token, max_keys); });
}

Result<ListPage> LocalStorage::listImpl(std::string_view prefix, std::string_view page_token,
                                        std::size_t max_keys) {
  constexpr std::string_view op = "list";
  if (max_keys == 0) {
    return detailError(ErrorCode::kInvalidArgument, op, prefix, "max_keys must be at least 1");
  }
  if (!isValidPrefix(prefix)) {
    return detailError(ErrorCode::kInvalidArgument, op, prefix,
                       "not a valid key prefix (relative, '/'-separated, no empty, '.' or '..' "
                       "components, no NUL or backslash)");
  }
  if (!page_token.empty() && !isValidKey(page_token)) {
    return detailError(ErrorCode::kInvalidArgument, op, prefix,
                       "invalid page token '" + printable(page_token) + "'");
  }

  // "a/b/c" → walk to directory "a/b", then list names there starting with "c".
  const std::size_t slash = prefix.rfind('/');
  const std::string base(slash == std::string_view::npos ? std::string_view{}
                                                         : prefix.substr(0, slash + 1));
  const std::string_view name_filter =
      slash == std::string_view::npos ? prefix : prefix.substr(slash + 1);
  std::vector<std::string_view> dirs;
  if (!base.empty()) dirs = splitKey(std::string_view(base).substr(0, base.size() - 1));

  ListPage page;
  auto walked = walkDirs(root_fd_, op, prefix, dirs, Access::kRead, false);
  if (!walked) {
    if (walked.error().code == ErrorCode::kNotFound) return page;
    return std::move(walked).error();
  }
  UniqueFd dir(
      ::openat(walked.value().innermost(root_fd_), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) return sysError(op, prefix, errno);

  const std::size_t limit = max_keys == SIZE_MAX ? max_keys : max_keys + 1;
  auto collected =
      collect(op, prefix, dir.get(), base, name_filter, page_token, limit, page.objects);
  if (!collected) return std::move(collected).error();
  if (page.objects.size() > max_keys) {
    page.objects.resize(max_keys);
    page.next_token = page.objects.back().key;
  }
  return page;
}

Result<std::uint64_t> LocalStorage::removePrefix(std::string_view prefix) noexcept {
  return guarded<std::uint64_t>("removePrefix", prefix, [&]() -> Result<std::uint64_t> {
    constexpr std::string_view op = "removePrefix";
    if (prefix.empty()) {
      return detailError(ErrorCode::kInvalidArgument, op, prefix,
                         "refusing an empty prefix (it would remove every object)");
    }
    if (!isValidPrefix(prefix)) {
      return detailError(ErrorCode::kInvalidArgument, op, prefix, "not a valid key prefix");
    }
    std::uint64_t removed = 0;
    std::string token;
    for (;;) {
      auto page = listImpl(prefix, token, kRemovePrefixBatch);
      if (!page) return std::move(page).error();
      for (const ObjectInfo& object : page.value().objects) {
        if (auto done = removeKey(op, object.key); !done) {
          Error error = std::move(done).error();
          error.message += " (after removing " + std::to_string(removed) + " objects)";
          return error;
        }
        ++removed;
      }
      if (page.value().next_token.empty()) break;
      token = std::move(page.value().next_token);
    }
    // A whole "directory" prefix: also drop temp files a dead writer left there,
    // so nothing of the prefix survives (cleanup, a re-run after kill -9).
    if (prefix.back() == '/') {
      const std::unique_lock pruning(prune_mutex_);
      auto parts = splitKey(prefix.substr(0, prefix.size() - 1));
      auto walked = walkDirs(root_fd_, op, prefix, parts, Access::kRead, true);
      if (walked) {
        auto& chain = walked.value().fds;
        sweepTempFiles(walked.value().innermost(root_fd_));
        // Then the emptied directories, innermost first (best effort).
        std::string component;
        for (std::size_t i = chain.size(); i-- > 0;) {
          const int above = i == 0 ? root_fd_ : chain[i - 1].get();
          component.assign(parts[i]);
          chain[i].reset();
          if (::unlinkat(above, component.c_str(), AT_REMOVEDIR) != 0) break;
        }
      }
    }
    return removed;
  });
}

std::optional<std::string> LocalStorage::localPath(std::string_view key) const noexcept {
  if (!isValidKey(key)) return std::nullopt;
  try {
    std::string path = root_;
    if (path != "/") path.push_back('/');
    path += key;
    return path;
  } catch (...) {
    return std::nullopt;
  }
}

Result<std::unique_ptr<Storage>> makeLocalStorage(const std::filesystem::path& root,
                                                  const LocalStorageOptions& options) noexcept {
  auto opened = LocalStorage::open(root, options);
  if (!opened) return std::move(opened).error();
  return std::unique_ptr<Storage>(std::move(opened).value());
}

}  // namespace vessel::plugins
