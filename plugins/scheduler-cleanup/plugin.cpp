// Scheduler plugin `cleanup`: on an interval, finds failed uploads and uploads
// stuck in uploading/queued/processing longer than stale_after with no live
// lease; deletes their stored objects (original + whole HLS prefix), then their
// rows, in batches, and logs one summary line. A storage error keeps the row for
// the next run. Only one pass runs at a time across all processes (advisory
// lock). `vessel cleanup [--dry-run]` runs one pass by hand.
//
// Config keys (section [scheduler.cleanup]):
//   interval_s     seconds between passes (default 3600)
//   stale_after_s  an upload stuck this long is stale (default 28800 = 8 h)
//   batch_size     uploads per batch (default 100)
//   dry_run        report what would be deleted, change nothing (default false)
//
// Example:
//   [scheduler]
//   enabled = ["cleanup"]
//   [scheduler.cleanup]
//   interval_s = 3600
//   stale_after_s = 28800
//   batch_size = 100
//   dry_run = false
#include "vessel/plugin.hpp"

#include <boost/dll/alias.hpp>
#include <nlohmann/json.hpp>

#include "vessel/cleanup.hpp"
#include "vessel/jobs.hpp"
#include "vessel/scheduler.hpp"

namespace {

class CleanupScheduler final : public vessel::Scheduler {
 public:
  CleanupScheduler(std::chrono::seconds interval, vessel::CleanupOptions options)
      : interval_(interval), options_(options) {}

  std::chrono::seconds interval() const noexcept override { return interval_; }

  vessel::Result<std::string> runOnce(const vessel::SchedulerContext& context,
                                      bool force_dry_run) noexcept override {
    try {
      if (!context.storage) {
        return vessel::makeError(vessel::ErrorCode::kInvalidArgument, "cleanup: no storage");
      }
      auto store = vessel::JobStore::connect(context.conninfo);
      if (!store.ok()) return store.error();
      vessel::CleanupOptions options = options_;
      options.dry_run = options.dry_run || force_dry_run;
      auto summary = vessel::runCleanupPass(*store.value(), *context.storage, options);
      if (!summary.ok()) return summary.error();
      const auto& s = summary.value();
      nlohmann::json j = {{"found", s.found},
                          {"deleted_objects", s.deleted_objects},
                          {"deleted_rows", s.deleted_rows},
                          {"errors", s.errors},
                          {"dry_run", s.dry_run},
                          {"skipped", s.skipped}};
      return j.dump();
    } catch (const std::exception& e) {
      return vessel::makeError(vessel::ErrorCode::kInternal, std::string("cleanup: ") + e.what());
    }
  }

 private:
  std::chrono::seconds interval_;
  vessel::CleanupOptions options_;
};

const std::vector<vessel::ConfigField>* fields() noexcept {
  static const std::vector<vessel::ConfigField> kFields = {
      {"interval_s",
       vessel::ConfigType::kInt,
       std::int64_t{3600},
       "Seconds between passes",
       false,
       1,
       7 * 24 * 3600,
       {}},
      {"stale_after_s",
       vessel::ConfigType::kInt,
       std::int64_t{8 * 3600},
       "An upload stuck in uploading/queued/processing this long is stale",
       false,
       60,
       365LL * 24 * 3600,
       {}},
      {"batch_size",
       vessel::ConfigType::kInt,
       std::int64_t{100},
       "Uploads per batch",
       false,
       1,
       10000,
       {}},
      {"dry_run",
       vessel::ConfigType::kBool,
       false,
       "Report only; delete nothing",
       false,
       {},
       {},
       {}},
  };
  return &kFields;
}

void* create(const vessel::Config& config, std::string& error) noexcept {
  try {
    vessel::CleanupOptions options;
    options.stale_after = std::chrono::seconds(config.getInt("stale_after_s"));
    options.batch_size = static_cast<std::size_t>(config.getInt("batch_size"));
    options.dry_run = config.getBool("dry_run");
    return static_cast<vessel::Scheduler*>(
        new CleanupScheduler(std::chrono::seconds(config.getInt("interval_s")), options));
  } catch (const std::exception& e) {
    error = e.what();
    return nullptr;
  }
}

void destroy(void* object) noexcept { delete static_cast<vessel::Scheduler*>(object); }

}  // namespace

VESSEL_PLUGIN(vessel::PluginKind::kScheduler, "cleanup", "0.1.0",
              "Deletes failed and stale uploads (files, then rows)", fields, create, destroy)
