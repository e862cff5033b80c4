package jobs

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/store"
)

func TestKindsRunAndRecordResults(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.start(t)

	tests := []struct {
		kind  string
		args  any
		queue string
		want  string
	}{
		{"double", map[string]any{"value": 21}, "default", `{"result":42}`},
		{"double", map[string]any{"value": -1.5}, "default", `{"result":-3}`},
		{"sleep", map[string]any{"ms": 5}, "default", `{"slept_ms":5}`},
		{"fail", map[string]any{"times": 0}, "default", `{"attempts":1}`},
		{"cpu", map[string]any{"n": 100}, "cpu", `{"primes":25}`},
		{"cpu", map[string]any{"n": 2}, "cpu", `{"primes":0}`},
	}
	for _, tt := range tests {
		id := b.submit(t, tt.kind, tt.args, nil)
		task := b.waitTask(t, id, 10*time.Second, inState(store.StateCompleted))
		if task.Queue != tt.queue {
			t.Errorf("%s: queue = %q, want %q", tt.kind, task.Queue, tt.queue)
		}
		if compact(task.Result) != tt.want {
			t.Errorf("%s %v: result = %s, want %s", tt.kind, tt.args, task.Result, tt.want)
		}
		attempts := b.finishedAttempts(t, id, 1)
		if got := outcomes(attempts); !slices.Equal(got, []string{store.OutcomeCompleted}) {
			t.Errorf("%s: outcomes = %v", tt.kind, got)
		}
		if attempts[0].Worker != b.client.ID() || attempts[0].Attempt != 1 {
			t.Errorf("%s: attempt = %+v, want worker %s attempt 1", tt.kind, attempts[0], b.client.ID())
		}
	}
}

func TestFailRetriesWithBackoffThenCompletes(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.start(t)

	id := b.submit(t, "fail", map[string]any{"times": 2, "message": "boom"}, nil)
	task := b.waitTask(t, id, 20*time.Second, inState(store.StateCompleted))
	if compact(task.Result) != `{"attempts":3}` {
		t.Errorf("result = %s", task.Result)
	}
	if len(task.Errors) != 2 || task.Errors[0].Message != "boom" || task.Errors[0].Attempt != 1 || task.Errors[1].Attempt != 2 {
		t.Fatalf("errors = %+v", task.Errors)
	}
	attempts := b.finishedAttempts(t, id, 3)
	if got := outcomes(attempts); !slices.Equal(got, []string{"failed", "failed", "completed"}) {
		t.Errorf("outcomes = %v", got)
	}
	if attempts[0].Error != "boom" {
		t.Errorf("attempt error = %q", attempts[0].Error)
	}
	// Backoff: about 1 s after the first failure, 2 s after the second
	// (±10% jitter, plus scheduling slack).
	gap1 := attempts[1].StartedAt.Sub(*attempts[0].FinishedAt)
	gap2 := attempts[2].StartedAt.Sub(*attempts[1].FinishedAt)
	if gap1 < 850*time.Millisecond || gap1 > 3*time.Second {
		t.Errorf("first retry after %s, want about 1s", gap1)
	}
	if gap2 < 1700*time.Millisecond || gap2 > 5*time.Second {
		t.Errorf("second retry after %s, want about 2s", gap2)
	}
}

func TestFailDiscardedAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.start(t)

	id := b.submit(t, "fail", map[string]any{"times": 10, "message": "nope"}, func(o *river.InsertOpts) { o.MaxAttempts = 2 })
	task := b.waitTask(t, id, 20*time.Second, inState(store.StateDiscarded))
	if len(task.Errors) != 2 || task.FinishedAt == nil || task.Result != nil {
		t.Errorf("discarded task = %+v", task)
	}
	if got := outcomes(b.finishedAttempts(t, id, 2)); !slices.Equal(got, []string{"failed", "failed"}) {
		t.Errorf("outcomes = %v", got)
	}
}

func TestTimeoutIsRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.JobTimeout = 50 * time.Millisecond })
	b.start(t)

	id := b.submit(t, "cpu", map[string]any{"n": builtin.CPUMaxN}, func(o *river.InsertOpts) { o.MaxAttempts = 1 })
	task := b.waitTask(t, id, 20*time.Second, inState(store.StateDiscarded))
	if len(task.Errors) != 1 || !strings.Contains(task.Errors[0].Message, "deadline exceeded") {
		t.Errorf("errors = %+v", task.Errors)
	}
	if got := outcomes(b.finishedAttempts(t, id, 1)); !slices.Equal(got, []string{store.OutcomeTimeout}) {
		t.Errorf("outcomes = %v", got)
	}
}

// takenByDeadProcess makes task id look taken by "dead-process", whose
// heartbeat stopped 10 s ago, as attempt 1, and returns the attempt's
// attempted_at.
func (b *testBundle) takenByDeadProcess(t *testing.T, id int64) time.Time {
	t.Helper()
	ctx := context.Background()
	if err := b.store.ProcessRegister(ctx, "dead-process", "elsewhere", 1); err != nil {
		t.Fatal(err)
	}
	_, err := b.pool.Exec(ctx, `UPDATE taskd_processes SET heartbeat_at = now() - interval '10 seconds' WHERE client_id = 'dead-process'`)
	if err != nil {
		t.Fatal(err)
	}
	var attemptedAt time.Time
	err = b.pool.QueryRow(ctx, `UPDATE river_job SET state = 'running', attempt = 1, attempted_at = now() - interval '10 seconds',
		attempted_by = ARRAY['dead-process'] WHERE id = $1 RETURNING attempted_at`, id).Scan(&attemptedAt)
	if err != nil {
		t.Fatal(err)
	}
	return attemptedAt
}

// A process that dies leaves its tasks running; any live process makes
// them available again once the dead one's heartbeat is stale, and records
// the attempt as lost.
func TestRescueLostTasksOfDeadProcess(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)

	id := b.submit(t, "double", map[string]any{"value": 4}, nil)
	b.takenByDeadProcess(t, id)

	start := time.Now()
	b.start(t)
	task := b.waitTask(t, id, 10*time.Second, inState(store.StateCompleted))
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("rescued after %s; want within a few heartbeats", elapsed)
	}
	if compact(task.Result) != `{"result":8}` {
		t.Errorf("result = %s", task.Result)
	}
	attempts := b.finishedAttempts(t, id, 2)
	if got := outcomes(attempts); !slices.Equal(got, []string{store.OutcomeLost, store.OutcomeCompleted}) {
		t.Errorf("outcomes = %v", got)
	}
	if attempts[0].Worker != "dead-process" || attempts[1].Worker != b.client.ID() {
		t.Errorf("workers = %q, %q", attempts[0].Worker, attempts[1].Worker)
	}
	if len(task.Errors) != 1 || !strings.Contains(task.Errors[0].Message, "dead-process") {
		t.Errorf("errors = %+v", task.Errors)
	}
}

// A task that runs much longer than RescueAfter on a live process is not
// rescued: its owner keeps heartbeating.
func TestLongTaskOnLiveProcessIsNotRescued(t *testing.T) {
	t.Parallel()
	b := setup(t, nil) // RescueAfter 2 s, heartbeat 200 ms
	b.start(t)

	id := b.submit(t, "sleep", map[string]any{"ms": 3500}, nil)
	b.waitTask(t, id, 10*time.Second, inState(store.StateRunning))
	for range 3 {
		// Time passing is what is tested here: RescueAfter elapses several
		// times over while the task runs. The client's own maintenance
		// loop rescues on every heartbeat too, as any other process would.
		time.Sleep(1200 * time.Millisecond)
		if ids, err := b.store.RescueLost(context.Background(), b.client.cfg.RescueAfter, 100); err != nil || len(ids) > 0 {
			t.Fatalf("RescueLost = %v, %v; want nothing rescued", ids, err)
		}
	}
	task := b.waitTask(t, id, 10*time.Second, inState(store.StateCompleted))
	if task.Attempt != 1 || len(task.Errors) != 0 {
		t.Errorf("attempt = %d, errors = %+v; want one clean attempt", task.Attempt, task.Errors)
	}
	if got := outcomes(b.finishedAttempts(t, id, 1)); !slices.Equal(got, []string{store.OutcomeCompleted}) {
		t.Errorf("outcomes = %v", got)
	}
}

