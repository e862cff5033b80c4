package tasks

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/store"
)

// TestWaitReleasedByAnotherProcess: a waiter is released by the
// announcement of the process that ran the task, with its own recheck out
// of the way (an hour).
func TestWaitReleasedByAnotherProcess(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.start(t) // the process that works the task
	// The waiting process: its own River client never starts.
	other, err := jobs.NewClient(jobs.Config{Store: b.store, Queues: map[string]int{"default": 1, "cpu": 1}})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(Config{Store: b.store, Jobs: other, FinishRecheckInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	id := b.submit(t, "sleep", map[string]any{"ms": 300}, nil)
	res := make(chan error, 1)
	// The wait is longer than the test allows: only the announcement can
	// end it in time.
	go func() { res <- svc.WaitFinished(context.Background(), []int64{id}, 60*time.Second) }()
	select {
	case err := <-res:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the other process's announcement did not release the waiter")
	}
	task, err := b.store.Task(context.Background(), id)
	if err != nil || task.State != store.StateCompleted {
		t.Fatalf("after the wait: %+v %v, want completed", task, err)
	}
}

// TestWaitRecheck: a task that became final without any announcement (a
// process killed in between) releases its waiter at the next recheck.
func TestWaitRecheck(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	svc, err := New(Config{Store: b.store, Jobs: b.jobs, FinishRecheckInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	id := b.submit(t, "double", map[string]any{"value": 1}, nil)
	res := make(chan error, 1)
	go func() { res <- svc.WaitFinished(context.Background(), []int64{id}, 60*time.Second) }()
	waitWaiting(t, svc, id)
	if _, err := b.pool.Exec(context.Background(), `UPDATE river_job SET state = 'completed', finalized_at = now() WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the recheck did not release the waiter")
	}

	// A waiter whose client leaves is freed at once.
	id = b.submit(t, "double", map[string]any{"value": 1}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { res <- svc.WaitFinished(ctx, []int64{id}, 60*time.Second) }()
	waitWaiting(t, svc, id)
	cancel()
	select {
	case err := <-res:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("a waiter whose context ended returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a waiter whose client left kept waiting")
	}
	svc.waiters.mu.Lock()
	left := len(svc.waiters.byID)
	svc.waiters.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d task IDs still have waiters after every waiter left", left)
	}
}

// waitWaiting waits until a waiter for id is registered.
func waitWaiting(t *testing.T, svc *Service, id int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		svc.waiters.mu.Lock()
		n := len(svc.waiters.byID[id])
		svc.waiters.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no waiter registered")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
