-- API tokens (internal/auth): only a SHA-256 hash of each token is kept,
-- never the token, which `taskd token create` prints once. Auth is on
-- while at least one token is not revoked; every process reads the live
-- tokens every few seconds, so a token created or revoked here takes
-- effect without a restart.

-- +goose Up
CREATE TABLE taskd_tokens (
    name text PRIMARY KEY CHECK (name <> '' AND length(name) <= 128),
    hash bytea NOT NULL UNIQUE CHECK (length(hash) = 32),
    scopes text[] NOT NULL CHECK (cardinality(scopes) > 0),
    -- NULL: every queue.
    queues text[],
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    expires_at timestamptz,
    revoked_at timestamptz
);

-- +goose Down
DROP TABLE taskd_tokens;
