// The key rule shared by every Storage implementation, and Storage::getAll.
#include "vessel/storage.hpp"

#include <array>
#include <cstddef>
#include <exception>
#include <new>
#include <string>

namespace vessel {

LocalFileReader::~LocalFileReader() = default;  // the key function: one typeinfo, in core

namespace {

constexpr std::size_t kMaxKeyBytes = 1024;
// getAll() is for manifests, playlists and small sidecars; anything larger must stream.
constexpr std::uint64_t kMaxGetAllBytes = std::uint64_t{64} * 1024 * 1024;

std::string quoted(std::string_view key) {
  std::string out;
  out.reserve(key.size() + 2);
  out.push_back('\'');
  out.append(key);
  out.push_back('\'');
  return out;
}

}  // namespace

bool isValidKey(std::string_view key) noexcept {
  if (key.empty() || key.size() > kMaxKeyBytes) return false;
  if (key.front() == '/' || key.back() == '/') return false;
  std::size_t start = 0;
  while (start <= key.size()) {
    std::size_t end = key.find('/', start);
    if (end == std::string_view::npos) end = key.size();
    const std::string_view component = key.substr(start, end - start);
    if (component.empty() || component == "." || component == "..") return false;
    for (const char c : component) {
      if (c == '\0' || c == '\\') return false;
    }
    start = end + 1;
  }
  return true;
}

Result<std::vector<std::byte>> Storage::getAll(std::string_view key) noexcept {
  try {
    auto opened = openReader(key);
    if (!opened) return std::move(opened).error();
    std::unique_ptr<ObjectReader> reader = std::move(opened).value();

    const std::uint64_t size = reader->sizeBytes();
    if (size > kMaxGetAllBytes) {
      return makeError(ErrorCode::kInvalidArgument,
                       "storage: getAll " + quoted(key) + ": object is " + std::to_string(size) +
                           " bytes, over the " + std::to_string(kMaxGetAllBytes) +
                           "-byte limit; stream it with openReader()");
    }

    std::vector<std::byte> data(static_cast<std::size_t>(size));
    std::size_t filled = 0;
    while (filled < data.size()) {
      auto got = reader->read(std::span<std::byte>(data).subspan(filled));
      if (!got) return std::move(got).error();
      if (got.value() == 0) {  // shrank while we read: return what is there
        data.resize(filled);
        return data;
      }
      filled += got.value();
    }
    // Reached the reported size; the object may have grown since, so read on to the end.
    std::array<std::byte, 16 * 1024> chunk{};
    for (;;) {
      auto got = reader->read(chunk);
      if (!got) return std::move(got).error();
      if (got.value() == 0) break;
      if (data.size() + got.value() > kMaxGetAllBytes) {
        return makeError(ErrorCode::kInvalidArgument,
                         "storage: getAll " + quoted(key) + ": object grew past the " +
                             std::to_string(kMaxGetAllBytes) + "-byte limit while reading");
      }
      data.insert(data.end(), chunk.begin(),
                  chunk.begin() + static_cast<std::ptrdiff_t>(got.value()));
    }
    return data;
  } catch (const std::bad_alloc&) {
    return makeError(ErrorCode::kInternal, "storage: getAll " + quoted(key) + ": out of memory");
  } catch (const std::exception& e) {
    return makeError(ErrorCode::kInternal, "storage: getAll " + quoted(key) + ": " + e.what());
  }
}

}  // namespace vessel
