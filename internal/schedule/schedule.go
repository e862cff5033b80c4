// Package schedule says when a periodic task is due: a cron expression
// (robfig/cron's standard five fields, or a descriptor such as @daily) or a
// fixed interval, each turned into ticks, the instants at which a schedule
// fires.
//
// A tick names one run across a cluster, so every process must compute the
// same ticks whenever it started and whatever its time zone: cron
// expressions are read in UTC unless they name a zone of their own
// (CRON_TZ=Europe/Paris 0 9 * * *), and an interval's ticks are the
// multiples of the interval since the Unix epoch, not the times since some
// process started. The scheduler (internal/tasks) enqueues a schedule's
// task once per tick; Latest is the tick due now, Next the one after it.
package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Bounds of an interval.
const (
	// EveryMin is the shortest interval: the scheduler wakes at most about
	// once a second.
	EveryMin = time.Second
	// EveryMax is the longest interval; longer periods are cron's.
	EveryMax = 366 * 24 * time.Hour
)

// latestHorizon bounds how far back Latest looks for a cron tick. It is
// longer than the 5 years within which robfig/cron looks for the next one,
// so that every expression ParseCron accepts has had a tick within it, or
// has not fired yet since it was added.
const latestHorizon = 8 * 366 * 24 * time.Hour

// Spec is when a schedule fires. The zero Spec never does.
type Spec struct {
	// cron is nil for an interval.
	cron cron.Schedule
	// expr is the cron expression as written.
	expr string
	// every is the interval, 0 for a cron expression.
	every time.Duration
}

// ParseCron reads a cron expression with robfig/cron's standard parser:
// five fields (minute, hour, day of month, month, day of week), or a
// descriptor (@yearly, @monthly, @weekly, @daily, @midnight, @hourly),
// optionally after CRON_TZ=ZONE. "@every" is refused: an interval is given
// as such (Every), so that its ticks are aligned and the same in every
// process. An expression that never fires (such as 0 0 30 2 *) is refused
// too.
func ParseCron(expr string) (spec Spec, err error) {
	expr = strings.TrimSpace(expr)
	rest := expr
	if strings.HasPrefix(rest, "TZ=") || strings.HasPrefix(rest, "CRON_TZ=") {
		_, after, ok := strings.Cut(rest, " ")
		if !ok || strings.TrimSpace(after) == "" {
			// robfig/cron panics on a zone without an expression.
			return Spec{}, errors.New("a CRON_TZ= zone must be followed by the expression, as in \"CRON_TZ=Europe/Paris 0 9 * * *\"")
		}
		rest = strings.TrimSpace(after)
	}
	if strings.HasPrefix(rest, "@every") {
		return Spec{}, errors.New("@every is not a cron expression here; give the interval as every (every: 30s)")
	}
	defer func() {
		// The parser is robfig/cron's; an input it did not foresee must be
		// a configuration error, not a crash at start.
		if r := recover(); r != nil {
			spec, err = Spec{}, fmt.Errorf("cannot be parsed: %v", r)
		}
	}()
	sched, err := cron.ParseStandard(expr)
	if err != nil {
		return Spec{}, err
	}
	if sched.Next(time.Now().UTC()).IsZero() {
		return Spec{}, errors.New("never fires (robfig/cron finds no time matching it within 5 years)")
	}
	return Spec{cron: sched, expr: expr}, nil
}

// Every returns the spec of an interval, between EveryMin and EveryMax and
// a whole number of milliseconds (ticks are stored with PostgreSQL's
// microsecond precision; milliseconds keep them exact and readable).
func Every(d time.Duration) (Spec, error) {
	switch {
	case d < EveryMin || d > EveryMax:
		return Spec{}, fmt.Errorf("must be between %s and %s", EveryMin, FormatInterval(EveryMax))
	case d%time.Millisecond != 0:
		return Spec{}, errors.New("must be a whole number of milliseconds")
	}
	return Spec{every: d}, nil
}

// Cron returns the cron expression, "" for an interval.
func (s Spec) Cron() string { return s.expr }

// Interval returns the interval, 0 for a cron expression.
func (s Spec) Interval() time.Duration { return s.every }

// IsZero reports whether s is the zero Spec.
func (s Spec) IsZero() bool { return s.cron == nil && s.every == 0 }

// String returns the cron expression, or "every" and the interval.
func (s Spec) String() string {
	if s.every > 0 {
		return "every " + FormatInterval(s.every)
	}
	return s.expr
}

// Latest returns the latest tick at or before now, in UTC. It is zero for
// the zero Spec, and for a cron expression that has not fired within the
// last 8 years (one that fires again on February 29 only, say).
func (s Spec) Latest(now time.Time) time.Time {
	if s.every > 0 {
		ns := now.UnixNano()
		rem := ns % int64(s.every)
		if rem < 0 { // before 1970
			rem += int64(s.every)
		}
		return time.Unix(0, ns-rem).UTC()
	}
	if s.cron == nil {
		return time.Time{}
	}
	now = now.UTC()
	// robfig/cron only steps forward: step through a window before now,
	// doubled until it holds a tick, so that a frequent expression costs a
	// few steps and a yearly one a few more windows.
	for window := time.Hour; window <= latestHorizon; window *= 2 {
		var last time.Time
		for t := s.cron.Next(now.Add(-window)); !t.IsZero() && !t.After(now); t = s.cron.Next(t) {
			last = t
		}
		if !last.IsZero() {
			return last.UTC()
		}
	}
	return time.Time{}
}

// Next returns the first tick after now, in UTC; zero for the zero Spec
// and for a cron expression with no tick within 5 years of now.
func (s Spec) Next(now time.Time) time.Time {
	if s.every > 0 {
		return s.Latest(now).Add(s.every)
	}
	if s.cron == nil {
		return time.Time{}
	}
	return s.cron.Next(now.UTC()).UTC()
}

// FormatInterval formats d as a Go duration without its zero units, as an
// operator writes it: 30m and 1h, not 30m0s and 1h0m0s.
func FormatInterval(d time.Duration) string {
	out := d.String()
	if strings.HasSuffix(out, "m0s") {
		out = strings.TrimSuffix(out, "0s")
	}
	if strings.HasSuffix(out, "h0m") {
		out = strings.TrimSuffix(out, "0m")
	}
	return out
}
