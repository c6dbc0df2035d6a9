-- 0006: one change event per job transition, not two. Claim, complete, retry,
-- release and failure change the upload's status in the same statement, which
-- is its own event (uploads_changed); the job's progress event is only for a
-- running job whose progress moved (heartbeats). Completion used to write both
-- (progress 1 and status ready): an extra insert + NOTIFY per job on the queue's
-- hot path.
DROP TRIGGER jobs_progressed ON jobs;
CREATE TRIGGER jobs_progressed
  AFTER UPDATE OF progress ON jobs
  FOR EACH ROW WHEN (OLD.progress IS DISTINCT FROM NEW.progress
                     AND OLD.state = 'running' AND NEW.state = 'running')
  EXECUTE FUNCTION vessel_upload_event();

