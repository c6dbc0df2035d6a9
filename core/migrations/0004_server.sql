-- 0004: what the HTTP server needs: the state of an upload's bytes (so a signed
-- upload URL cannot be replayed once the original is stored) and the library
-- search index (case-insensitive substring search over filename, title and
-- artist through trigrams: no sequential scan however large a library grows).
ALTER TABLE uploads ADD COLUMN content_state text NOT NULL DEFAULT 'none'
  CHECK (content_state IN ('none', 'receiving', 'stored'));
-- Uploads that came in through `vessel submit` before this migration have their bytes.
UPDATE uploads SET content_state = 'stored' WHERE status <> 'uploading';

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX uploads_search ON uploads USING gin (
  (lower(filename || ' ' || coalesce(title, '') || ' ' || coalesce(artist, ''))) gin_trgm_ops);
