-- Dashboard users (store.Users): a name and a PBKDF2 password hash for one
-- admin identity (admin_tokens.id), whose role and revocation apply.

-- +goose Up
CREATE TABLE users (
    name           text COLLATE "C" PRIMARY KEY,
    password_hash  text        NOT NULL,
    admin_token_id text COLLATE "C" NOT NULL REFERENCES admin_tokens (id),
    created_at     timestamptz NOT NULL
);

-- +goose Down
DROP TABLE users;
