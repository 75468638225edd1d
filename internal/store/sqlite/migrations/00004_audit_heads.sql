-- Each node's audit chain head, written in the same transaction as every
-- batch of its events. mac = HMAC-SHA256(key derived from the master key,
-- node ‖ seq ‖ hash) (audit.HeadMAC): a truncated or rewritten tail no longer
-- matches its head, and a head cannot be forged without the master key.
-- Times are Unix microseconds (UTC).

-- +goose Up
CREATE TABLE audit_heads (
    node       TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL,
    hash       BLOB    NOT NULL,
    mac        BLOB    NOT NULL,
    updated_at INTEGER NOT NULL
);

-- +goose Down
DROP TABLE audit_heads;
