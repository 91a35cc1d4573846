-- 001: meetings, API keys, lockout counters. Portable SQL: the same text
-- runs on SQLite (3.35+) and PostgreSQL (12+). Times are Unix milliseconds.
CREATE TABLE meetings (
    id                TEXT PRIMARY KEY,          -- 10 or 11 digits
    topic             TEXT NOT NULL,
    type              TEXT NOT NULL,             -- 'meeting' | 'webinar'
    passcode_hash     TEXT NOT NULL DEFAULT '',  -- PHC-format argon2id, '' = no passcode
    host_key_hash     TEXT NOT NULL DEFAULT '',
    panelist_key_hash TEXT NOT NULL DEFAULT '',
    start_time        BIGINT NOT NULL DEFAULT 0, -- 0 = instant meeting
    duration_minutes  INTEGER NOT NULL DEFAULT 0,
    zones             TEXT NOT NULL DEFAULT '',  -- zone affinity, comma-separated
    ended             INTEGER NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    version           BIGINT NOT NULL DEFAULT 1  -- optimistic concurrency
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,             -- hex SHA-256 of the key
    created_at BIGINT NOT NULL
);

CREATE TABLE lockouts (
    scope        TEXT NOT NULL,                  -- 'meeting' | 'source'
    key          TEXT NOT NULL,                  -- meeting ID | source address
    window_start BIGINT NOT NULL,
    failures     INTEGER NOT NULL,
    locked_until BIGINT NOT NULL DEFAULT 0,
    strikes      INTEGER NOT NULL DEFAULT 0,     -- lockouts so far (doubles the next)
    PRIMARY KEY (scope, key)
);
