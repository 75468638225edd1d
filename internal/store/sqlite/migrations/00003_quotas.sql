-- Quota counters (SPEC §3.8): one row per agent, quota and proxy, for the
-- current period; written at most once a second, so a restart keeps them.

-- +goose Up
CREATE TABLE quota_usage (
    key          TEXT PRIMARY KEY,
    period_start INTEGER NOT NULL,
    used         REAL    NOT NULL
);

-- +goose Down
DROP TABLE quota_usage;
