-- 0001: users, uploads, jobs and the attempt log. Applied once, in a transaction.
CREATE TABLE users (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  email         text NOT NULL,
  password_hash text NOT NULL DEFAULT '',
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_lower ON users (lower(email));

CREATE TABLE uploads (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  storage_key     text NOT NULL,            -- the original: <user>/<upload>/original
  filename        text NOT NULL,            -- for display only, never a path
  content_type    text NOT NULL,
  size_bytes      bigint NOT NULL CHECK (size_bytes >= 0),
  public_url      text,
  job_secret_hash text,                     -- hex SHA-256 of the current remote job secret
  status          text NOT NULL DEFAULT 'uploading'
                  CHECK (status IN ('uploading', 'queued', 'processing', 'ready', 'failed')),
  duration_s      double precision,
  error           text,
  codec           text,
  sample_rate     integer,
  channels        integer,
  bit_rate        bigint,
  container       text,
  title           text,
  artist          text,
  album           text,
  tags            jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX uploads_library ON uploads (user_id, created_at DESC, id DESC);
CREATE INDEX uploads_cleanup ON uploads (status, updated_at);

CREATE TABLE jobs (
  id               bigserial PRIMARY KEY,
  upload_id        uuid NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
  pipeline         text NOT NULL,
  state            text NOT NULL DEFAULT 'queued'
                   CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
  attempts         integer NOT NULL DEFAULT 0,
  max_attempts     integer NOT NULL DEFAULT 3 CHECK (max_attempts > 0),
  run_after        timestamptz NOT NULL DEFAULT now(),
  lease_owner      text,
  lease_expires_at timestamptz,
  progress         double precision NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  started_at       timestamptz,
  finished_at      timestamptz
);
-- The claim scans queued jobs by due time, and expired leases.
CREATE INDEX jobs_claim ON jobs (run_after, id) WHERE state = 'queued';
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE state = 'running';
-- At most one live job per upload.
CREATE UNIQUE INDEX jobs_one_live_per_upload ON jobs (upload_id) WHERE state IN ('queued', 'running');

-- One row per claim: which worker ran which attempt, when. Proves no attempt
-- ever ran twice and lets operators see retries.
CREATE TABLE job_attempts (
  job_id      bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  attempt     integer NOT NULL,
  worker      text NOT NULL,
  started_at  timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  outcome     text,
  PRIMARY KEY (job_id, attempt)
);
