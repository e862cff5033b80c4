package schedule

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func mustCron(t *testing.T, expr string) Spec {
	t.Helper()
	s, err := ParseCron(expr)
	require.NoError(t, err, expr)
	return s
}

func mustEvery(t *testing.T, d time.Duration) Spec {
	t.Helper()
	s, err := Every(d)
	require.NoError(t, err, d)
	return s
}

func TestParseCronErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ expr, msg string }{
		{"", "empty spec string"},
		{"* * * *", "expected exactly 5 fields, found 4"},
		{"* * * * * *", "expected exactly 5 fields, found 6"},
		{"61 * * * *", "above maximum"},
		{"*/0 * * * *", "step of range should be a positive number"},
		{"x * * * *", "failed to parse int from x"},
		{"@every 30s", "give the interval as every"},
		{"CRON_TZ=UTC @every 1m", "give the interval as every"},
		{"@fortnightly", "unrecognized descriptor"},
		{"CRON_TZ=Mars/Olympus 0 9 * * *", "provided bad location Mars/Olympus"},
		{"CRON_TZ=UTC", "must be followed by the expression"}, // robfig/cron would panic
		{"0 0 30 2 *", "never fires"},
	} {
		_, err := ParseCron(tt.expr)
		require.ErrorContains(t, err, tt.msg, tt.expr)
	}
}

func TestEveryErrors(t *testing.T) {
	t.Parallel()
	for d, msg := range map[time.Duration]string{
		0:                         "between 1s and 8784h",
		999 * time.Millisecond:    "between 1s and 8784h",
		-time.Second:              "between 1s and 8784h",
		EveryMax + time.Second:    "between 1s and 8784h",
		1500*time.Millisecond + 1: "whole number of milliseconds",
	} {
		_, err := Every(d)
		require.ErrorContains(t, err, msg, d)
	}
	s := mustEvery(t, 90*time.Second)
	require.Equal(t, "every 1m30s", s.String())
	require.Equal(t, 90*time.Second, s.Interval())
	require.Empty(t, s.Cron())
}

func TestEveryTicks(t *testing.T) {
	t.Parallel()
	s := mustEvery(t, 30*time.Second)
	require.Equal(t, at("2026-03-04T10:00:00Z"), s.Latest(at("2026-03-04T10:00:17.5Z")))
	require.Equal(t, at("2026-03-04T10:00:30Z"), s.Next(at("2026-03-04T10:00:17.5Z")))
	// A tick is due at its own instant, and the next one is after it.
	require.Equal(t, at("2026-03-04T10:00:30Z"), s.Latest(at("2026-03-04T10:00:30Z")))
	require.Equal(t, at("2026-03-04T10:01:00Z"), s.Next(at("2026-03-04T10:00:30Z")))

	// Ticks are multiples of the interval since the Unix epoch, whatever
	// the zone of the clock: every process computes the same ones.
	seven := mustEvery(t, 7*time.Second)
	now := at("2026-03-04T10:00:17.5Z")
	paris, err := time.LoadLocation("Europe/Paris")
	require.NoError(t, err)
	tick := seven.Latest(now)
	require.Zero(t, tick.UnixNano()%int64(7*time.Second))
	require.True(t, !tick.After(now) && now.Sub(tick) < 7*time.Second)
	require.Equal(t, tick, seven.Latest(now.In(paris)))
	require.Equal(t, time.UTC, tick.Location())

	// After a gap of hours, Latest is the one latest tick: the scheduler
	// enqueues that one, not every tick it missed.
	hourly := mustEvery(t, time.Hour)
	require.Equal(t, at("2026-03-04T10:00:00Z"), hourly.Latest(at("2026-03-04T10:30:00Z")))
	require.Equal(t, at("2026-03-04T11:00:00Z"), hourly.Next(at("2026-03-04T10:30:00Z")))

	// Daily ticks fall on midnight UTC (the epoch's); 1.5 s works too.
	require.Equal(t, at("2026-03-04T00:00:00Z"), mustEvery(t, 24*time.Hour).Latest(at("2026-03-04T23:59:59Z")))
	require.Equal(t, at("2026-03-04T10:00:16.5Z"), mustEvery(t, 1500*time.Millisecond).Latest(at("2026-03-04T10:00:17.5Z")))
}

func TestCronTicks(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		expr              string
		now, latest, next string
	}{
		{"*/5 * * * *", "2026-03-04T10:07:12Z", "2026-03-04T10:05:00Z", "2026-03-04T10:10:00Z"},
		// Exactly at a tick: that tick is due, the next one follows it.
		{"*/5 * * * *", "2026-03-04T10:05:00Z", "2026-03-04T10:05:00Z", "2026-03-04T10:10:00Z"},
		{"*/5 * * * *", "2026-03-04T10:04:59.999Z", "2026-03-04T10:00:00Z", "2026-03-04T10:05:00Z"},
		// Mondays at 9: from a Wednesday, back two days.
		{"0 9 * * 1", "2026-03-04T12:00:00Z", "2026-03-02T09:00:00Z", "2026-03-09T09:00:00Z"},
		{"@daily", "2026-03-04T12:00:00Z", "2026-03-04T00:00:00Z", "2026-03-05T00:00:00Z"},
		{"@yearly", "2026-03-04T12:00:00Z", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"},
		// February 29 only: the latest is two years back, found by widening
		// the window.
		{"0 0 29 2 *", "2026-03-04T12:00:00Z", "2024-02-29T00:00:00Z", "2028-02-29T00:00:00Z"},
		// A zone of its own: 9:00 in Paris is 8:00 UTC in winter.
		{"CRON_TZ=Europe/Paris 0 9 * * *", "2026-01-15T12:00:00Z", "2026-01-15T08:00:00Z", "2026-01-16T08:00:00Z"},
	} {
		s := mustCron(t, tt.expr)
		require.Equal(t, at(tt.latest), s.Latest(at(tt.now)), "Latest of %q at %s", tt.expr, tt.now)
		require.Equal(t, at(tt.next), s.Next(at(tt.now)), "Next of %q at %s", tt.expr, tt.now)
		require.Equal(t, tt.expr, s.String())
		require.Equal(t, tt.expr, s.Cron())
	}

	// Read in UTC whatever the zone of the clock.
	s := mustCron(t, "0 9 * * *")
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	require.NoError(t, err)
	now := at("2026-03-04T12:00:00Z")
	require.Equal(t, at("2026-03-04T09:00:00Z"), s.Latest(now.In(tokyo)))
	require.Equal(t, at("2026-03-05T09:00:00Z"), s.Next(now.In(tokyo)))
}

func TestZeroSpec(t *testing.T) {
	t.Parallel()
	var s Spec
	require.True(t, s.IsZero())
	require.True(t, s.Latest(time.Now()).IsZero())
	require.True(t, s.Next(time.Now()).IsZero())
	require.False(t, mustEvery(t, time.Second).IsZero())
}
