package jobs

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"time"

	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/backoff"
	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/push"
	"github.com/taskd/taskd/internal/store"
)

// LeaseDefault is the lease of an external kind's task when neither the
// claim, the task nor its kind sets one.
const LeaseDefault = 60 * time.Second

// OwnPolicy is what a task set of its own retry policy and timeout at
// submission, kept in its River metadata ("backoff", "timeout"). Only what
// it set is kept, so that a kind's defaults, changed in the configuration
// file, apply to the tasks that did not set their own.
type OwnPolicy struct {
	Backoff *client.Backoff `json:"backoff,omitempty"`
	// Timeout is a Go duration; "" for none.
	Timeout string `json:"timeout,omitempty"`
}

// ParseOwnPolicy reads a task's own policy from its metadata (or from
// store.Task.Policy). What cannot be read is left out: submissions are
// validated, so only a hand-edited row gets there.
func ParseOwnPolicy(metadata []byte) OwnPolicy {
	// Most tasks set no policy of their own, and cost no decode (which
	// would allocate) on every submit, attempt, read and listed task: their
	// metadata has neither key. It is PostgreSQL's text of a jsonb value,
	// which writes keys unescaped, so a key that is there is there as
	// these bytes; a value that merely holds them is decoded.
	if !bytes.Contains(metadata, ownBackoffKey) && !bytes.Contains(metadata, ownTimeoutKey) {
		return OwnPolicy{}
	}
	var own OwnPolicy
	_ = json.Unmarshal(metadata, &own)
	return own
}

// ownBackoffKey and ownTimeoutKey are OwnPolicy's keys as JSON text.
var (
	ownBackoffKey = []byte(`"backoff"`)
	ownTimeoutKey = []byte(`"timeout"`)
)

// Policy is the retry policy and attempt timeout in effect for one task.
type Policy struct {
	Backoff backoff.Policy
	// Timeout bounds one attempt: for an external kind, the lease a claim
	// gets when it asks for none; -1 for none at all (a service run with
	// JobTimeout -1).
	Timeout time.Duration
}

// Policy returns the policy in effect for a task of kind that set own: its
// own fields, the rest its kind's, else the service's defaults.
func (c *Client) Policy(kind string, own OwnPolicy) Policy {
	return PolicyFor(c.kinds, c.cfg.JobTimeout, kind, own)
}

// PolicyFor is Client.Policy for the kinds of reg and a service whose
// JobTimeout is jobTimeout (-1: none); reg may be nil (no kind known).
func PolicyFor(reg *kinds.Registry, jobTimeout time.Duration, kind string, own OwnPolicy) Policy {
	var (
		k     kinds.Kind
		known bool
	)
	if reg != nil {
		k, known = reg.Lookup(kind)
	}
	p := Policy{Backoff: k.BackoffPolicy(), Timeout: k.Timeout}
	if own.Backoff != nil {
		// Validated at submission: Parse's problems cannot occur.
		o, _ := backoff.Parse(*own.Backoff)
		p.Backoff = o.Apply(p.Backoff)
	}
	// Most tasks have no timeout of their own: not parsing "" spares
	// every attempt the error ParseDuration would build for it.
	if own.Timeout != "" {
		if d, err := time.ParseDuration(own.Timeout); err == nil && d > 0 {
			p.Timeout = d
		}
	}
	if p.Timeout == 0 {
		switch {
		case known && k.Run == kinds.RunExternal:
			p.Timeout = LeaseDefault
		case known && k.Run == kinds.RunHTTP:
			p.Timeout = push.TimeoutDefault
		default:
			p.Timeout = jobTimeout
		}
	}
	return p
}

// RetryPolicy is taskd's river.ClientRetryPolicy: each task's backoff
// policy in effect (Client.Policy), through backoff.NextRetryAt.
type RetryPolicy struct {
	// Kinds gives each kind's default policy. Defaults to none known (the
	// tasks' own policy over backoff.Default).
	Kinds *kinds.Registry
	// Now returns the current time. Defaults to time.Now.
	Now func() time.Time
	// Jitter returns a number in [0, 1). Defaults to math/rand/v2.
	Jitter func() float64
}

// NextRetry implements river.ClientRetryPolicy. The attempt that just
// failed is counted from the recorded errors (its own is not yet among
// them), so snoozes and interruptions do not lengthen the wait.
func (p *RetryPolicy) NextRetry(job *rivertype.JobRow) time.Time {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	jitter := rand.Float64
	if p.Jitter != nil {
		jitter = p.Jitter
	}
	policy := PolicyFor(p.Kinds, 0, job.Kind, ParseOwnPolicy(job.Metadata))
	return backoff.NextRetryAt(policy.Backoff, len(job.Errors)+1, now(), jitter())
}

// attemptTimeout is River's timeout of an attempt at job run by this
// process (kinds.TimeoutFunc): the task's own, else its kind's, else the
// service's.
func (c *Client) attemptTimeout(job *rivertype.JobRow) time.Duration {
	return c.Policy(job.Kind, ParseOwnPolicy(job.Metadata)).Timeout
}

// attemptNumber is the number of the attempt that is running (or just ran)
// for job; see store.AttemptNumber.
func attemptNumber(job *rivertype.JobRow) int {
	return store.AttemptNumber(len(job.Errors), job.Attempt)
}
