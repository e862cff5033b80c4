// Package backoff is taskd's retry policy: how long a failed task waits
// before its next attempt. A Policy is exponential backoff with a cap and
// jitter; a task or a kind may set any of its fields (an Override), the
// rest coming from its kind or from Default. NextRetryAt is the one
// computation of "next retry at", used by River's retry policy for the
// tasks taskd runs and by the failure of a leased task of an external
// kind alike.
package backoff

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/taskd/taskd/client"
)

// Bounds of a Policy's fields.
const (
	// InitialMin keeps a policy from retrying a failing task in a tight
	// loop.
	InitialMin = 100 * time.Millisecond
	// MaxMax is the longest wait between two attempts.
	MaxMax = 7 * 24 * time.Hour
	// MultiplierMin (no growth) and MultiplierMax bound Multiplier.
	MultiplierMin, MultiplierMax = 1.0, 10.0
	// JitterMax: a jitter of 1 spreads each wait over 0 to twice its value.
	JitterMax = 1.0
)

// Policy says how long a failed task waits: after failed attempt n
// (counted from 1) Initial × Multiplier^(n-1), at most Max, spread by
// ±Jitter (a fraction of the wait) and still at most Max.
type Policy struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
	Jitter     float64
}

// Default is the policy of tasks and kinds that set none: about 1 s, 2 s,
// 4 s, ... as in the FastAPI article taskd grew from, capped at an hour,
// with ±10% jitter so that tasks that failed together do not retry
// together.
var Default = Policy{Initial: time.Second, Max: time.Hour, Multiplier: 2, Jitter: 0.1}

// NextRetryAt is when a task under policy p whose attempt number attempt
// (counted from 1) failed at now is tried again, given a random number r
// in [0, 1) for the jitter. Every path that schedules a retry uses it.
func NextRetryAt(p Policy, attempt int, now time.Time, r float64) time.Time {
	return now.Add(p.wait(attempt, r))
}

func (p Policy) wait(attempt int, r float64) time.Duration {
	attempt = max(attempt, 1)
	// In float seconds: Multiplier^(attempt-1) overflows any integer long
	// before it reaches the cap's exponent, and +Inf compares fine.
	secs := p.Initial.Seconds() * math.Pow(p.Multiplier, float64(attempt-1))
	secs = min(secs, p.Max.Seconds())
	secs *= 1 + p.Jitter*(2*r-1)
	wait := time.Duration(secs * float64(time.Second))
	return max(min(wait, p.Max), 0)
}

// Override is what a task or a kind sets of a Policy; nil fields are
// inherited from the policy it applies to.
type Override struct {
	Initial, Max       *time.Duration
	Multiplier, Jitter *float64
}

// IsZero reports whether o sets nothing.
func (o Override) IsZero() bool {
	return o.Initial == nil && o.Max == nil && o.Multiplier == nil && o.Jitter == nil
}

// Apply returns base with the fields o sets replaced.
func (o Override) Apply(base Policy) Policy {
	if o.Initial != nil {
		base.Initial = *o.Initial
	}
	if o.Max != nil {
		base.Max = *o.Max
	}
	if o.Multiplier != nil {
		base.Multiplier = *o.Multiplier
	}
	if o.Jitter != nil {
		base.Jitter = *o.Jitter
	}
	return base
}

// Problem is one invalid field of an Override. Field is the wire name
// ("initial", "max", "multiplier", "jitter"); callers put their own path
// before it.
type Problem struct {
	Field   string
	Message string
}

// Check reports every field of o out of bounds and, when initial and max
// are within theirs, an initial wait longer than the cap once o is applied
// to base (on the field o sets; on initial when it sets both).
func (o Override) Check(base Policy) []Problem {
	return o.withOrder(o.checkRanges(), base)
}

// withOrder adds checkOrder's problem to out unless out holds one of
// initial or max already.
func (o Override) withOrder(out []Problem, base Policy) []Problem {
	for _, p := range out {
		if p.Field == "initial" || p.Field == "max" {
			return out
		}
	}
	return append(out, o.checkOrder(base)...)
}

func (o Override) checkRanges() []Problem {
	var out []Problem
	add := func(field, format string, args ...any) {
		out = append(out, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if o.Initial != nil && (*o.Initial < InitialMin || *o.Initial > MaxMax) {
		add("initial", "must be a duration between %s and %s", FormatDuration(InitialMin), FormatDuration(MaxMax))
	}
	if o.Max != nil && (*o.Max < InitialMin || *o.Max > MaxMax) {
		add("max", "must be a duration between %s and %s", FormatDuration(InitialMin), FormatDuration(MaxMax))
	}
	// Written so that NaN (YAML's .nan) is out of bounds too.
	if o.Multiplier != nil && !(*o.Multiplier >= MultiplierMin && *o.Multiplier <= MultiplierMax) {
		add("multiplier", "must be a number between %g and %g", MultiplierMin, MultiplierMax)
	}
	if o.Jitter != nil && !(*o.Jitter >= 0 && *o.Jitter <= JitterMax) {
		add("jitter", "must be a number between 0 and %g (a fraction of the wait)", JitterMax)
	}
	return out
}

func (o Override) checkOrder(base Policy) []Problem {
	p := o.Apply(base)
	switch {
	case p.Initial <= p.Max:
		return nil
	case o.Initial != nil:
		return []Problem{{Field: "initial", Message: fmt.Sprintf("must be at most max (%s)", FormatDuration(p.Max))}}
	default:
		return []Problem{{Field: "max", Message: fmt.Sprintf("must be at least initial (%s)", FormatDuration(p.Initial))}}
	}
}

// Read parses and checks the wire form of an Override applied to base,
// reporting every problem (Parse's, then Check's).
func Read(w client.Backoff, base Policy) (Override, []Problem) {
	o, out := Parse(w)
	return o, o.withOrder(append(out, o.checkRanges()...), base)
}

// Parse reads the wire form of an Override, reporting durations that are
// not Go durations. Bounds are Check's.
func Parse(w client.Backoff) (Override, []Problem) {
	var (
		o    Override
		errs []Problem
	)
	for _, f := range []struct {
		name string
		raw  *string
		dst  **time.Duration
	}{{"initial", w.Initial, &o.Initial}, {"max", w.Max, &o.Max}} {
		if f.raw == nil {
			continue
		}
		d, err := time.ParseDuration(*f.raw)
		if err != nil {
			errs = append(errs, Problem{Field: f.name, Message: "must be a duration such as \"1s\" or \"1h\""})
			continue
		}
		*f.dst = &d
	}
	o.Multiplier, o.Jitter = w.Multiplier, w.Jitter
	return o, errs
}

// Wire is the wire form of o: only the fields it sets.
func (o Override) Wire() client.Backoff {
	var w client.Backoff
	if o.Initial != nil {
		w.Initial = new(FormatDuration(*o.Initial))
	}
	if o.Max != nil {
		w.Max = new(FormatDuration(*o.Max))
	}
	w.Multiplier, w.Jitter = o.Multiplier, o.Jitter
	return w
}

// Wire is the wire form of p, every field set.
func (p Policy) Wire() client.Backoff {
	return client.Backoff{
		Initial: new(FormatDuration(p.Initial)), Max: new(FormatDuration(p.Max)),
		Multiplier: new(p.Multiplier), Jitter: new(p.Jitter),
	}
}

// FormatDuration formats d as a Go duration without zero units: 1h, not
// 1h0m0s; 1m30s; 100ms.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
