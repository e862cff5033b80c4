package auth

import (
	"cmp"
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/taskd/taskd/internal/store"
)

// Cache defaults.
const (
	// RefreshIntervalDefault is how often the live tokens are read: a token
	// created or revoked takes effect within it on every process.
	RefreshIntervalDefault = 2 * time.Second
	// TouchIntervalDefault is how often the last use of tokens is written,
	// one statement for all the tokens used since.
	TouchIntervalDefault = time.Minute
)

// CacheConfig configures a Cache.
type CacheConfig struct {
	// Store is where tokens are read. Required.
	Store *store.Store
	// Logger defaults to discarding.
	Logger *slog.Logger
	// RefreshInterval: see RefreshIntervalDefault. At most 5s.
	RefreshInterval time.Duration
	// TouchInterval: see TouchIntervalDefault.
	TouchInterval time.Duration
	// NowFunc defaults to time.Now.
	NowFunc func() time.Time
}

// WithDefaults returns c with zero values replaced by their defaults.
func (c CacheConfig) WithDefaults() CacheConfig {
	c.RefreshInterval = cmp.Or(c.RefreshInterval, RefreshIntervalDefault)
	c.TouchInterval = cmp.Or(c.TouchInterval, TouchIntervalDefault)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.NowFunc == nil {
		c.NowFunc = time.Now
	}
	return c
}

func (c CacheConfig) validate() error {
	switch {
	case c.Store == nil:
		return errors.New("auth: CacheConfig.Store is required")
	case c.RefreshInterval <= 0 || c.RefreshInterval > 5*time.Second:
		return errors.New("auth: RefreshInterval must be positive and at most 5s")
	case c.TouchInterval <= 0:
		return errors.New("auth: TouchInterval must be positive")
	}
	return nil
}

// Result is what Lookup found of a presented token.
type Result int

// Results.
const (
	// Unknown: no live token has this value (never created, or revoked).
	Unknown Result = iota
	// Expired: a token that was valid until its expiry.
	Expired
	// Valid: the principal may act within its scopes.
	Valid
)

type entry struct {
	hash      []byte
	principal *Principal
	expiresAt *time.Time
}

// Cache holds every live token's hash and principal, read from the
// database every RefreshInterval by Run: one query per refresh per
// process, whatever the number of requests. Auth is on while the database
// holds at least one token not revoked.
type Cache struct {
	cfg CacheConfig

	mu      sync.RWMutex
	byHash  map[string]*entry
	enabled bool
	// exposed: see KeepOn.
	exposed bool

	usedMu sync.Mutex
	used   map[string]time.Time
}

// NewCache returns a Cache that is empty (auth off) until Refresh.
func NewCache(cfg CacheConfig) (*Cache, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Cache{cfg: cfg, byHash: map[string]*entry{}, used: map[string]time.Time{}}, nil
}

// Refresh reads the live tokens. On an error the tokens read last stay in
// force: a database blip neither turns auth off nor locks everyone out.
func (c *Cache) Refresh(ctx context.Context) error {
	tokens, err := c.cfg.Store.TokenListLive(ctx)
	if err != nil {
		return err
	}
	byHash := make(map[string]*entry, len(tokens))
	for _, t := range tokens {
		p := &Principal{Name: t.Name, Queues: t.Queues}
		for _, s := range t.Scopes {
			p.Scopes = append(p.Scopes, Scope(s))
		}
		byHash[string(t.Hash)] = &entry{hash: t.Hash, principal: p, expiresAt: t.ExpiresAt}
	}
	c.mu.Lock()
	c.byHash, c.enabled = byHash, len(tokens) > 0
	c.mu.Unlock()
	return nil
}

// Enabled reports whether auth is on: at least one token is not revoked.
func (c *Cache) Enabled() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.enabled || c.exposed
}

// HasTokens reports whether any live token exists.
func (c *Cache) HasTokens() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.enabled
}

// KeepOn keeps auth on even when no token is left: for a process that
// listens on an address other machines can reach without --insecure. It
// was allowed to start because a token existed; once the last one is
// revoked it refuses every request (401) rather than serving everyone.
func (c *Cache) KeepOn() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.exposed = true
}

// Lookup finds the principal of a presented token. The token is hashed and
// the hash compared in constant time, so neither the map nor the
// comparison tells an attacker how close a guess came.
func (c *Cache) Lookup(token string) (*Principal, Result) {
	h := HashToken(token)
	c.mu.RLock()
	e := c.byHash[string(h)]
	c.mu.RUnlock()
	if e == nil || subtle.ConstantTimeCompare(e.hash, h) != 1 {
		return nil, Unknown
	}
	now := c.cfg.NowFunc()
	if e.expiresAt != nil && !now.Before(*e.expiresAt) {
		return e.principal, Expired
	}
	c.usedMu.Lock()
	c.used[e.principal.Name] = now
	c.usedMu.Unlock()
	return e.principal, Valid
}

// flushUsed writes the last use of the tokens used since the last flush.
func (c *Cache) flushUsed(ctx context.Context) {
	c.usedMu.Lock()
	used := c.used
	c.used = map[string]time.Time{}
	c.usedMu.Unlock()
	if len(used) == 0 {
		return
	}
	if err := c.cfg.Store.TokenTouch(ctx, used); err != nil {
		c.cfg.Logger.WarnContext(ctx, "recording the last use of tokens", slog.String("error", err.Error()))
		// Kept for the next flush, unless a newer use replaced them.
		c.usedMu.Lock()
		for name, at := range used {
			if cur, ok := c.used[name]; !ok || cur.Before(at) {
				c.used[name] = at
			}
		}
		c.usedMu.Unlock()
	}
}

// Run refreshes the tokens every RefreshInterval and writes their last use
// every TouchInterval until ctx is done, then writes it a last time.
func (c *Cache) Run(ctx context.Context) {
	refresh := time.NewTicker(c.cfg.RefreshInterval)
	defer refresh.Stop()
	touch := time.NewTicker(c.cfg.TouchInterval)
	defer touch.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			c.flushUsed(fctx)
			cancel()
			return
		case <-refresh.C:
			err := c.Refresh(ctx)
			switch {
			case err != nil && ctx.Err() == nil && !failing:
				// Once per outage, not every refresh.
				c.cfg.Logger.WarnContext(ctx, "reading API tokens failed; the tokens read last stay in force", slog.String("error", err.Error()))
				failing = true
			case err == nil && failing:
				c.cfg.Logger.InfoContext(ctx, "reading API tokens again")
				failing = false
			}
		case <-touch.C:
			c.flushUsed(ctx)
		}
	}
}
