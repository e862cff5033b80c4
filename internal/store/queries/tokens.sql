-- name: TokenInsert :one
INSERT INTO taskd_tokens (name, hash, scopes, queues, expires_at)
VALUES (@name, @hash, @scopes::text[], sqlc.narg('queues')::text[], sqlc.narg('expires_at'))
RETURNING created_at;

-- TokenList lists every token, revoked ones included, by name; never the
-- hash.
-- name: TokenList :many
SELECT name, scopes, queues, created_at, last_used_at, expires_at, revoked_at
FROM taskd_tokens
ORDER BY name;

-- TokenListLive is what every process reads every few seconds: the tokens
-- not revoked (expired ones too, so that they answer 401 as expired rather
-- than unknown, and so that auth stays on while they exist).
-- name: TokenListLive :many
SELECT name, hash, scopes, queues, expires_at
FROM taskd_tokens
WHERE revoked_at IS NULL;

-- name: TokenRevoke :execrows
UPDATE taskd_tokens SET revoked_at = now()
WHERE name = @name AND revoked_at IS NULL;

-- TokenTouch records when tokens were last used, batched: a process sends
-- its tokens' times once a minute at most, never a write per request.
-- name: TokenTouch :exec
UPDATE taskd_tokens t SET last_used_at = u.used_at
FROM (SELECT unnest(@names::text[]) AS name, unnest(@used_at::timestamptz[]) AS used_at) u
WHERE t.name = u.name AND (t.last_used_at IS NULL OR t.last_used_at < u.used_at);
