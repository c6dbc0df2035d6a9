// Benchmark: the Storage interface, local disk vs S3 (the test server of
// tests/s3/server.py: s3rver behind the SigV4-verifying front, all on 127.0.0.1).
// For each store: put then get --objects segment-sized objects (default 1,000 x
// 200 KB) from --threads threads, then one --big-mb object (default 500 MB)
// written through openWriter in 1 MiB writes and read back through openReader.
// Prints MB/s and objects/s per phase. bench/storage runs it with the server.
//
//   bench-storage [--objects 1000] [--object-kb 200] [--big-mb 500] [--threads 4]
//                 [--stores local,s3]     (s3 needs VESSEL_TEST_S3, as server.py sets)
#include "vessel/storage.hpp"

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "local_storage.hpp"
#include "s3_storage.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  int objects = 1000;
  int object_kb = 200;
  int big_mb = 500;
  int threads = 4;
  std::vector<std::string> stores = {"local", "s3"};
};

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "bench-storage: %s\n", what.c_str());
  std::exit(1);
}

std::span<const std::byte> bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

/// Runs fn(i) for i in [0, n) on `threads` threads; dies on the first failure.
template <typename Fn>
double parallel(int n, int threads, Fn&& fn) {
  std::atomic<int> next{0};
  std::atomic<bool> failed{false};
  std::string failure;
  std::mutex mutex;
  const auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = next++; i < n && !failed; i = next++) {
        if (auto error = fn(i); !error.empty()) {
          const std::lock_guard lock(mutex);
          failed = true;
          failure = error;
        }
      }
    });
  }
  for (auto& thread : pool) thread.join();
  if (failed) die(failure);
  return seconds(Clock::now() - start);
}

void report(const char* store, const char* phase, double mb, double objects, double s) {
  std::printf("%-6s %-22s %8.1f MB in %7.2f s  %8.1f MB/s  %9.1f objects/s\n", store, phase, mb, s,
              mb / s, objects / s);
  std::fflush(stdout);
}

void run(const std::string& name, vessel::Storage& store, const Args& args) {
  const std::string prefix = "bench-" + std::to_string(::getpid()) + "/";
  const std::size_t object_bytes = static_cast<std::size_t>(args.object_kb) * 1000;
  std::string segment(object_bytes, '\0');
  for (std::size_t i = 0; i < segment.size(); ++i) segment[i] = static_cast<char>(i * 131 + 7);
  const double small_mb = static_cast<double>(object_bytes) * args.objects / 1e6;

  auto key = [&](int i) { return prefix + "seg/" + std::to_string(i) + ".ts"; };
  double s = parallel(args.objects, args.threads, [&](int i) -> std::string {
    auto done = store.put(key(i), bytes(segment), "video/mp2t");
    return done ? "" : done.error().message;
  });
  report(name.c_str(), "put small objects", small_mb, args.objects, s);
  s = parallel(args.objects, args.threads, [&](int i) -> std::string {
    auto data = store.getAll(key(i));
    if (!data) return data.error().message;
    return data.value().size() == object_bytes ? "" : "short read of " + key(i);
  });
  report(name.c_str(), "get small objects", small_mb, args.objects, s);

  const std::size_t chunk = 1 << 20;
  std::string block(chunk, '\0');
  for (std::size_t i = 0; i < block.size(); ++i) block[i] = static_cast<char>(i * 7 + 1);
  const std::uint64_t big = static_cast<std::uint64_t>(args.big_mb) * 1000 * 1000;
  auto start = Clock::now();
  {
    auto writer = store.openWriter(prefix + "big.bin", "application/octet-stream");
    if (!writer) die(writer.error().message);
    for (std::uint64_t written = 0; written < big;) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, big - written));
      if (auto w = writer.value()->write(bytes(block).first(n)); !w) die(w.error().message);
      written += n;
    }
    if (auto c = writer.value()->commit(); !c) die(c.error().message);
  }
  report(name.c_str(), "put one big object", big / 1e6, 1, seconds(Clock::now() - start));
  start = Clock::now();
  {
    auto reader = store.openReader(prefix + "big.bin");
    if (!reader) die(reader.error().message);
    std::vector<std::byte> buffer(chunk);
    std::uint64_t total = 0;
    for (;;) {
      auto got = reader.value()->read(buffer);
      if (!got) die(got.error().message);
      if (got.value() == 0) break;
      total += got.value();
    }
    if (total != big) die("big object read back short");
  }
  report(name.c_str(), "get one big object", big / 1e6, 1, seconds(Clock::now() - start));
  if (auto removed = store.removePrefix(prefix); !removed) die(removed.error().message);
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const std::size_t comma = std::min(s.find(',', start), s.size());
    if (comma > start) out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value for " + a);
      return argv[++i];
    };
    if (a == "--objects") {
      args.objects = std::stoi(value());
    } else if (a == "--object-kb") {
      args.object_kb = std::stoi(value());
    } else if (a == "--big-mb") {
      args.big_mb = std::stoi(value());
    } else if (a == "--threads") {
      args.threads = std::stoi(value());
    } else if (a == "--stores") {
      args.stores = split(value());
    } else {
      die("unknown argument " + a + " (see the comment at the top of bench/storage.cpp)");
    }
  }
  for (const auto& name : args.stores) {
    std::unique_ptr<vessel::Storage> store;
    std::filesystem::path dir;
    if (name == "local") {
      std::string pattern = "/tmp/vessel-bench-storage-XXXXXX";
      if (::mkdtemp(pattern.data()) == nullptr) die("mkdtemp failed");
      dir = pattern;
      auto made = vessel::plugins::makeLocalStorage(dir);
      if (!made) die(made.error().message);
      store = std::move(made).value();
    } else if (name == "s3") {
      const char* raw = std::getenv("VESSEL_TEST_S3");
      if (raw == nullptr) die("s3 needs VESSEL_TEST_S3 (run through bench/storage)");
      const auto info = nlohmann::json::parse(raw);
      vessel::plugins::S3Options o;
      o.endpoint = info["endpoint"];
      o.region = info["region"];
      o.bucket = info["bucket"];
      o.access_key_id = info["access_key_id"];
      o.secret_access_key = info["secret_access_key"];
      o.path_style = true;
      auto made = vessel::plugins::makeS3Storage(o);
      if (!made) die(made.error().message);
      store = std::move(made).value();
    } else {
      die("unknown store " + name);
    }
    run(name, *store, args);
    if (!dir.empty()) std::filesystem::remove_all(dir);
  }
  return 0;
}
