package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/store"
)

// externalKind is a declared kind that workers outside taskd claim.
func externalKind(name, queue string, timeout time.Duration) kinds.Kind {
	return kinds.Kind{
		Name: name, Queue: queue, Run: kinds.RunExternal, Declared: true, Timeout: timeout,
		Decode: func(raw json.RawMessage, _ *kinds.Errors) river.JobArgs {
			return kinds.RawArgs{KindName: name, Raw: raw}
		},
	}
}

// setupExternal is setup with the built-in kinds and two external ones,
// "ext" (queue ext) and "ext2" (queue other), and a fast lease check.
func setupExternal(t *testing.T, mod func(*jobs.Config)) *testBundle {
	t.Helper()
	reg, err := kinds.NewRegistry(append(builtin.Kinds(),
		externalKind("ext", "ext", 0), externalKind("ext2", "other", 0))...)
	if err != nil {
		t.Fatal(err)
	}
	return setup(t, func(c *jobs.Config) {
		c.Kinds = reg
		c.LeaseCheckInterval = 100 * time.Millisecond
		if mod != nil {
			mod(c)
		}
	})
}

func (b *testBundle) claim(t *testing.T, p ClaimParams) []store.ClaimedTask {
	t.Helper()
	if p.Wait == nil {
		p.Wait = ptr("0s")
	}
	got, err := b.tasks.Claim(context.Background(), &p)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	return got
}

func wantLeaseError(t *testing.T, err error, state, reason string) {
	t.Helper()
	var lerr *LeaseError
	if !errors.As(err, &lerr) {
		t.Fatalf("want a *LeaseError, got %v", err)
	}
	if lerr.State != state || !strings.Contains(lerr.Reason, reason) {
		t.Fatalf("want state %q and a reason with %q, got %q: %q", state, reason, lerr.State, lerr.Reason)
	}
}

func TestClaimCompleteHappyPath(t *testing.T) {
	t.Parallel()
	b := setupExternal(t, nil)
	b.start(t)
	id := b.submit(t, "ext", map[string]int{"n": 1}, nil)
	got := b.claim(t, ClaimParams{Kinds: []string{"ext"}, Worker: ptr("py-1"), Lease: ptr("30s")})
	if len(got) != 1 || got[0].ID != id || got[0].Attempt != 1 || got[0].Kind != "ext" || compact(got[0].Args) != `{"n":1}` {
		t.Fatalf("claimed %+v, want task %d attempt 1", got, id)
	}
	if d := time.Until(got[0].ExpiresAt); d < 20*time.Second || d > 31*time.Second {
		t.Errorf("lease ends in %s, want about 30s", d)
	}
	if again := b.claim(t, ClaimParams{Kinds: []string{"ext"}}); len(again) != 0 {
		t.Fatal("a claimed task was claimed again")
	}
	task, err := b.store.Task(context.Background(), id)
	if err != nil || task.State != store.StateRunning || task.Worker != "py-1" {
		t.Fatalf("claimed task: %+v %v, want running by py-1", task, err)
	}

	hb, err := b.tasks.Heartbeat(context.Background(), id, &HeartbeatParams{Lease: &got[0].Lease, Extend: ptr("50s")})
	if err != nil || hb.CancelRequested || time.Until(hb.LeaseExpiresAt) < 40*time.Second {
		t.Fatalf("heartbeat: %+v %v, want a lease extended to about 50s", hb, err)
	}
	done, err := b.tasks.Complete(context.Background(), id, &CompleteParams{Lease: &got[0].Lease, Result: json.RawMessage(`{"ok":true}`)})
	if err != nil {
		t.Fatal(err)
	}
	if done.State != store.StateCompleted || compact(done.Result) != `{"ok":true}` {
		t.Fatalf("completed task: state %s result %s", done.State, done.Result)
	}
	if o := outcomes(done.Attempts); !slices.Equal(o, []string{"completed"}) || done.Attempts[0].Worker != "py-1" {
		t.Fatalf("attempts %v (%+v), want one completed by py-1", o, done.Attempts)
	}
	// The lease is spent.
	_, err = b.tasks.Complete(context.Background(), id, &CompleteParams{Lease: &got[0].Lease})
	wantLeaseError(t, err, store.StateCompleted, "the task is completed")
	_, err = b.tasks.Heartbeat(context.Background(), id, &HeartbeatParams{Lease: &got[0].Lease})
	wantLeaseError(t, err, store.StateCompleted, "the task is completed")
}

