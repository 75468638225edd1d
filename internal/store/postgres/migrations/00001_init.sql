-- keyhole's PostgreSQL schema (several nodes on one database, SPEC §10).
-- It holds what the embedded SQLite schema holds, in PostgreSQL's types:
-- times are timestamptz (microseconds), binary values bytea. Secret values
-- are sealed by the vault; tokens are stored as hashes.
--
-- Names and ids that are sorted or compared (record ids, cursors) use the
-- "C" collation: byte order, as on SQLite, whatever the database's locale.

-- +goose Up
CREATE TABLE meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- The configuration version: every configuration write increments it in
-- its own transaction (which also serialises configuration writes) and
-- sends pg_notify(channel, version), delivered at commit.
CREATE TABLE config_version (
    id      boolean PRIMARY KEY DEFAULT true CHECK (id),
    version bigint  NOT NULL
);
INSERT INTO config_version (id, version) VALUES (true, 0);

CREATE TABLE keyring (
    id         bigint      PRIMARY KEY,
    wrapped    bytea       NOT NULL,
    created_at timestamptz NOT NULL,
    active     boolean     NOT NULL DEFAULT false
);

CREATE TABLE secrets (
    name       text COLLATE "C" PRIMARY KEY,
    version    integer     NOT NULL,
    kind       text        NOT NULL,
    fields     text[]      NOT NULL,
    created_at timestamptz NOT NULL,
    rotated_at timestamptz
);

CREATE TABLE secret_versions (
    name       text COLLATE "C" NOT NULL REFERENCES secrets (name) ON DELETE CASCADE,
    version    integer     NOT NULL,
    ciphertext bytea       NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE proxies (
    name       text COLLATE "C" PRIMARY KEY,
    secret     text COLLATE "C" REFERENCES secrets (name),
    spec       text        NOT NULL, -- the JSON spec, byte for byte
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX proxies_secret ON proxies (secret);

CREATE TABLE agents (
    name       text COLLATE "C" PRIMARY KEY,
    labels     text        NOT NULL, -- JSON object
    created_at timestamptz NOT NULL
);

CREATE TABLE tokens (
    id         text COLLATE "C" PRIMARY KEY,
    hash       text        NOT NULL UNIQUE,
    agent      text COLLATE "C" NOT NULL, -- no foreign key: a deleted agent's revoked tokens keep its name
    name       text        NOT NULL,
    proxies    text[]      NOT NULL,
    rules      text,                      -- JSON array, byte for byte
    parent_id  text COLLATE "C" REFERENCES tokens (id),
    depth      integer     NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    revoked_at timestamptz
);
CREATE INDEX tokens_agent ON tokens (agent);
CREATE INDEX tokens_parent ON tokens (parent_id);

CREATE TABLE admin_tokens (
    id         text COLLATE "C" PRIMARY KEY,
    hash       text        NOT NULL UNIQUE,
    name       text        NOT NULL,
    role       text        NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    revoked_at timestamptz
);

-- The hash chains, one per node: one row per link, never updated.
CREATE TABLE audit_events (
    node      text COLLATE "C" NOT NULL,
    seq       bigint NOT NULL,
    record_id text COLLATE "C" NOT NULL,
    kind      text   NOT NULL,
    data      bytea  NOT NULL,
    prev_hash bytea  NOT NULL,
    hash      bytea  NOT NULL,
    PRIMARY KEY (node, seq)
);
CREATE INDEX audit_events_record ON audit_events (record_id);

-- The queryable index of records, derived from the chains (verify checks it).
CREATE TABLE audit_records (
    id         text COLLATE "C" PRIMARY KEY,
    time       timestamptz      NOT NULL,
    node       text COLLATE "C" NOT NULL,
    proxy      text COLLATE "C" NOT NULL,
    agent      text COLLATE "C" NOT NULL,
    token_id   text COLLATE "C" NOT NULL,
    method     text             NOT NULL,
    path       text COLLATE "C" NOT NULL,
    decision   text             NOT NULL,
    reason     text COLLATE "C" NOT NULL,
    rule       text             NOT NULL,
    status     integer          NOT NULL,
    latency_ms double precision NOT NULL,
    complete   boolean          NOT NULL
);
CREATE INDEX audit_records_proxy ON audit_records (proxy, id);
CREATE INDEX audit_records_agent ON audit_records (agent, id);
CREATE INDEX audit_records_token ON audit_records (token_id, id);
CREATE INDEX audit_records_status ON audit_records (status, id);
CREATE INDEX audit_records_decision ON audit_records (decision, id);
CREATE INDEX audit_records_node ON audit_records (node, id);
CREATE INDEX audit_records_time ON audit_records (time);

-- Each node's chain head, written in the same transaction as every batch of
-- its events (audit.HeadMAC: keyed by the master key).
CREATE TABLE audit_heads (
    node       text COLLATE "C" PRIMARY KEY,
    seq        bigint      NOT NULL,
    hash       bytea       NOT NULL,
    mac        bytea       NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Quota counters (SPEC §3.8), for the current period. The key is bytea:
-- quota keys separate their parts with NUL, which text cannot hold.
CREATE TABLE quota_usage (
    key          bytea            PRIMARY KEY,
    period_start timestamptz      NOT NULL,
    used         double precision NOT NULL
);

-- +goose Down
DROP TABLE quota_usage;
DROP TABLE audit_heads;
DROP TABLE audit_records;
DROP TABLE audit_events;
DROP TABLE admin_tokens;
DROP TABLE tokens;
DROP TABLE agents;
DROP TABLE proxies;
DROP TABLE secret_versions;
DROP TABLE secrets;
DROP TABLE keyring;
DROP TABLE config_version;
DROP TABLE meta;
