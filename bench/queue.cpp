// Benchmark: how fast W workers drain the PostgreSQL job queue through the
// public JobStore API (claim → complete, no transcoding), and whether every job
// ran exactly once. Starts a private embedded cluster in a temp dir; for each
// worker count enqueues --jobs no-op jobs (untimed), then times the drain.
// Prints a table and the target line; exits 0 whether or not the target is met,
// non-zero only if a call fails or a round breaks the exactly-once invariant.
//
//   bench-queue [--jobs 10000] [--workers-list 1,2,4]
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "vessel/database.hpp"
#include "vessel/jobs.hpp"
#include "vessel/result.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using vessel::ErrorCode;
using vessel::Result;

constexpr double kTargetClaimsPerSecond = 1000;
constexpr int kTargetWorkers = 4;
constexpr int kEnqueueThreads = 8;  // setup only; not timed

struct BenchOptions {
  std::int64_t jobs = 10000;
  std::vector<int> workers_list = {1, 2, 4};
};

struct RoundResult {
  int workers = 0;
  std::int64_t jobs = 0;
  double seconds = 0;
  double claims_per_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double complete_p50_ms = 0;
};

Result<std::int64_t> parseCount(std::string_view text, std::string_view flag) {
  std::int64_t n = 0;
  try {
    std::size_t used = 0;
    n = std::stoll(std::string(text), &used);
    if (used != text.size()) n = -1;
  } catch (...) {
    n = -1;
  }
  if (n <= 0) {
    return vessel::makeError(
        ErrorCode::kInvalidArgument,
        std::string(flag) + " needs a positive number, got '" + std::string(text) + "'");
  }
  return n;
}

Result<BenchOptions> parseArgs(int argc, char** argv) {
  BenchOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      return vessel::makeError(ErrorCode::kInvalidArgument,
                               "usage: bench-queue [--jobs N] [--workers-list 1,2,4]");
    }
    if (i + 1 >= argc) {
      return vessel::makeError(ErrorCode::kInvalidArgument,
                               "unknown or incomplete argument '" + std::string(arg) + "'");
    }
    const std::string_view value = argv[++i];
    if (arg == "--jobs") {
      Result<std::int64_t> n = parseCount(value, arg);
      if (!n) return std::move(n).error();
      options.jobs = n.value();
    } else if (arg == "--workers-list") {
      options.workers_list.clear();
      std::size_t start = 0;
      while (start <= value.size()) {
        const std::size_t comma = std::min(value.find(',', start), value.size());
        Result<std::int64_t> n = parseCount(value.substr(start, comma - start), arg);
        if (!n) return std::move(n).error();
        if (n.value() > 256) {
          return vessel::makeError(ErrorCode::kInvalidArgument, "--workers-list: at most 256");
        }
        options.workers_list.push_back(static_cast<int>(n.value()));
        start = comma + 1;
      }
    } else {
      return vessel::makeError(ErrorCode::kInvalidArgument,
                               "unknown argument '" + std::string(arg) + "'");
    }
  }
  return options;
}

