-- 0002: jobs by upload. getUpload reads the newest job's progress, deleteUpload
-- (and the ON DELETE CASCADE from uploads) removes an upload's jobs, and the
-- jobs table keeps every attempt as history, so both need an index rather
-- than a scan of all jobs ever run.
CREATE INDEX jobs_upload ON jobs (upload_id, id DESC);
