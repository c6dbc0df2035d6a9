// The cleanup pass (used by the `cleanup` scheduler plugin and `vessel cleanup`).
#include "vessel/cleanup.hpp"

#include "vessel/log.hpp"

namespace vessel {

Result<CleanupSummary> runCleanupPass(JobStore& store, Storage& storage,
                                      const CleanupOptions& options) noexcept {
  CleanupSummary summary;
  summary.dry_run = options.dry_run;
  auto locked = store.tryLockCleanup();
  if (!locked.ok()) return locked.error();
  if (!locked.value()) {
    summary.skipped = true;
    log::info("cleanup skipped: another process is running a pass");
    return summary;
  }
  std::string after;
  for (;;) {
    auto batch = store.cleanupCandidates(options.stale_after, options.batch_size, after);
    if (!batch.ok()) {
      (void)store.unlockCleanup();
      return batch.error();
    }
    if (batch.value().empty()) break;
    for (const auto& c : batch.value()) {
      after = c.upload_id;
      summary.found++;
      const std::string prefix = uploadPrefix(c.user_id, c.upload_id);
      if (options.dry_run) {
        std::string token;
        for (;;) {
          auto page = storage.list(prefix, token, 1000);
          if (!page.ok()) {
            summary.errors++;
            break;
          }
          summary.deleted_objects += page.value().objects.size();
          if (page.value().next_token.empty()) break;
          token = page.value().next_token;
        }
        continue;
      }
      auto removed = storage.removePrefix(prefix);
      if (!removed.ok()) {
        // Keep the row: the next pass tries again. Never a row without files
        // or files without a row.
        summary.errors++;
        log::warn("cleanup: storage error, row kept",
                  {{"upload_id", c.upload_id}, {"error", removed.error().message}});
        continue;
      }
      summary.deleted_objects += removed.value();
      auto del = store.deleteUpload(c.upload_id);
      if (!del.ok()) {
        summary.errors++;
        log::warn("cleanup: row not deleted",
                  {{"upload_id", c.upload_id}, {"error", del.error().message}});
        continue;
      }
      summary.deleted_rows++;
    }
    if (batch.value().size() < options.batch_size) break;
  }
  (void)store.unlockCleanup();
  log::info("cleanup pass", {{"found", static_cast<long long>(summary.found)},
                             {"deleted_objects", static_cast<long long>(summary.deleted_objects)},
                             {"deleted_rows", static_cast<long long>(summary.deleted_rows)},
                             {"errors", static_cast<long long>(summary.errors)},
                             {"dry_run", summary.dry_run}});
  return summary;
}

}  // namespace vessel