func TestClaimFilters(t *testing.T) {
	t.Parallel()
	b := setupExternal(t, nil)
	b.start(t)
	a := b.submit(t, "ext", nil, nil)
	c := b.submit(t, "ext2", nil, nil)
	d := b.submit(t, "ext", nil, func(p *TaskParams) { p.Queue = ptr("special") })
	b.submit(t, "double", map[string]int{"value": 1}, nil)

	if got := b.claim(t, ClaimParams{Queues: []string{"special"}, Max: ptr(10)}); len(got) != 1 || got[0].ID != d {
		t.Fatalf("claim of queue special got %+v, want task %d", got, d)
	}
	if got := b.claim(t, ClaimParams{Kinds: []string{"ext2"}, Max: ptr(10)}); len(got) != 1 || got[0].ID != c {
		t.Fatalf("claim of ext2 got %+v, want task %d", got, c)
	}
	// No kinds: every external kind, never a built-in.
	if got := b.claim(t, ClaimParams{Max: ptr(10)}); len(got) != 1 || got[0].ID != a {
		t.Fatalf("claim of any kind got %+v, want task %d", got, a)
	}
}

func TestClaimValidation(t *testing.T) {
	t.Parallel()
	b := setupExternal(t, nil)
	for _, tc := range []struct {
		p     ClaimParams
		field string
	}{
		{ClaimParams{Kinds: []string{"double"}}, "kinds[0]"},
		{ClaimParams{Kinds: []string{"ext", "nope"}}, "kinds[1]"},
		{ClaimParams{Queues: []string{"Bad Queue"}}, "queues[0]"},
		{ClaimParams{Max: ptr(0)}, "max"},
		{ClaimParams{Max: ptr(101)}, "max"},
		{ClaimParams{Wait: ptr("61s")}, "wait"},
		{ClaimParams{Wait: ptr("soon")}, "wait"},
		{ClaimParams{Lease: ptr("4s")}, "lease"},
		{ClaimParams{Lease: ptr("2h")}, "lease"},
		{ClaimParams{Worker: ptr("")}, "worker"},
	} {
		_, err := b.tasks.Claim(context.Background(), &tc.p)
		var verr *ValidationError
		if !errors.As(err, &verr) || len(verr.Errors) != 1 || verr.Errors[0].Field != tc.field {
			t.Errorf("claim %+v: got %v, want one problem with %s", tc.p, err, tc.field)
		}
	}
	for _, tc := range []struct {
		p     FailParams
		field string
	}{
		{FailParams{Error: ptr("x")}, "lease"},
		{FailParams{Lease: ptr("l")}, "error"},
		{FailParams{Lease: ptr("l"), Error: ptr("x"), RetryAfter: ptr("2h")}, "retry_after"},
	} {
		_, err := b.tasks.Fail(context.Background(), 1, &tc.p)
		var verr *ValidationError
		if !errors.As(err, &verr) || verr.Errors[0].Field != tc.field {
			t.Errorf("fail %+v: got %v, want a problem with %s", tc.p, err, tc.field)
		}
	}
	// A built-in kind's task cannot be completed with a lease.
	id := b.submit(t, "double", map[string]int{"value": 1}, nil)
	_, err := b.tasks.Complete(context.Background(), id, &CompleteParams{Lease: ptr("00000000-0000-0000-0000-000000000000")})
	wantLeaseError(t, err, store.StateAvailable, "not claimed by external workers")
	_, err = b.tasks.Complete(context.Background(), id+1000, &CompleteParams{Lease: ptr("x")})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("complete of a missing task: %v, want ErrNotFound", err)
	}
}

