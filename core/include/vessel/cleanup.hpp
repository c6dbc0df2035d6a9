// One cleanup pass: failed and stale uploads lose their stored files, then their rows.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "vessel/jobs.hpp"
#include "vessel/storage.hpp"

namespace vessel {

struct CleanupOptions {
  std::chrono::seconds stale_after{8 * 3600};
  std::size_t batch_size = 100;
  bool dry_run = false;
};

struct CleanupSummary {
  std::uint64_t found = 0;
  std::uint64_t deleted_objects = 0;  ///< would-delete count in a dry run
  std::uint64_t deleted_rows = 0;
  std::uint64_t errors = 0;
  bool dry_run = false;
  bool skipped = false;  ///< another process holds the cleanup lock
};

/// Runs one pass under the cluster-wide cleanup lock. For each candidate (in
/// batches): delete every object under <user>/<upload>/ (original + HLS), then
/// the row; a storage error keeps the row for the next pass. A dry run only
/// counts. Logs one summary line.
Result<CleanupSummary> runCleanupPass(JobStore& store, Storage& storage,
                                      const CleanupOptions& options) noexcept;

}  // namespace vessel
