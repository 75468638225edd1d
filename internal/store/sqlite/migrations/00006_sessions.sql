-- Dashboard sessions (store.Sessions) and OAuth connect flows
-- (store.OAuthFlows), kept in the store so that any node serves them.
-- A session's id is the SHA-256 of its cookie (the cookie is never
-- stored); a flow's id is the SHA-256 of its state, and its confidential
-- part (PKCE verifier, client secret) is sealed by the vault. Rows whose
-- expires_at has passed are swept every minute. Times are Unix
-- microseconds (UTC).

-- +goose Up
CREATE TABLE dashboard_sessions (
    id             TEXT PRIMARY KEY,
    admin_token_id TEXT    NOT NULL REFERENCES admin_tokens (id) ON DELETE CASCADE,
    display        TEXT    NOT NULL,
    via            TEXT    NOT NULL,
    flash          TEXT    NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    last_seen      INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
);
CREATE INDEX dashboard_sessions_admin ON dashboard_sessions (admin_token_id);
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);

CREATE TABLE oauth_flows (
    id             TEXT PRIMARY KEY,
    secret         TEXT    NOT NULL,
    admin_token_id TEXT    NOT NULL REFERENCES admin_tokens (id) ON DELETE CASCADE,
    sealed         BLOB    NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
);
CREATE INDEX oauth_flows_expires ON oauth_flows (expires_at);

-- +goose Down
DROP TABLE oauth_flows;
DROP TABLE dashboard_sessions;