// Stopping with running tasks past the grace period cancels them; River
// makes them available again and the attempt is recorded as interrupted.
func TestStopInterruptsRunningTasks(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	if err := b.client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	id := b.submit(t, "sleep", map[string]any{"ms": 60_000}, nil)
	b.waitTask(t, id, 10*time.Second, inState(store.StateRunning))

	gctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := b.client.Stop(gctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	task, err := b.store.Task(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if task.State != store.StateAvailable || len(task.Errors) != 0 {
		t.Errorf("state = %s, errors = %+v; want available without error", task.State, task.Errors)
	}
	if got := outcomes(task.Attempts); !slices.Equal(got, []string{store.OutcomeInterrupted}) {
		t.Errorf("outcomes = %v", got)
	}
	var n int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM taskd_processes`).Scan(&n); err != nil || n != 0 {
		t.Errorf("process rows after stop = %d, %v; want 0", n, err)
	}
}

func TestAttemptMiddlewareRecordsPanic(t *testing.T) {
	t.Parallel()
	rec := &attemptRecorder{ch: make(chan attemptWrite), pending: map[int64]int{}, settled: make(chan struct{})}
	m := &attemptMiddleware{clientID: "me", recorder: rec}
	job := &rivertype.JobRow{ID: 7, Errors: make([]rivertype.AttemptError, 1)}
	recorded := make(chan store.Attempt, 1)
	go func() {
		w := <-rec.ch
		recorded <- w.attempt
		rec.settle([]attemptWrite{w})
	}()
	func() {
		defer func() {
			if p := recover(); p != "kaboom" {
				t.Errorf("recovered %v, want the panic to go on to River", p)
			}
		}()
		_ = m.Work(context.Background(), job, func(context.Context) error { panic("kaboom") })
	}()
	// The panic went on only after the attempt was queued: the queue is
	// unbuffered here, so the recorder had taken it.
	var a store.Attempt
	select {
	case a = <-recorded:
	case <-time.After(10 * time.Second):
		t.Fatal("the attempt of the panic was not recorded")
	}
	if a.TaskID != 7 || a.Attempt != 2 || a.Outcome != store.OutcomePanic || a.Worker != "me" || a.FinishedAt == nil {
		t.Errorf("attempt = %+v", a)
	}
	// The panic's value, then the stack that panicked.
	if !strings.HasPrefix(a.Error, "kaboom\n\ngoroutine ") || !strings.Contains(a.Error, "TestAttemptMiddlewareRecordsPanic") {
		t.Errorf("attempt error = %q, want the value and the stack trace", a.Error)
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	remote, cancelRemote := context.WithCancelCause(context.Background())
	cancelRemote(rivertype.ErrJobCancelledRemotely)
	stopped, stop := context.WithCancelCause(context.Background())
	stop(errors.New("stop initiated"))
	live := context.Background()

	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want string
	}{
		{"nil", live, nil, store.OutcomeCompleted},
		{"error", live, errors.New("x"), store.OutcomeFailed},
		{"snooze", live, river.JobSnooze(time.Second), store.OutcomeSnoozed},
		{"cancel from worker", live, river.JobCancel(errors.New("x")), store.OutcomeCancelled},
		{"cancel from API", remote, context.Canceled, store.OutcomeCancelled},
		{"shutdown", stopped, context.Canceled, store.OutcomeInterrupted},
		{"shutdown, other error", stopped, errors.New("x"), store.OutcomeFailed},
		{"timeout", live, context.DeadlineExceeded, store.OutcomeTimeout},
		{"wrapped timeout", live, errors.Join(errors.New("query"), context.DeadlineExceeded), store.OutcomeTimeout},
	}
	for _, tt := range tests {
		if got := classify(tt.ctx, tt.err); got != tt.want {
			t.Errorf("%s: classify = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestClassifySuccessAllocatesNothing: classify runs twice for every attempt
// (its row and the metrics), most of which succeed.
func TestClassifySuccessAllocatesNothing(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { classify(context.Background(), nil) }); n != 0 {
		t.Errorf("classify(nil) allocates %v times", n)
	}
}

// A task whose cancellation was asked for while its process died is
// cancelled by the rescue, not run again.
func TestRescueHonoursCancellation(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	id := b.submit(t, "double", map[string]any{"value": 4}, nil)
	_, err := b.pool.Exec(ctx, `UPDATE river_job SET state = 'running', attempt = 1, attempted_at = now() - interval '10 seconds',
		attempted_by = ARRAY['gone'], metadata = jsonb_build_object('cancel_attempted_at', now()) WHERE id = $1`, id)
	if err != nil {
		t.Fatal(err)
	}
	b.start(t)
	task := b.waitTask(t, id, 10*time.Second, inState(store.StateCancelled))
	if task.Result != nil || task.FinishedAt == nil {
		t.Errorf("task = %+v", task)
	}
	if got := outcomes(b.finishedAttempts(t, id, 1)); !slices.Equal(got, []string{store.OutcomeLost}) {
		t.Errorf("outcomes = %v", got)
	}
}

// Once a task shows as completed, the row of the attempt that completed it
// is there too: the attempt middleware writes it before River can save the
// state change, so no crash leaves a completed task without it. The row's
// started_at is the job's attempted_at, which the rescue matches on.
func TestAttemptRowWrittenBeforeCompletion(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.start(t)
	ctx := context.Background()

	const n = 300
	params := make([]river.InsertManyParams, n)
	for i := range params {
		params[i] = river.InsertManyParams{Args: builtin.DoubleArgs{Value: 1}}
	}
	res, err := b.client.River().InsertMany(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int64, len(res))
	for i, r := range res {
		ids[i] = r.Job.ID
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		// One statement reads the states and the rows in one snapshot.
		var completed, missing int
		err := b.pool.QueryRow(ctx, `
			SELECT count(*), count(*) FILTER (WHERE NOT EXISTS (
				SELECT 1 FROM task_attempts a
				WHERE a.task_id = j.id AND a.outcome = 'completed' AND a.started_at = j.attempted_at
					AND a.attempt = greatest(coalesce(cardinality(j.errors), 0) + 1, j.attempt)))
			FROM river_job j
			WHERE j.id = ANY($1) AND j.state = 'completed'`, ids).Scan(&completed, &missing)
		if err != nil {
			t.Fatal(err)
		}
		if missing > 0 {
			t.Fatalf("%d of %d completed tasks have no row for the attempt that completed them", missing, completed)
		}
		if completed == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d tasks completed within 30s", completed, n)
		}
		time.Sleep(2 * time.Millisecond) // polling interval, not synchronisation
	}
}

// A process that died after a task's work had completed and its attempt
// was recorded, but before River saved the completion: the rescue keeps
// that one row, as completed_unsaved, and the re-run is attempt 2.
func TestRescueRunsAgainTaskWhoseCompletionWasNotSaved(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()

	id := b.submit(t, "double", map[string]any{"value": 4}, nil)
	attemptedAt := b.takenByDeadProcess(t, id)
	finished := attemptedAt.Add(time.Millisecond)
	err := b.store.AttemptInsertMany(ctx, []store.Attempt{{
		TaskID: id, Attempt: 1, Worker: "dead-process", StartedAt: attemptedAt, FinishedAt: &finished, Outcome: store.OutcomeCompleted,
	}})
	if err != nil {
		t.Fatal(err)
	}

	b.start(t)
	task := b.waitTask(t, id, 10*time.Second, inState(store.StateCompleted))
	if compact(task.Result) != `{"result":8}` {
		t.Errorf("result = %s", task.Result)
	}
	attempts := b.finishedAttempts(t, id, 2)
	if got := outcomes(attempts); !slices.Equal(got, []string{store.OutcomeCompletedUnsaved, store.OutcomeCompleted}) {
		t.Fatalf("outcomes = %v", got)
	}
	if attempts[0].Attempt != 1 || attempts[1].Attempt != 2 || attempts[1].Worker != b.client.ID() {
		t.Errorf("attempts = %+v, want attempt 1 by dead-process, attempt 2 by this client", attempts)
	}
	if !strings.Contains(attempts[0].Error, "process dead-process died before its completion (and result) was saved") {
		t.Errorf("attempt 1 error = %q", attempts[0].Error)
	}
	if len(task.Errors) != 1 || !strings.HasPrefix(task.Errors[0].Message, "completed_unsaved: ") {
		t.Errorf("errors = %+v", task.Errors)
	}
}

// waitBlockedAttemptWrite waits until the recorder's write waits for a lock
// on task_attempts and returns its backend's PID.
func (b *testBundle) waitBlockedAttemptWrite(t *testing.T) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var pids []int
		rows, err := b.pool.Query(context.Background(), `
			SELECT pid FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()
				AND wait_event_type = 'Lock' AND query ILIKE '%task_attempts%'`)
		if err == nil {
			for rows.Next() {
				var pid int
				if err = rows.Scan(&pid); err != nil {
					break
				}
				pids = append(pids, pid)
			}
			rows.Close()
			err = rows.Err()
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) == 1 {
			return pids[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no attempt write waiting for its lock within 10s (%v)", pids)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
}

// lockAttempts takes an exclusive lock on task_attempts until the returned
// function is called.
func (b *testBundle) lockAttempts(t *testing.T) (release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE task_attempts IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if err := tx.Rollback(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(release)
	return release
}

// An attempt write whose connection is killed is retried: the task's state
// does not change meanwhile, and the attempt ends up with one row.
func TestAttemptWriteRetriedAfterLostConnection(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.start(t)
	ctx := context.Background()

	release := b.lockAttempts(t)
	id := b.submit(t, "double", map[string]any{"value": 2}, nil)
	pid := b.waitBlockedAttemptWrite(t)
	var killed bool
	if err := b.pool.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&killed); err != nil || !killed {
		t.Fatalf("pg_terminate_backend = %v, %v", killed, err)
	}
	// The retry waits for the lock in turn; the task's completion still
	// waits for it.
	b.waitBlockedAttemptWrite(t)
	// (Store.Task would wait for the lock too.)
	var state string
	if err := b.pool.QueryRow(ctx, `SELECT state FROM river_job WHERE id = $1`, id).Scan(&state); err != nil || state != store.StateRunning {
		t.Fatalf("task state before its attempt is written = %s, %v; want running", state, err)
	}
	release()

	task := b.waitTask(t, id, 10*time.Second, inState(store.StateCompleted))
	if got := outcomes(task.Attempts); !slices.Equal(got, []string{store.OutcomeCompleted}) {
		t.Errorf("outcomes = %v, want one completed attempt", got)
	}
}

// When attempts cannot be written for longer than the recorder retries,
// their tasks go on without the rows rather than waiting or failing.
func TestAttemptWriteGivenUp(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.client.recorder.writeFor = 300 * time.Millisecond
	b.start(t)
	ctx := context.Background()

	release := b.lockAttempts(t)
	id := b.submit(t, "double", map[string]any{"value": 2}, nil)
	// Polled on river_job alone: Store.Task would wait for the lock.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var state string
		if err := b.pool.QueryRow(ctx, `SELECT state FROM river_job WHERE id = $1`, id).Scan(&state); err != nil {
			t.Fatal(err)
		}
		if state == store.StateCompleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s after 10s, want completed although its attempt could not be written", state)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
	release()
	task, err := b.store.Task(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if compact(task.Result) != `{"result":4}` {
		t.Errorf("result = %s", task.Result)
	}
	if len(task.Attempts) != 0 {
		t.Errorf("attempts = %+v, want none (the write was given up)", task.Attempts)
	}
}

// TestFailPermanentAndSnooze: the built-in fail kind discards at once with
// permanent, and with snooze is put off without counting attempts.
func TestFailPermanentAndSnooze(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.start(t)
	perm := b.submit(t, "fail", map[string]any{"times": 3, "permanent": true, "message": "never"}, nil)
	task := b.waitTask(t, perm, 20*time.Second, inState(store.StateDiscarded))
	if task.Attempt != 1 || len(task.Errors) != 1 || task.Errors[0].Message != "never" || task.MaxAttempts != MaxAttemptsDefault {
		t.Fatalf("permanent: %+v", task)
	}
	snooze := b.submit(t, "fail", map[string]any{"times": 2, "snooze": "10ms"}, nil)
	task = b.waitTask(t, snooze, 20*time.Second, inState(store.StateCompleted))
	if compact(task.Result) != `{"snoozes":2,"attempts":1}` || len(task.Errors) != 0 || task.Attempt != 1 {
		t.Fatalf("snooze: result %s, errors %v, attempt %d", task.Result, task.Errors, task.Attempt)
	}
	if o := outcomes(b.finishedAttempts(t, snooze, 3)); !slices.Equal(o, []string{"snoozed", "snoozed", "completed"}) {
		t.Fatalf("snooze attempts: %v", o)
	}
}

// A group with an attempt whose task may be gone (checked: the watchdog
// cancelled it) is written with the statement that drops attempts of
// missing tasks; without the foreign key, the unchecked COPY would store
// them.
func TestAttemptRecorderChecked(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, 0)
	st := store.New(pool)
	r := newAttemptRecorder(st, testLogger(t))
	go r.run()
	defer r.close()
	ctx := context.Background()

	var id int64
	if err := pool.QueryRow(ctx, `INSERT INTO river_job (args, kind, max_attempts, queue, state, attempt, attempted_at)
		VALUES ('{}', 'double', 25, 'default', 'running', 1, now()) RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	const gone = 1 << 40 // no such task
	now := time.Now()
	attempt := func(task int64) store.Attempt {
		return store.Attempt{TaskID: task, Attempt: 1, Worker: "w", StartedAt: now, FinishedAt: &now, Outcome: store.OutcomeInterrupted}
	}
	lost := func() bool { return true } // the watchdog cancelled them
	r.record(attempt(gone), false, lost)
	r.record(attempt(id), false, lost)
	if err := r.awaitWritten(ctx, []int64{gone, id}); err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, `SELECT task_id FROM task_attempts ORDER BY task_id`)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(stored, []int64{id}) {
		t.Errorf("attempts stored for tasks %v, want only %d (task %d does not exist)", stored, id, int64(gone))
	}

	// Unchecked attempts are checked all the same while the heartbeat is
	// too old (suspect), and written with the COPY otherwise, which does
	// not look for their task.
	suspect := true
	r.suspect = func() bool { return suspect }
	r.record(attempt(gone+1), false, nil)
	if err := r.awaitWritten(ctx, []int64{gone + 1}); err != nil {
		t.Fatal(err)
	}
	suspect = false
	r.record(attempt(gone+2), false, nil)
	if err := r.awaitWritten(ctx, []int64{gone + 2}); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT array_agg(task_id ORDER BY task_id) FROM task_attempts`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(stored, []int64{id, gone + 2}) {
		t.Errorf("attempts stored for tasks %v, want %d and %d (written while the heartbeat was fresh, unchecked)", stored, id, int64(gone+2))
	}
}
