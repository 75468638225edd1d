-- keyhole's embedded schema. Times are Unix microseconds (UTC).
-- Secret values are sealed by the vault; tokens are stored as hashes.

-- +goose Up
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('config_version', '0');

CREATE TABLE keyring (
    id         INTEGER PRIMARY KEY,
    wrapped    BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    active     INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    version    INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    fields     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    rotated_at INTEGER
);

CREATE TABLE secret_versions (
    name       TEXT    NOT NULL REFERENCES secrets (name) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    ciphertext BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE proxies (
    name       TEXT PRIMARY KEY,
    secret     TEXT REFERENCES secrets (name),
    spec       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX proxies_secret ON proxies (secret);

CREATE TABLE agents (
    name       TEXT PRIMARY KEY,
    labels     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    hash       TEXT    NOT NULL UNIQUE,
    agent      TEXT    NOT NULL, -- no foreign key: a deleted agent's revoked tokens keep its name
    name       TEXT    NOT NULL,
    proxies    TEXT    NOT NULL,
    rules      TEXT,
    parent_id  TEXT REFERENCES tokens (id),
    depth      INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);
CREATE INDEX tokens_agent ON tokens (agent);
CREATE INDEX tokens_parent ON tokens (parent_id);

CREATE TABLE admin_tokens (
    id         TEXT PRIMARY KEY,
    hash       TEXT    NOT NULL UNIQUE,
    name       TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);

-- The hash chain: one row per link, never updated.
CREATE TABLE audit_events (
    node      TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    record_id TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    data      BLOB    NOT NULL,
    prev_hash BLOB    NOT NULL,
    hash      BLOB    NOT NULL,
    UNIQUE (node, seq)
);
CREATE INDEX audit_events_record ON audit_events (record_id);

-- The queryable index of records, derived from the chain (verify checks it).
CREATE TABLE audit_records (
    id         TEXT PRIMARY KEY,
    time       INTEGER NOT NULL,
    node       TEXT    NOT NULL,
    proxy      TEXT    NOT NULL,
    agent      TEXT    NOT NULL,
    token_id   TEXT    NOT NULL,
    method     TEXT    NOT NULL,
    path       TEXT    NOT NULL,
    decision   TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    rule       TEXT    NOT NULL,
    status     INTEGER NOT NULL,
    latency_ms REAL    NOT NULL,
    complete   INTEGER NOT NULL
);
CREATE INDEX audit_records_proxy ON audit_records (proxy, id);
CREATE INDEX audit_records_agent ON audit_records (agent, id);
CREATE INDEX audit_records_token ON audit_records (token_id, id);
CREATE INDEX audit_records_status ON audit_records (status, id);
CREATE INDEX audit_records_decision ON audit_records (decision, id);
CREATE INDEX audit_records_time ON audit_records (time);

-- +goose Down
DROP TABLE audit_records;
DROP TABLE audit_events;
DROP TABLE admin_tokens;
DROP TABLE tokens;
DROP TABLE agents;
DROP TABLE proxies;
DROP TABLE secret_versions;
DROP TABLE secrets;
DROP TABLE keyring;
DROP TABLE meta;
