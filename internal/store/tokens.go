package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/taskd/taskd/internal/store/dbsqlc"
)

// ErrTokenExists is returned by TokenInsert when a token of that name
// exists (revoked or not: a name is never reused, so that logs and
// last-used times stay unambiguous).
var ErrTokenExists = errors.New("a token with this name exists")

// Token is an API token as stored: never the token itself, and the hash
// only where a process needs it to recognise presented tokens.
type Token struct {
	Name   string
	Hash   []byte
	Scopes []string
	// Queues is nil for a token of every queue.
	Queues     []string
	CreatedAt  time.Time
	LastUsedAt *time.Time
	ExpiresAt  *time.Time
	RevokedAt  *time.Time
}

// TokenInsert stores a new token (its hash; the token is never stored)
// and returns its creation time.
func (s *Store) TokenInsert(ctx context.Context, t Token) (time.Time, error) {
	created, err := s.q.TokenInsert(ctx, dbsqlc.TokenInsertParams{
		Name: t.Name, Hash: t.Hash, Scopes: t.Scopes, Queues: t.Queues, ExpiresAt: t.ExpiresAt,
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "taskd_tokens_pkey" {
		return time.Time{}, ErrTokenExists
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("inserting token: %w", err)
	}
	return created, nil
}

// TokenList returns every token, revoked ones included, by name, without
// hashes.
func (s *Store) TokenList(ctx context.Context) ([]Token, error) {
	rows, err := s.q.TokenList(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	out := make([]Token, 0, len(rows))
	for _, r := range rows {
		out = append(out, Token{Name: r.Name, Scopes: r.Scopes, Queues: r.Queues, CreatedAt: r.CreatedAt,
			LastUsedAt: r.LastUsedAt, ExpiresAt: r.ExpiresAt, RevokedAt: r.RevokedAt})
	}
	return out, nil
}

// TokenListLive returns the tokens not revoked (expired ones included),
// with their hashes: what a process checks presented tokens against.
func (s *Store) TokenListLive(ctx context.Context) ([]Token, error) {
	rows, err := s.q.TokenListLive(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing live tokens: %w", err)
	}
	out := make([]Token, 0, len(rows))
	for _, r := range rows {
		out = append(out, Token{Name: r.Name, Hash: r.Hash, Scopes: r.Scopes, Queues: r.Queues, ExpiresAt: r.ExpiresAt})
	}
	return out, nil
}

// TokenRevoke revokes the token named name; ErrNotFound when there is no
// such token not yet revoked.
func (s *Store) TokenRevoke(ctx context.Context, name string) error {
	n, err := s.q.TokenRevoke(ctx, name)
	if err != nil {
		return fmt.Errorf("revoking token: %w", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// TokenTouch records when the named tokens were last used (a later time
// already recorded is kept).
func (s *Store) TokenTouch(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	p := dbsqlc.TokenTouchParams{}
	for name, at := range used {
		p.Names = append(p.Names, name)
		p.UsedAt = append(p.UsedAt, at)
	}
	if err := s.q.TokenTouch(ctx, p); err != nil {
		return fmt.Errorf("recording token use: %w", err)
	}
	return nil
}