func TestFailRetriesDiscardsAndCancels(t *testing.T) {
	t.Parallel()
	b := setupExternal(t, nil)
	b.start(t)
	ctx := context.Background()

	// A failure is retried with backoff; retry_after overrides it.
	id := b.submit(t, "ext", nil, func(p *TaskParams) { p.MaxAttempts = ptr(3) })
	got := b.claim(t, ClaimParams{})
	task, err := b.tasks.Fail(ctx, id, &FailParams{Lease: &got[0].Lease, Error: ptr("boom"), RetryAfter: ptr("0s")})
	if err != nil || task.State != store.StateAvailable || len(task.Errors) != 1 || task.Errors[0].Message != "boom" {
		t.Fatalf("failed task: %+v %v, want available with error boom", task, err)
	}
	got = b.claim(t, ClaimParams{})
	if len(got) != 1 || got[0].Attempt != 2 {
		t.Fatalf("second claim %+v, want attempt 2", got)
	}
	task, err = b.tasks.Fail(ctx, id, &FailParams{Lease: &got[0].Lease, Error: ptr("again")})
	if err != nil || task.State != store.StateAvailable || !task.ScheduledAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("failed twice: %+v %v, want available no earlier than the 2s backoff", task, err)
	}
	// The last attempt's failure discards it.
	_, err = b.store.Pool().Exec(ctx, `UPDATE river_job SET scheduled_at = now() WHERE id = $1`, id)
	if err != nil {
		t.Fatal(err)
	}
	got = b.claim(t, ClaimParams{})
	task, err = b.tasks.Fail(ctx, id, &FailParams{Lease: &got[0].Lease, Error: ptr("last")})
	if err != nil || task.State != store.StateDiscarded {
		t.Fatalf("failed on its last attempt: %+v %v, want discarded", task, err)
	}
	if o := outcomes(task.Attempts); !slices.Equal(o, []string{"failed", "failed", "failed"}) {
		t.Fatalf("attempts %v", o)
	}

	// permanent discards at once.
	id = b.submit(t, "ext", nil, nil)
	got = b.claim(t, ClaimParams{})
	task, err = b.tasks.Fail(ctx, id, &FailParams{Lease: &got[0].Lease, Error: ptr("bad input"), Permanent: ptr(true)})
	if err != nil || task.State != store.StateDiscarded || task.Attempt != 1 {
		t.Fatalf("permanent failure: %+v %v, want discarded after 1 attempt", task, err)
	}

	// A long retry_after makes it retryable, for River's scheduler.
	id = b.submit(t, "ext", nil, nil)
	got = b.claim(t, ClaimParams{})
	task, err = b.tasks.Fail(ctx, id, &FailParams{Lease: &got[0].Lease, Error: ptr("later"), RetryAfter: ptr("10m")})
	if err != nil || task.State != store.StateRetryable || task.ScheduledAt.Before(time.Now().Add(9*time.Minute)) {
		t.Fatalf("retry_after 10m: %+v %v, want retryable in 10 minutes", task, err)
	}

	// Cancellation reaches the worker through the heartbeat; its failure
	// then cancels the task.
	id = b.submit(t, "ext", nil, nil)
	got = b.claim(t, ClaimParams{})
	if err := b.tasks.Cancel(ctx, id); err != nil {
		t.Fatal(err)
	}
	hb, err := b.tasks.Heartbeat(ctx, id, &HeartbeatParams{Lease: &got[0].Lease})
	if err != nil || !hb.CancelRequested {
		t.Fatalf("heartbeat after cancel: %+v %v, want cancel_requested", hb, err)
	}
	task, err = b.tasks.Fail(ctx, id, &FailParams{Lease: &got[0].Lease, Error: ptr("stopped: cancelled")})
	if err != nil || task.State != store.StateCancelled || outcomes(task.Attempts)[0] != store.OutcomeCancelled {
		t.Fatalf("failure after cancel: %+v %v, want cancelled", task, err)
	}
}

