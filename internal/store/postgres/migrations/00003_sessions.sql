-- Dashboard sessions (store.Sessions) and OAuth connect flows
-- (store.OAuthFlows), shared by every node: a session signed in on one
-- node works on all, and a provider's callback may land on any node.
-- A session's id is the SHA-256 of its cookie (the cookie is never
-- stored); a flow's id is the SHA-256 of its state, and its confidential
-- part (PKCE verifier, client secret) is sealed by the vault. Rows whose
-- expires_at has passed are swept every minute by every node.

-- +goose Up
CREATE TABLE dashboard_sessions (
    id             text COLLATE "C" PRIMARY KEY,
    admin_token_id text COLLATE "C" NOT NULL REFERENCES admin_tokens (id) ON DELETE CASCADE,
    display        text        NOT NULL,
    via            text        NOT NULL,
    flash          text        NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL
);
CREATE INDEX dashboard_sessions_admin ON dashboard_sessions (admin_token_id);
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);

CREATE TABLE oauth_flows (
    id             text COLLATE "C" PRIMARY KEY,
    secret         text        NOT NULL,
    admin_token_id text COLLATE "C" NOT NULL REFERENCES admin_tokens (id) ON DELETE CASCADE,
    sealed         bytea       NOT NULL,
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL
);
CREATE INDEX oauth_flows_expires ON oauth_flows (expires_at);

-- +goose Down
DROP TABLE oauth_flows;
DROP TABLE dashboard_sessions;
