-- Dashboard users (store.Users): a name and a PBKDF2 password hash for one
-- admin identity (admin_tokens.id), whose role and revocation apply.
-- Times are Unix microseconds (UTC).

-- +goose Up
CREATE TABLE users (
    name           TEXT PRIMARY KEY,
    password_hash  TEXT    NOT NULL,
    admin_token_id TEXT    NOT NULL REFERENCES admin_tokens (id),
    created_at     INTEGER NOT NULL
);

-- +goose Down
DROP TABLE users;