func TestLeaseExpiry(t *testing.T) {
	t.Parallel()
	b := setupExternal(t, nil)
	b.start(t)
	ctx := context.Background()
	id := b.submit(t, "ext", nil, nil)
	first := b.claim(t, ClaimParams{Lease: ptr("5s"), Worker: ptr("dies")})

	// Nobody heartbeats: the task is offered again, with a timeout attempt.
	task := b.waitTask(t, id, 15*time.Second, inState(store.StateAvailable))
	if o := outcomes(task.Attempts); !slices.Equal(o, []string{"timeout"}) || task.Attempts[0].Error != "lease expired" || task.Attempts[0].Worker != "dies" {
		t.Fatalf("attempts after expiry: %+v", task.Attempts)
	}
	if len(task.Errors) != 1 || !strings.Contains(task.Errors[0].Message, "lease expired") {
		t.Fatalf("errors after expiry: %+v", task.Errors)
	}
	// The expired lease is refused.
	_, err := b.tasks.Complete(ctx, id, &CompleteParams{Lease: &first[0].Lease})
	wantLeaseError(t, err, store.StateAvailable, "the task is available")

	// After a new claim, the old token is refused and the new attempt
	// goes on unaffected.
	second := b.claim(t, ClaimParams{Worker: ptr("lives")})
	if len(second) != 1 || second[0].Attempt != 2 {
		t.Fatalf("re-claim: %+v, want attempt 2", second)
	}
	_, err = b.tasks.Fail(ctx, id, &FailParams{Lease: &first[0].Lease, Error: ptr("late")})
	wantLeaseError(t, err, store.StateRunning, "newer lease")
	_, err = b.tasks.Heartbeat(ctx, id, &HeartbeatParams{Lease: &first[0].Lease})
	wantLeaseError(t, err, store.StateRunning, "newer lease")
	task, err = b.tasks.Complete(ctx, id, &CompleteParams{Lease: &second[0].Lease, Result: json.RawMessage(`2`)})
	if err != nil || task.State != store.StateCompleted || !slices.Equal(outcomes(task.Attempts), []string{"timeout", "completed"}) {
		t.Fatalf("completion of the second attempt: %+v %v", task, err)
	}
}

