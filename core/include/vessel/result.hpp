// Result<T>: the error-return type used on every request and job path and across
// the plugin boundary, where exceptions must not travel.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace vessel {

/// What went wrong, coarsely; callers branch on this, humans read `message`.
enum class ErrorCode {
  kInvalidArgument = 1,  ///< caller passed something malformed (bad key, bad option)
  kNotFound,             ///< the object / file / plugin does not exist
  kAlreadyExists,        ///< refusing to overwrite
  kPermissionDenied,     ///< the OS or the store refused access
  kUnsupportedInput,     ///< input is not audio, or a format we cannot decode
  kCorruptInput,         ///< input looked like audio but could not be decoded
  kTimeout,              ///< a stage stopped making progress (retryable)
  kUnavailable,          ///< a dependency is down or answered 5xx (retryable)
  kNoSpace,              ///< storage full
  kConfig,               ///< invalid configuration
  kCancelled,            ///< stopped on request (shutdown, job cancelled)
  kInternal,             ///< a bug or an unexpected library failure
  kUnauthenticated,      ///< missing or bad credentials (HTTP 401)
};

const char* errorCodeName(ErrorCode code) noexcept;

/// Whether retrying the same operation later may succeed.
bool isTransient(ErrorCode code) noexcept;

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
};

inline Error makeError(ErrorCode code, std::string message) {
  return Error{code, std::move(message)};
}

/// A value or an Error. Deliberately small: `ok()`, `value()`, `error()`.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : data_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : data_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const noexcept { return data_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(data_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(data_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(data_));
  }
  const Error& error() const& {
    assert(!ok());
    return std::get<1>(data_);
  }
  Error&& error() && {
    assert(!ok());
    return std::get<1>(std::move(data_));
  }

 private:
  std::variant<T, Error> data_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), failed_(true) {}  // NOLINT

  bool ok() const noexcept { return !failed_; }
  explicit operator bool() const noexcept { return ok(); }
  const Error& error() const& {
    assert(failed_);
    return error_;
  }
  Error&& error() && {
    assert(failed_);
    return std::move(error_);
  }

 private:
  Error error_;
  bool failed_ = false;
};

}  // namespace vessel
