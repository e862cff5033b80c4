package metrics

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/store"
)

// TestRiverPlugin drives the plugin as River's executor does (middleware
// around the hooks around the work) for what a real run cannot easily
// show: a panic, which River's WorkEnd never sees, and work that
// middleware refused before it began.
func TestRiverPlugin(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(context.Background(), pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	m, err := New(Config{Store: store.New(pool)})
	if err != nil {
		t.Fatal(err)
	}
	p := m.RiverPlugin().(*attemptPlugin)
	job := &rivertype.JobRow{ID: 1, Kind: "k", Queue: "q"}
	// run is River's execute: middleware, then WorkBegin, work, WorkEnd.
	run := func(work func() error) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = errors.New("panicked")
			}
		}()
		return p.Work(context.Background(), job, func(ctx context.Context) error {
			if err := p.WorkBegin(ctx, job); err != nil {
				return err
			}
			err := work()
			return p.WorkEnd(ctx, job, err)
		})
	}
	count := func(outcome string) float64 {
		return testutil.ToFloat64(m.attempts.WithLabelValues("k", "q", outcome))
	}

	if err := run(func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := run(func() error { return errors.New("boom") }); err == nil {
		t.Fatal("the work's error was lost")
	}
	if err := run(func() error { return river.JobSnooze(0) }); err == nil {
		t.Fatal("the snooze was lost")
	}
	if err := run(func() error { panic("oops") }); err == nil || err.Error() != "panicked" {
		t.Fatalf("the panic was not passed on: %v", err)
	}
	// Refused by a middleware further in (a limit): never began.
	if err := p.Work(context.Background(), job, func(context.Context) error { return river.JobSnooze(0) }); err == nil {
		t.Fatal("the refusal was lost")
	}
	for outcome, want := range map[string]float64{
		store.OutcomeCompleted: 1, store.OutcomeFailed: 1, store.OutcomeSnoozed: 1, store.OutcomePanic: 1,
	} {
		if got := count(outcome); got != want {
			t.Errorf("attempts{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
	if n := testutil.CollectAndCount(m.attempts); n != 4 {
		t.Errorf("%d attempt series, want 4 (the refused work counts nothing)", n)
	}
	if n := testutil.CollectAndCount(m.attemptDuration); n != 1 {
		t.Errorf("%d duration series, want 1", n)
	}
}
