-- 0005: a change feed of uploads for live status (Server-Sent Events). Every
-- change a client would see (status, error, metadata, job progress, deletion)
-- appends a row and NOTIFYs `vessel_uploads` with "<event id>:<user>:<upload>",
-- so a server learns of a change made by any worker on any machine, and a
-- client that reconnects resumes after its Last-Event-ID. Rows older than a
-- day are pruned by the server.
CREATE TABLE upload_events (
  id         bigserial PRIMARY KEY,
  user_id    uuid NOT NULL,
  upload_id  uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX upload_events_user ON upload_events (user_id, id);
CREATE INDEX upload_events_age ON upload_events (created_at);

CREATE FUNCTION vessel_upload_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  uid  uuid;
  upid uuid;
  eid  bigint;
BEGIN
  IF TG_TABLE_NAME = 'uploads' THEN
    IF TG_OP = 'DELETE' THEN
      uid := OLD.user_id;
      upid := OLD.id;
    ELSE
      uid := NEW.user_id;
      upid := NEW.id;
    END IF;
  ELSE
    upid := NEW.upload_id;
    SELECT user_id INTO uid FROM uploads WHERE id = upid;
    IF uid IS NULL THEN
      RETURN NULL;
    END IF;
  END IF;
  INSERT INTO upload_events (user_id, upload_id) VALUES (uid, upid) RETURNING id INTO eid;
  PERFORM pg_notify('vessel_uploads', eid || ':' || uid || ':' || upid);
  RETURN NULL;
END
$$;

CREATE TRIGGER uploads_changed
  AFTER INSERT OR DELETE OR UPDATE OF status, error, duration_s, title, artist, album ON uploads
  FOR EACH ROW EXECUTE FUNCTION vessel_upload_event();
CREATE TRIGGER jobs_progressed
  AFTER UPDATE OF progress ON jobs
  FOR EACH ROW WHEN (OLD.progress IS DISTINCT FROM NEW.progress)
  EXECUTE FUNCTION vessel_upload_event();
