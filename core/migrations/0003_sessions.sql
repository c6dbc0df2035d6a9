-- 0003: login sessions for the auth plugins. A session is keyed by the lower-hex
-- SHA-256 of its token; the token itself is only ever held by the client, so a
-- leaked table grants nothing. Lookups go by token_hash (the primary key);
-- "sign out everywhere" and the cascade from users go by user_id; the purge of
-- old sessions goes by expires_at.
CREATE TABLE sessions (
  token_hash text PRIMARY KEY,
  user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);