// Runs `body(index)` on `count` threads and returns the first error any reported.
template <typename Body>
Result<void> runThreads(int count, Body body) {
  std::mutex mutex;
  std::optional<vessel::Error> first_error;
  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(count));
  for (int t = 0; t < count; ++t) {
    threads.emplace_back([&, t] {
      Result<void> r = body(t);
      if (!r) {
        const std::lock_guard lock(mutex);
        if (!first_error) first_error = std::move(r).error();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  if (first_error) return *first_error;
  return {};
}

// Untimed setup: one user per thread, `jobs` uploads each enqueued once.
Result<void> enqueueJobs(const std::string& conninfo, std::int64_t jobs, int round) {
  return runThreads(kEnqueueThreads, [&](int t) -> Result<void> {
    auto store = vessel::JobStore::connect(conninfo);
    if (!store) return std::move(store).error();
    vessel::JobStore& s = *store.value();
    auto user = s.createUser(
        "bench-r" + std::to_string(round) + "-t" + std::to_string(t) + "@example.com", "");
    if (!user) return std::move(user).error();
    for (std::int64_t i = t; i < jobs; i += kEnqueueThreads) {
      auto upload = s.createUpload(vessel::NewUpload{user.value(), "noop.wav", "audio/wav", 0});
      if (!upload) return std::move(upload).error();
      auto job = s.enqueue(upload.value().id, "bench-noop");
      if (!job) return std::move(job).error();
    }
    return {};
  });
}

double percentileMs(const std::vector<Clock::duration>& sorted, double p) {
  if (sorted.empty()) return 0;
  // Nearest rank.
  const auto rank = static_cast<std::size_t>(
      std::max(1.0, std::ceil(p / 100.0 * static_cast<double>(sorted.size()))));
  return std::chrono::duration<double, std::milli>(sorted[rank - 1]).count();
}

std::vector<Clock::duration> sortedMerge(const std::vector<std::vector<Clock::duration>>& parts) {
  std::vector<Clock::duration> all;
  for (const auto& part : parts) all.insert(all.end(), part.begin(), part.end());
  std::sort(all.begin(), all.end());
  return all;
}

// W threads, each with its own JobStore, claim → complete until claim returns
// nothing. The clock starts when every worker is connected.
Result<RoundResult> drain(const std::string& conninfo, int workers) {
  std::vector<std::vector<Clock::duration>> latencies(static_cast<std::size_t>(workers));
  std::vector<std::vector<Clock::duration>> completions(static_cast<std::size_t>(workers));
  Clock::time_point started;
  std::barrier connected(workers, [&]() noexcept { started = Clock::now(); });
  std::atomic<bool> aborted{false};
  const vessel::JobOutcome outcome{.duration_s = 1.0, .master_key = {}, .probe = {}};

  const Result<void> ran = runThreads(workers, [&](int w) -> Result<void> {
    auto store = vessel::JobStore::connect(conninfo);
    connected.arrive_and_wait();
    if (!store) return std::move(store).error();
    vessel::JobStore& s = *store.value();
    const std::string owner = "bench-w" + std::to_string(w);
    std::vector<Clock::duration>& mine = latencies[static_cast<std::size_t>(w)];
    std::vector<Clock::duration>& completed = completions[static_cast<std::size_t>(w)];
    while (!aborted) {
      const Clock::time_point t0 = Clock::now();
      auto claimed = s.claim(owner);
      const Clock::duration took = Clock::now() - t0;
      if (!claimed) {
        aborted = true;
        return std::move(claimed).error();
      }
      if (!claimed.value()) return {};
      mine.push_back(took);
      const Clock::time_point t1 = Clock::now();
      if (auto done = s.complete(*claimed.value(), outcome); !done) {
        aborted = true;
        return done;
      }
      completed.push_back(Clock::now() - t1);
    }
    return {};
  });
  const Clock::time_point finished = Clock::now();
  if (!ran) return ran.error();

  const std::vector<Clock::duration> all = sortedMerge(latencies);
  RoundResult result;
  result.workers = workers;
  result.jobs = static_cast<std::int64_t>(all.size());
  result.seconds = std::chrono::duration<double>(finished - started).count();
  result.claims_per_s = result.seconds > 0 ? static_cast<double>(result.jobs) / result.seconds : 0;
  result.p50_ms = percentileMs(all, 50);
  result.p99_ms = percentileMs(all, 99);
  result.complete_p50_ms = percentileMs(sortedMerge(completions), 50);
  return result;
}

// Exactly-once check, straight from the tables: every job of the round
// succeeded, and none was claimed more than once.
Result<void> verifyRound(const std::string& conninfo, std::int64_t jobs) {
  try {
    pqxx::connection conn(conninfo);
    pqxx::nontransaction tx(conn);
    const pqxx::row counts = tx.exec1(
        "SELECT count(*) FILTER (WHERE state = 'succeeded'), count(*),"
        "       (SELECT count(*) FROM uploads WHERE status = 'ready'),"
        "       (SELECT count(*) FROM (SELECT job_id FROM job_attempts GROUP BY job_id"
        "                              HAVING count(*) > 1) multi),"
        "       (SELECT count(*) FROM job_attempts) "
        "FROM jobs");
    const auto succeeded = counts[0].as<std::int64_t>();
    const auto total = counts[1].as<std::int64_t>();
    const auto ready = counts[2].as<std::int64_t>();
    const auto multi = counts[3].as<std::int64_t>();
    const auto attempts = counts[4].as<std::int64_t>();
    const bool ok =
        succeeded == jobs && total == jobs && ready == jobs && multi == 0 && attempts == jobs;
    std::printf(
        "  verify: %lld/%lld jobs succeeded, %lld uploads ready, %lld attempt rows, "
        "%lld jobs with >1 attempt: %s\n",
        static_cast<long long>(succeeded), static_cast<long long>(jobs),
        static_cast<long long>(ready), static_cast<long long>(attempts),
        static_cast<long long>(multi), ok ? "OK" : "FAILED");
    if (!ok) return vessel::makeError(ErrorCode::kInternal, "exactly-once check failed");
    return {};
  } catch (const std::exception& e) {
    return vessel::makeError(ErrorCode::kUnavailable, std::string("verify: ") + e.what());
  }
}

// Each round starts from an empty queue, so table size and the checks are per round.
Result<void> emptyQueue(const std::string& conninfo) {
  try {
    pqxx::connection conn(conninfo);
    pqxx::nontransaction tx(conn);
    tx.exec0("TRUNCATE users, uploads, jobs, job_attempts CASCADE");
    return {};
  } catch (const std::exception& e) {
    return vessel::makeError(ErrorCode::kUnavailable, std::string("truncate: ") + e.what());
  }
}

Result<std::vector<RoundResult>> runBench(const BenchOptions& options, const fs::path& dir) {
  vessel::EmbeddedPostgres::Options pg_options;
  pg_options.data_dir = dir / "data";
  auto pg = vessel::EmbeddedPostgres::start(pg_options);
  if (!pg) return std::move(pg).error();
  const std::string conninfo = pg.value()->connectionString();
  if (auto migrated = vessel::migrateDatabase(conninfo); !migrated) {
    return std::move(migrated).error();
  }

  std::vector<RoundResult> results;
  int round = 0;
  for (const int workers : options.workers_list) {
    ++round;
    if (auto r = emptyQueue(conninfo); !r) return std::move(r).error();
    std::printf("round %d: %d worker(s), enqueueing %lld jobs...\n", round, workers,
                static_cast<long long>(options.jobs));
    std::fflush(stdout);
    if (auto r = enqueueJobs(conninfo, options.jobs, round); !r) return std::move(r).error();
    Result<RoundResult> drained = drain(conninfo, workers);
    if (!drained) return std::move(drained).error();
    std::printf("  drained in %.3f s\n", drained.value().seconds);
    if (auto r = verifyRound(conninfo, options.jobs); !r) return std::move(r).error();
    std::fflush(stdout);
    results.push_back(drained.value());
  }
  return results;  // pg goes out of scope: the cluster stops
}

void printTable(const std::vector<RoundResult>& results) {
  std::printf("\n%7s %7s %9s %10s %13s %13s %16s\n", "workers", "jobs", "seconds", "claims/s",
              "claim p50 ms", "claim p99 ms", "complete p50 ms");
  for (const RoundResult& r : results) {
    std::printf("%7d %7lld %9.3f %10.0f %13.3f %13.3f %16.3f\n", r.workers,
                static_cast<long long>(r.jobs), r.seconds, r.claims_per_s, r.p50_ms, r.p99_ms,
                r.complete_p50_ms);
  }
  std::printf(
      "(claims/s = jobs / drain wall time, each job one claim + one complete;\n"
      " latencies: steady_clock around JobStore::claim (claims that returned a job) and\n"
      " JobStore::complete)\n\n");
  const auto target = std::find_if(results.begin(), results.end(), [](const RoundResult& r) {
    return r.workers == kTargetWorkers;
  });
  if (target == results.end()) {
    std::printf("%d workers: not measured (target >= %.0f claims/s)\n", kTargetWorkers,
                kTargetClaimsPerSecond);
    return;
  }
  std::printf("%d workers: %.0f claims/s (target >= %.0f) %s\n", kTargetWorkers,
              target->claims_per_s, kTargetClaimsPerSecond,
              target->claims_per_s >= kTargetClaimsPerSecond ? "PASS" : "MISS");
}

}  // namespace

int main(int argc, char** argv) {
  Result<BenchOptions> options = parseArgs(argc, argv);
  if (!options) {
    std::fprintf(stderr, "bench-queue: %s\n", options.error().message.c_str());
    return 64;
  }
  char pattern[] = "/tmp/vessel-bench-queue-XXXXXX";
  if (mkdtemp(pattern) == nullptr) {
    std::perror("bench-queue: mkdtemp");
    return 1;
  }
  const fs::path dir(pattern);
  std::error_code ec;
  // mkdtemp makes it 0700; as root the cluster runs as `vessel` and must enter it.
  fs::permissions(dir, fs::perms(0755), ec);
  Result<std::vector<RoundResult>> results =
      ec ? Result<std::vector<RoundResult>>(vessel::makeError(
               ErrorCode::kPermissionDenied, "chmod " + dir.string() + ": " + ec.message()))
         : runBench(options.value(), dir);
  fs::remove_all(dir, ec);
  if (ec) std::fprintf(stderr, "bench-queue: removing %s: %s\n", pattern, ec.message().c_str());
  if (!results) {
    std::fprintf(stderr, "bench-queue: %s: %s\n", vessel::errorCodeName(results.error().code),
                 results.error().message.c_str());
    return 1;
  }
  printTable(results.value());
  return 0;
}