// TestRescueLeavesLeasedTasks: the heartbeat rescue of dead processes
// treats a running task whose worker is no taskd process as lost, unless
// it is under a live lease.
func TestRescueLeavesLeasedTasks(t *testing.T) {
	t.Parallel()
	b := setupExternal(t, nil)
	ctx := context.Background()
	id := b.submit(t, "ext", nil, nil)
	got := b.claim(t, ClaimParams{Lease: ptr("1h")})
	if _, err := b.store.Pool().Exec(ctx, `UPDATE river_job SET attempted_at = now() - interval '10 minutes' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	rescued, err := b.store.RescueLost(ctx, time.Second, 100)
	if err != nil || len(rescued) != 0 {
		t.Fatalf("rescue took %+v (%v), want nothing", rescued, err)
	}
	if _, err := b.tasks.Complete(ctx, id, &CompleteParams{Lease: &got[0].Lease}); err != nil {
		t.Fatalf("completing after the rescue: %v", err)
	}
}

func TestConcurrentClaimsAreDisjoint(t *testing.T) {
	t.Parallel()
	b := setupExternal(t, nil)
	const n = 200
	want := map[int64]bool{}
	for range n {
		want[b.submit(t, "ext", nil, nil)] = true
	}
	var (
		mu   sync.Mutex
		seen = map[int64]int{}
		wg   sync.WaitGroup
	)
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			for {
				got, err := b.tasks.Claim(context.Background(), &ClaimParams{Max: ptr(3), Wait: ptr("0s")})
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, c := range got {
					seen[c.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Fatalf("claimed %d distinct tasks, want %d", len(seen), n)
	}
	for id, times := range seen {
		if times != 1 || !want[id] {
			t.Fatalf("task %d claimed %d times", id, times)
		}
	}
}

// TestWaitingClaimWokenByInsert: with the periodic recheck out of the way
// (an hour), only the insert notification can release the waiting claim.
func TestWaitingClaimWokenByInsert(t *testing.T) {
	t.Parallel()
	b := setupExternal(t, nil)
	svc, err := New(Config{Store: b.store, Jobs: b.jobs, ClaimRecheckInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	type result struct {
		tasks []store.ClaimedTask
		err   error
		at    time.Time
	}
	res := make(chan result, 1)
	go func() {
		got, err := svc.Claim(context.Background(), &ClaimParams{Kinds: []string{"ext"}, Wait: ptr("60s")})
		res <- result{got, err, time.Now()}
	}()
	// The claim is waiting once its waiter is registered.
	deadline := time.Now().Add(10 * time.Second)
	for {
		svc.claims.mu.Lock()
		n := len(svc.claims.waiters)
		svc.claims.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the claim never started waiting")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Should the listener not be listening yet, its catch-up wake-up on
	// connecting finds the task instead; either way the broker, not the
	// recheck, releases the claim.
	id := b.submit(t, "ext", nil, nil)
	select {
	case r := <-res:
		if r.err != nil || len(r.tasks) != 1 || r.tasks[0].ID != id {
			t.Fatalf("waiting claim returned %+v %v, want task %d", r.tasks, r.err, id)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting claim was not released by the insert")
	}
}

func TestWaitingClaimEndsWithContext(t *testing.T) {
	t.Parallel()
	b := setupExternal(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		_, err := b.tasks.Claim(ctx, &ClaimParams{Wait: ptr("60s")})
		res <- err
	}()
	cancel()
	select {
	case err := <-res:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("claim returned %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a claim whose client left kept waiting")
	}
	// And one that nothing wakes returns empty when its wait ends.
	got, err := b.tasks.Claim(context.Background(), &ClaimParams{Wait: ptr("200ms")})
	if err != nil || len(got) != 0 {
		t.Fatalf("claim with nothing to take: %+v %v", got, err)
	}
}

// TestClaimAndCompleteOnDifferentProcesses: any process serves any task.
func TestClaimAndCompleteOnDifferentProcesses(t *testing.T) {
	t.Parallel()
	b := setupExternal(t, nil)
	other, err := jobs.NewClient(jobs.Config{Store: b.store, Kinds: b.jobs.Kinds(), Queues: map[string]int{"default": 1, "cpu": 1}})
	if err != nil {
		t.Fatal(err)
	}
	svc2, err := New(Config{Store: b.store, Jobs: other})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc2.Close)
	id := b.submit(t, "ext", nil, nil)
	got := b.claim(t, ClaimParams{})
	task, err := svc2.Complete(context.Background(), id, &CompleteParams{Lease: &got[0].Lease, Result: json.RawMessage(`"done"`)})
	if err != nil || task.State != store.StateCompleted {
		t.Fatalf("completion on the other process: %+v %v", task, err)
	}
}

// TestFailInterrupted: a worker that stops gives its task back uncounted,
// as taskd does with its own running tasks, so that a task on its last
// attempt is not lost.
func TestFailInterrupted(t *testing.T) {
	t.Parallel()
	b := setupExternal(t, nil)
	ctx := context.Background()
	id := b.submit(t, "ext", nil, func(p *TaskParams) { p.MaxAttempts = ptr(1) })
	got := b.claim(t, ClaimParams{})
	task, err := b.tasks.Fail(ctx, id, &FailParams{Lease: &got[0].Lease, Error: ptr("worker shutting down"), Interrupted: ptr(true)})
	if err != nil || task.State != store.StateAvailable || task.Attempt != 0 || len(task.Errors) != 0 {
		t.Fatalf("interrupted: %+v %v, want available, attempt 0, no errors", task, err)
	}
	if o := outcomes(task.Attempts); !slices.Equal(o, []string{"interrupted"}) {
		t.Fatalf("attempts %v", o)
	}
	again := b.claim(t, ClaimParams{})
	if len(again) != 1 || again[0].Attempt != 1 {
		t.Fatalf("claim after the interruption: %+v, want the task again as attempt 1", again)
	}
	task, err = b.tasks.Fail(ctx, id, &FailParams{Lease: &again[0].Lease, Error: ptr("real failure")})
	if err != nil || task.State != store.StateDiscarded {
		t.Fatalf("a real failure of its one attempt: %+v %v, want discarded", task, err)
	}
	_, err = b.tasks.Fail(ctx, id, &FailParams{Lease: ptr("x"), Error: ptr("x"), Interrupted: ptr(true), Permanent: ptr(true)})
	var verr *ValidationError
	if !errors.As(err, &verr) || verr.Errors[0].Field != "interrupted" {
		t.Fatalf("interrupted with permanent: %v, want a problem with interrupted", err)
	}
}

// TestConcurrentCompletes: completions that arrive together are written
// as groups; each lease still counts once, and a stale one in the same
// group does not hold.
func TestConcurrentCompletes(t *testing.T) {
	t.Parallel()
	b := setupExternal(t, nil)
	ctx := context.Background()
	const n = 60
	for range n {
		b.submit(t, "ext", nil, nil)
	}
	claimed := b.claim(t, ClaimParams{Max: ptr(n)})
	if len(claimed) != n {
		t.Fatalf("claimed %d of %d", len(claimed), n)
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		ok       = map[int64]int{}
		refused  = map[int64]int{}
		failures []error
	)
	for _, c := range claimed {
		// Every task is completed twice at once with its token, and once
		// with a wrong one.
		for _, lease := range []string{c.Lease, c.Lease, "00000000-0000-0000-0000-000000000000"} {
			wg.Go(func() {
				_, err := b.tasks.Complete(ctx, c.ID, &CompleteParams{Lease: &lease, Result: json.RawMessage(`1`)})
				mu.Lock()
				defer mu.Unlock()
				var lerr *LeaseError
				switch {
				case err == nil:
					ok[c.ID]++
				case errors.As(err, &lerr):
					refused[c.ID]++
				default:
					failures = append(failures, err)
				}
			})
		}
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatal(failures[0])
	}
	for _, c := range claimed {
		if ok[c.ID] != 1 || refused[c.ID] != 2 {
			t.Fatalf("task %d: %d completions held, %d refused; want 1 and 2", c.ID, ok[c.ID], refused[c.ID])
		}
		task, err := b.store.Task(ctx, c.ID)
		if err != nil || task.State != store.StateCompleted || !slices.Equal(outcomes(task.Attempts), []string{"completed"}) {
			t.Fatalf("task %d: %+v %v", c.ID, task, err)
		}
	}
	b.tasks.Close()
	if _, err := b.tasks.Complete(ctx, claimed[0].ID, &CompleteParams{Lease: &claimed[0].Lease}); err == nil {
		t.Fatal("a completion after Close was accepted")
	}
}

// TestClaimHonoursQueuePause: River's pause of a queue holds back claims
// of its tasks too, since River's producers never fetch them.
func TestClaimHonoursQueuePause(t *testing.T) {
	t.Parallel()
	b := setupExternal(t, nil)
	ctx := context.Background()
	id := b.submit(t, "ext", nil, nil)
	if _, err := b.pool.Exec(ctx, `INSERT INTO river_queue (name, paused_at, metadata, created_at, updated_at) VALUES ('ext', now(), '{}', now(), now())`); err != nil {
		t.Fatal(err)
	}
	if got := b.claim(t, ClaimParams{}); len(got) != 0 {
		t.Fatalf("claimed %+v from a paused queue", got)
	}
	if kinds, err := b.store.LeaseClaimableKinds(ctx, []string{"ext"}); err != nil || len(kinds) != 0 {
		t.Fatalf("claimable kinds of a paused queue: %v %v", kinds, err)
	}
	if _, err := b.pool.Exec(ctx, `UPDATE river_queue SET paused_at = NULL WHERE name = 'ext'`); err != nil {
		t.Fatal(err)
	}
	if got := b.claim(t, ClaimParams{}); len(got) != 1 || got[0].ID != id {
		t.Fatalf("claim after the resume: %+v", got)
	}
}
