// Package auth is taskd's access control: API tokens with scopes and,
// optionally, queues (tenants), checked on every request once any token
// exists.
package auth

import (
	"context"
	"slices"
)

// Scope is what a token may do.
type Scope string

// Scopes.
const (
	// ScopeRead: GET tasks, batches, kinds, queues, schedules.
	ScopeRead Scope = "read"
	// ScopeSubmit: read, plus submitting tasks and batches, cancel, retry.
	ScopeSubmit Scope = "submit"
	// ScopeWork: claims, complete, fail and heartbeat of external kinds.
	ScopeWork Scope = "work"
	// ScopeAdmin: everything, queue pause/resume, /metrics, River UI.
	ScopeAdmin Scope = "admin"
)

// Principal is who a request comes from: a token's name, scopes and
// queues. A request without one (auth off) may do everything.
type Principal struct {
	Name   string
	Scopes []Scope
	// Queues limits the token to these queues; nil: every queue.
	Queues []string
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the request's principal, nil when auth is off.
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// Has reports whether p may act with scope s; admin may do everything,
// submit includes read. A nil principal (auth off) may.
func (p *Principal) Has(s Scope) bool {
	if p == nil || slices.Contains(p.Scopes, ScopeAdmin) || slices.Contains(p.Scopes, s) {
		return true
	}
	return s == ScopeRead && slices.Contains(p.Scopes, ScopeSubmit)
}

// QueueAllowed reports whether p may see and touch tasks of queue. A nil
// principal, or one without queues, may.
func (p *Principal) QueueAllowed(queue string) bool {
	return p == nil || p.Queues == nil || slices.Contains(p.Queues, queue)
}

// QueueAllowedCtx is QueueAllowed for the principal of ctx.
func QueueAllowedCtx(ctx context.Context, queue string) bool {
	return FromContext(ctx).QueueAllowed(queue)
}
