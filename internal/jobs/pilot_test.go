package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/store"
)

// beginCounter counts the transactions begun on an executor.
type beginCounter struct {
	riverdriver.Executor
	begun int
}

func (e *beginCounter) Begin(ctx context.Context) (riverdriver.ExecutorTx, error) {
	e.begun++
	return e.Executor.Begin(ctx)
}

// TestCompletionPilot writes a batch of completions through the pilot: of
// tasks with no cancelled attempt (written as River writes them, without a
// transaction of the pilot's), of a cancelled attempt whose task nobody
// rescued (written), of one whose task another process runs again (dropped,
// metadata and all) and of one whose task this process runs again (dropped).
func TestCompletionPilot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t), 0)
	w := newWatchdog(2*time.Second, 500*time.Millisecond, testLogger(t))
	p := &completionPilot{watchdog: w, statements: newStatements(pool)}
	exec := &beginCounter{Executor: riverpgxv5.New(pool).GetExecutor()}

	// running inserts a running job at attempt, fetched at attemptedAt.
	running := func(attempt int) (int64, time.Time) {
		t.Helper()
		var id int64
		var at time.Time
		err := pool.QueryRow(ctx, `INSERT INTO river_job (kind, args, state, attempt, attempted_at, attempted_by, max_attempts, queue, priority, metadata)
			VALUES ('x', '{}', 'running', $1, now(), '{a}', 25, 'default', 1, '{}') RETURNING id, attempted_at`, attempt).Scan(&id, &at)
		if err != nil {
			t.Fatal(err)
		}
		return id, at
	}
	get := func(id int64) *rivertype.JobRow {
		t.Helper()
		rows, err := exec.JobGetByIDMany(ctx, &riverdriver.JobGetByIDManyParams{ID: []int64{id}})
		if err != nil || len(rows) != 1 {
			t.Fatalf("job %d: %v, %d rows", id, err, len(rows))
		}
		return rows[0]
	}

	plain, _ := running(1)
	if _, err := p.JobSetStateIfRunningMany(ctx, exec, completedParams([]byte(`{"output": "stale"}`), plain)); err != nil {
		t.Fatal(err)
	}
	if exec.begun != 0 {
		t.Errorf("a batch without cancelled attempts began %d transactions", exec.begun)
	}
	if job := get(plain); job.State != rivertype.JobStateCompleted {
		t.Errorf("plain: %s", job.State)
	}

	other, _ := running(1)
	kept, keptAt := running(1)
	rescued, rescuedAt := running(2) // a's attempt 1 was rescued; b runs attempt 2
	rerun, rerunAt := running(2)     // a runs it again itself
	w.mu.Lock()
	w.stale[kept] = &staleAttempt{attempt: 1, attemptedAt: &keptAt, done: make(chan struct{})}
	rescuedAt1 := rescuedAt.Add(-time.Minute)
	w.stale[rescued] = &staleAttempt{attempt: 1, attemptedAt: &rescuedAt1, done: make(chan struct{})}
	rerunAt1 := rerunAt.Add(-time.Minute)
	w.stale[rerun] = &staleAttempt{attempt: 1, attemptedAt: &rerunAt1, rerun: &attemptCancel{id: rerun, attempt: 2, attemptedAt: &rerunAt}, done: make(chan struct{})}
	w.mu.Unlock()

	rows, err := p.JobSetStateIfRunningMany(ctx, exec, completedParams([]byte(`{"output": "stale"}`), rerun, other, rescued, kept))
	if err != nil {
		t.Fatal(err)
	}
	if exec.begun != 1 {
		t.Errorf("began %d transactions, want 1", exec.begun)
	}
	want := []int64{other, kept, rescued, rerun} // by ID, as River returns them
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for i, row := range rows {
		if row.ID != want[i] {
			t.Errorf("row %d: job %d, want %d", i, row.ID, want[i])
		}
	}
	for _, c := range []struct {
		name    string
		id      int64
		state   rivertype.JobState
		attempt int
		output  bool
	}{
		{"other", other, rivertype.JobStateCompleted, 1, true},
		{"kept", kept, rivertype.JobStateCompleted, 1, true},
		{"rescued", rescued, rivertype.JobStateRunning, 2, false},
		{"rerun", rerun, rivertype.JobStateRunning, 2, false},
	} {
		job := get(c.id)
		var meta map[string]any
		if err := json.Unmarshal(job.Metadata, &meta); err != nil {
			t.Fatal(err)
		}
		_, output := meta["output"]
		if job.State != c.state || job.Attempt != c.attempt || output != c.output {
			t.Errorf("%s: %s at attempt %d, output %t; want %s at %d, output %t", c.name, job.State, job.Attempt, output, c.state, c.attempt, c.output)
		}
	}
	w.mu.Lock()
	left := len(w.stale)
	w.mu.Unlock()
	if left != 0 {
		t.Errorf("%d cancelled attempts still remembered", left)
	}
}

// River takes the pilot from the driver through an interface of its own
// (driverPlugin, internal to River): a River whose interface changed would
// silently use its standard pilot instead, without the guard.
func TestClientUsesCompletionPilot(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	if _, ok := b.client.River().Pilot().(*completionPilot); !ok {
		t.Errorf("River's pilot is %T, want *completionPilot", b.client.River().Pilot())
	}
	if _, ok := b.client.River().Driver().(*driver); !ok {
		t.Errorf("River's driver is %T, want *driver", b.client.River().Driver())
	}
}

// completedParams is one completion of each of ids, with metadata merged
// into each job (RecordOutput's, or nil), as River's completer
// batches them.
func completedParams(metadata []byte, ids ...int64) *riverdriver.JobSetStateIfRunningManyParams {
	params := &riverdriver.JobSetStateIfRunningManyParams{}
	for _, id := range ids {
		c := riverdriver.JobSetStateCompleted(id, time.Now(), metadata)
		params.ID = append(params.ID, id)
		params.Attempt = append(params.Attempt, c.Attempt)
		params.ErrData = append(params.ErrData, c.ErrData)
		params.FinalizedAt = append(params.FinalizedAt, c.FinalizedAt)
		params.MetadataDoMerge = append(params.MetadataDoMerge, c.MetadataDoMerge)
		params.MetadataUpdates = append(params.MetadataUpdates, c.MetadataUpdates)
		params.ScheduledAt = append(params.ScheduledAt, c.ScheduledAt)
		params.State = append(params.State, c.State)
	}
	return params
}

// newStatements is the pilot's statements as newDriver makes them.
func newStatements(pool *pgxpool.Pool) *statements {
	return newDriver(store.New(pool), nil, nil, nil, nil).pilot.statements
}

// TestStatementsTakeRiversCompletions checks which completions taskd's
// statement writes: those River makes with riverdriver.JobSetStateCompleted
// (if River gave them more, such as an attempt, they would all go back to
// River's statement, and the statement's gain would be gone unnoticed), not
// a retry or a snooze; and that a batch mixing the two is written whole,
// with each completion's own outcome, or not at all.
func TestStatementsTakeRiversCompletions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t), 0)
	p := &completionPilot{statements: newStatements(pool)}
	exec := riverpgxv5.New(pool).GetExecutor()
	running := func() int64 {
		t.Helper()
		var id int64
		if err := pool.QueryRow(ctx, `INSERT INTO river_job (kind, args, state, attempt, attempted_at, attempted_by, max_attempts, queue, priority, metadata)
			VALUES ('x', '{}', 'running', 1, now(), '{a}', 25, 'default', 1, '{}') RETURNING id`).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	retry := time.Now().Add(time.Hour)
	failed := riverdriver.JobSetStateErrorRetryable(0, retry, []byte(`{"error": "x", "attempt": 1, "at": "2026-12-06T10:00:00Z"}`), nil)
	snoozed := riverdriver.JobSetStateSnoozed(0, retry, 1, nil)
	setFailed := func(params *riverdriver.JobSetStateIfRunningManyParams, i int, errData []byte) {
		params.State[i], params.ErrData[i], params.ScheduledAt[i], params.FinalizedAt[i] = failed.State, errData, failed.ScheduledAt, failed.FinalizedAt
	}

	params := completedParams([]byte(`{"output": 1}`), 1, 2, 3)
	params.State[2], params.Attempt[2], params.ScheduledAt[2], params.FinalizedAt[2] = snoozed.State, snoozed.Attempt, snoozed.ScheduledAt, snoozed.FinalizedAt
	setFailed(params, 1, failed.ErrData)
	for i, want := range []bool{true, false, false} {
		if got := plainCompletion(params, i); got != want {
			t.Errorf("completion %d (%s): plain %v, want %v", i, params.State[i], got, want)
		}
	}

	// A mixed batch: a completion, a failure, a completion.
	ids := []int64{running(), running(), running()}
	mixed := completedParams([]byte(`{"output": 1}`), ids...)
	setFailed(mixed, 1, failed.ErrData)
	rows, err := p.setStateMany(ctx, exec, mixed)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0].ID != ids[0] || rows[1].ID != ids[1] || rows[2].ID != ids[2] {
		t.Fatalf("rows %+v, want tasks %v in order", rows, ids)
	}
	if rows[0].State != rivertype.JobStateCompleted || string(rows[0].Metadata) != `{"output": 1}` || rows[2].State != rivertype.JobStateCompleted ||
		rows[1].State != rivertype.JobStateRetryable || len(rows[1].Errors) != 1 {
		t.Fatalf("mixed batch: rows %+v", rows)
	}

	// The same, with a failure PostgreSQL refuses (its error is not JSON):
	// nothing of the batch is saved.
	ids = []int64{running(), running()}
	mixed = completedParams(nil, ids...)
	setFailed(mixed, 1, []byte(`{not json`))
	if _, err := p.setStateMany(ctx, exec, mixed); err == nil || !refusedForData(err) {
		t.Fatalf("a batch PostgreSQL refuses: error %v", err)
	}
	var stillRunning int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE id = ANY($1) AND state = 'running'`, ids).Scan(&stillRunning); err != nil || stillRunning != 2 {
		t.Errorf("%d of the refused batch's 2 tasks still running (%v): the completion was saved without the rest", stillRunning, err)
	}
}

// A returned fetch stays held until a batch with its completion
// succeeded through the pilot; a failed batch (River retries it) leaves
// it held.
func TestCompletionPilotSettlesHeld(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t), 0)
	held := newHeldSet()
	p := &completionPilot{watchdog: newWatchdog(2*time.Second, 500*time.Millisecond, testLogger(t)), held: held, statements: newStatements(pool)}
	exec := riverpgxv5.New(pool).GetExecutor()
	var id int64
	if err := pool.QueryRow(ctx, `INSERT INTO river_job (kind, args, state, attempt, attempted_at, attempted_by, max_attempts, queue, priority, metadata)
		VALUES ('x', '{}', 'running', 1, now(), '{a}', 25, 'default', 1, '{}') RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	held.release(held.hold(&rivertype.JobRow{ID: id, Attempt: 1}))

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.JobSetStateIfRunningMany(cctx, exec, completedParams(nil, id)); err == nil {
		t.Fatal("a batch on a cancelled context succeeded")
	}
	if got := held.orphans([]int64{id}, 0); len(got) != 0 {
		t.Errorf("after a failed batch: orphans = %v, want none", got)
	}
	if _, err := p.JobSetStateIfRunningMany(ctx, exec, completedParams(nil, id)); err != nil {
		t.Fatal(err)
	}
	if got := held.orphans([]int64{id}, 0); len(got) != 1 {
		t.Errorf("after the batch was saved: orphans = %v, want [%d]", got, id)
	}
}

// The orphan rescue guards the fetch it took back: a completion of it that
// River's completer still held (the reviewer's case: a held entry gone
// while the database was away) must not complete the run of the process
// that fetched the task next.
func TestOrphanRescueGuardsLateCompletion(t *testing.T) {
	t.Parallel()
	b := setup(t, nil) // not started: the sweep is called by hand
	ctx := context.Background()
	var id int64
	var at time.Time
	err := b.pool.QueryRow(ctx, `INSERT INTO river_job (kind, args, state, attempt, attempted_at, attempted_by, max_attempts, queue, priority, metadata)
		VALUES ('double', '{"value": 1}', 'running', 1, now() - interval '10 seconds', ARRAY[$1::text], 25, 'default', 1, '{}')
		RETURNING id, attempted_at`, b.client.ID()).Scan(&id, &at)
	if err != nil {
		t.Fatal(err)
	}
	b.client.rescueOrphans(ctx)
	w := b.client.watchdog
	w.mu.Lock()
	s := w.stale[id]
	w.mu.Unlock()
	if s == nil || s.attempt != 1 || s.attemptedAt == nil || !s.attemptedAt.Equal(at) {
		t.Fatalf("guard after the orphan rescue = %+v, want attempt 1 at %v", s, at)
	}
	// Another process fetches it.
	if _, err := b.pool.Exec(ctx, `UPDATE river_job SET state = 'running', attempt = 2, attempted_at = now(),
		attempted_by = attempted_by || '{other}' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	pilot := b.client.River().Pilot()
	if _, err := pilot.JobSetStateIfRunningMany(ctx, riverpgxv5.New(b.pool).GetExecutor(), completedParams(nil, id)); err != nil {
		t.Fatal(err)
	}
	var state string
	var attempt int
	if err := b.pool.QueryRow(ctx, "SELECT state, attempt FROM river_job WHERE id = $1", id).Scan(&state, &attempt); err != nil {
		t.Fatal(err)
	}
	if state != "running" || attempt != 2 {
		t.Errorf("the other process's run: %s at attempt %d, want running at 2 (the late completion dropped)", state, attempt)
	}
	if w.isStale(id) {
		t.Error("the guard is still remembered after its completion was dropped")
	}
}

// River's completion of an attempt waits for the attempt's row, which the
// worker no longer waits for: with the recorder's write held up by a lock,
// the completion does not land first. The row's transaction ID comes before
// the completion's, as it does only if the completion waited: a completion
// written while the row's COPY waited for its lock would have taken an ID
// first (the COPY takes one only once it has its lock and writes). A task
// of the same batch without a row to wait for (a snooze of a task the
// limits refused) is saved meanwhile.
func TestCompletionWaitsForAttemptRow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t), 0)
	r := newAttemptRecorder(store.New(pool), testLogger(t))
	r.writeFor = time.Minute // not given up while the test holds the lock
	go r.run()
	defer r.close()
	p := &completionPilot{recorder: r}
	var id, other int64
	for _, dst := range []*int64{&id, &other} {
		if err := pool.QueryRow(ctx, `INSERT INTO river_job (kind, args, state, attempt, attempted_at, attempted_by, max_attempts, queue, priority, metadata)
			VALUES ('x', '{}', 'running', 1, now(), '{a}', 25, 'default', 1, '{}') RETURNING id`).Scan(dst); err != nil {
			t.Fatal(err)
		}
	}

	lock, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Rollback(ctx) }()
	if _, err := lock.Exec(ctx, `LOCK TABLE task_attempts IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r.record(store.Attempt{TaskID: id, Attempt: 1, Worker: "w", StartedAt: now, FinishedAt: &now, Outcome: store.OutcomeCompleted}, false, nil)
	done := make(chan error, 1)
	go func() {
		rows, err := p.JobSetStateIfRunningMany(ctx, riverpgxv5.New(pool).GetExecutor(), completedParams(nil, id, other))
		if err == nil && (len(rows) != 2 || rows[0].ID != id || rows[1].ID != other) {
			err = fmt.Errorf("rows returned: %v, want tasks %d and %d in order", rows, id, other)
		}
		done <- err
	}()
	holds := func(query string, args ...any) func() bool {
		return func() bool {
			var ok bool
			if err := pool.QueryRow(ctx, query, args...).Scan(&ok); err != nil {
				t.Fatal(err)
			}
			return ok
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	// The row's COPY waits for the lock (in this database: its clones
	// share the table's OID).
	waitFor(t, "the attempt's row waiting for the lock", time.Until(deadline),
		holds(`SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
			WHERE c.relname = 'task_attempts' AND NOT l.granted
			AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))`))
	// The other task of the batch is saved while the row waits.
	waitFor(t, "the task without a row to wait for saved while the other's row waited", time.Until(deadline),
		holds(`SELECT state = 'completed' FROM river_job WHERE id = $1`, other))
	var state string
	if err := pool.QueryRow(ctx, `SELECT state FROM river_job WHERE id = $1`, id).Scan(&state); err != nil {
		t.Fatal(err)
	}
	if state != "running" {
		t.Errorf("state while the attempt's row waits = %s, want running", state)
	}
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var rowFirst bool
	// No row yet when the completion returned counts as the row coming
	// second.
	if err := pool.QueryRow(ctx, `SELECT coalesce((SELECT xmin::text::bigint FROM task_attempts WHERE task_id = $1)
		< (SELECT xmin::text::bigint FROM river_job WHERE id = $1 AND state = 'completed'), false)`, id).Scan(&rowFirst); err != nil {
		t.Fatal(err)
	}
	if !rowFirst {
		t.Errorf("the completion was written before the attempt's row (state while the row waited: %s)", state)
	}
}

// One completion PostgreSQL refuses (here a number numeric cannot hold, in
// its output) is set aside, and the rest of its batch is saved: River's
// completer retried the whole batch, with every later completion of the
// process added to it, and none was saved until a restart. The same holds
// for a batch with the completion of an attempt the watchdog cancelled in
// it, which goes through the guarded transaction.
func TestCompletionPilotSetsAsideUnsavable(t *testing.T) {
	t.Parallel()
	for _, guarded := range []bool{false, true} {
		t.Run(fmt.Sprintf("guarded=%v", guarded), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			pool := pgtest.Pool(t, pgtest.NewDB(t), 0)
			w := newWatchdog(2*time.Second, 500*time.Millisecond, testLogger(t))
			p := &completionPilot{watchdog: w, logger: testLogger(t), statements: newStatements(pool)}
			exec := riverpgxv5.New(pool).GetExecutor()
			var ids []int64
			for range 5 {
				var id int64
				var at time.Time
				if err := pool.QueryRow(ctx, `INSERT INTO river_job (kind, args, state, attempt, attempted_at, attempted_by, max_attempts, queue, priority, metadata)
					VALUES ('x', '{}', 'running', 1, now(), '{a}', 25, 'default', 1, '{}') RETURNING id, attempted_at`).Scan(&id, &at); err != nil {
					t.Fatal(err)
				}
				if guarded && len(ids) == 0 {
					// The first task's attempt was cancelled, and still owns
					// its row: its completion is written, guarded.
					w.stale[id] = &staleAttempt{attempt: 1, attemptedAt: &at, done: make(chan struct{})}
				}
				ids = append(ids, id)
			}
			params := completedParams([]byte(`{"output":{"ok":true}}`), ids...)
			const bad = 3
			params.MetadataUpdates[bad] = []byte(`{"output":{"n":1e200000}}`)

			rows, err := p.JobSetStateIfRunningMany(ctx, exec, params)
			if err != nil {
				t.Fatalf("the batch failed: %v", err)
			}
			if len(rows) != len(ids) {
				t.Errorf("%d rows returned, want %d", len(rows), len(ids))
			}
			got, err := exec.JobGetByIDMany(ctx, &riverdriver.JobGetByIDManyParams{ID: ids})
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range got {
				if j.State != rivertype.JobStateCompleted || j.Attempt != 1 || len(j.Errors) != 0 {
					t.Errorf("job %d: state %s, attempt %d, errors %+v; want completed at attempt 1 without errors", j.ID, j.State, j.Attempt, j.Errors)
				}
				var meta map[string]json.RawMessage
				if err := json.Unmarshal(j.Metadata, &meta); err != nil {
					t.Fatal(err)
				}
				if j.ID == ids[bad] {
					if _, ok := meta["output"]; ok || !strings.Contains(string(meta[unsavedKey]), "22003") {
						t.Errorf("the unsavable job: metadata %s; want no output and a note of the refusal", j.Metadata)
					}
					continue
				}
				if string(meta["output"]) != `{"ok": true}` {
					t.Errorf("job %d: output %s, want its own", j.ID, meta["output"])
				}
			}
			if guarded && len(w.stale) != 0 {
				t.Errorf("the cancelled attempt is still remembered after its completion was written")
			}
		})
	}
}

// An attempt whose own error PostgreSQL cannot store either gets an error
// naming the refusal instead, at its attempt number.
func TestCompletionPilotReplacesUnsavableError(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t), 0)
	p := &completionPilot{watchdog: newWatchdog(2*time.Second, 500*time.Millisecond, testLogger(t)), statements: newStatements(pool)}
	exec := riverpgxv5.New(pool).GetExecutor()
	var id int64
	if err := pool.QueryRow(ctx, `INSERT INTO river_job (kind, args, state, attempt, attempted_at, attempted_by, max_attempts, queue, priority, metadata)
		VALUES ('x', '{}', 'running', 2, now(), '{a}', 25, 'default', 1, '{}') RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	params := completedParams(nil, id)
	params.State[0] = rivertype.JobStateRetryable
	retryAt := time.Now().Add(time.Hour)
	params.ScheduledAt[0], params.FinalizedAt[0] = &retryAt, nil
	params.ErrData[0] = []byte(`{"at":"2026-01-01T00:00:00Z","attempt":2,"error":{"n":1e200000}}`)
	if _, err := p.JobSetStateIfRunningMany(ctx, exec, params); err != nil {
		t.Fatalf("the batch failed: %v", err)
	}
	got, err := exec.JobGetByIDMany(ctx, &riverdriver.JobGetByIDManyParams{ID: []int64{id}})
	if err != nil || len(got) != 1 {
		t.Fatal(err)
	}
	j := got[0]
	if j.State != rivertype.JobStateRetryable || len(j.Errors) != 1 || j.Errors[0].Attempt != 2 || !strings.Contains(j.Errors[0].Error, "PostgreSQL refused") {
		t.Errorf("state %s, errors %+v; want retryable with one error at attempt 2 naming the refusal", j.State, j.Errors)
	}
}

// The pilot fetches with taskd's statement (store.JobFetch, whose own
// tests compare it with River's) when it has its statements, and with
// River's otherwise: a job of another schema's queue is not one it can
// fetch, and River's driver is asked for it.
func TestPilotFetches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t), 0)
	exec := riverpgxv5.New(pool).GetExecutor()
	var id int64
	if err := pool.QueryRow(ctx, `INSERT INTO river_job (kind, args, state, max_attempts, queue, priority, metadata)
		VALUES ('x', '{}', 'available', 25, 'default', 1, '{}') RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	p := &completionPilot{statements: newStatements(pool)}
	res, err := p.JobGetAvailable(ctx, exec, nil, &riverdriver.JobGetAvailableParams{ClientID: "c", MaxAttemptedBy: 100, MaxToLock: 10, Queue: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Jobs) != 1 || res.Jobs[0].ID != id || res.Jobs[0].State != rivertype.JobStateRunning || res.Jobs[0].AttemptedBy[0] != "c" {
		t.Fatalf("fetched %+v", res.Jobs)
	}
	// River's statement on a schema that does not exist fails: the pilot
	// gave the fetch to River.
	if _, err := p.JobGetAvailable(ctx, exec, nil, &riverdriver.JobGetAvailableParams{ClientID: "c", MaxAttemptedBy: 100, MaxToLock: 10, Queue: "default", Schema: "nowhere"}); err == nil {
		t.Error("a fetch on schema nowhere succeeded: it did not go to River's statement")
	}
}

// The pilot inserts jobs without a unique key with taskd's statement, with
// River's defaults for what a job leaves out (the rows equal those River's
// own insert returns for the same parameters, times aside for the job that
// leaves them to now), and leaves unique jobs, and jobs with an id of their
// own, to River's.
func TestStatementsInsertAgreesWithRiver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t), 0)
	c := newStatements(pool)
	exec := riverpgxv5.New(pool).GetExecutor()
	at := time.Date(2026, 12, 1, 8, 0, 0, 1000, time.UTC)
	jobs := []*riverdriver.JobInsertFastParams{
		{EncodedArgs: []byte(`{"value": 1}`), Kind: "double", MaxAttempts: 25, Priority: 1, Queue: "default", State: rivertype.JobStateAvailable, CreatedAt: &at, ScheduledAt: &at, Metadata: []byte(`{"batch_id": 1}`)},
		{Kind: "empty", MaxAttempts: 70000, Priority: 4, Queue: "q", State: rivertype.JobStateScheduled, CreatedAt: &at, ScheduledAt: &at, Tags: []string{"x", "y"}},
		{EncodedArgs: []byte(`{}`), Kind: "now", MaxAttempts: 1, Priority: 2, Queue: "default", State: rivertype.JobStateAvailable},
	}
	insert := func(f func(riverdriver.ExecutorTx) ([]*riverdriver.JobInsertFastResult, error)) []*riverdriver.JobInsertFastResult {
		t.Helper()
		tx, err := exec.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		res, err := f(tx)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		return res
	}
	params := &riverdriver.JobInsertFastManyParams{Jobs: jobs}
	want := insert(func(tx riverdriver.ExecutorTx) ([]*riverdriver.JobInsertFastResult, error) {
		return tx.JobInsertFastMany(ctx, params)
	})
	got := insert(func(tx riverdriver.ExecutorTx) ([]*riverdriver.JobInsertFastResult, error) {
		res, ok, err := c.insert(ctx, tx, params)
		if !ok {
			t.Fatal("taskd's jobs went to River's insert")
		}
		return res, err
	})
	for i := range want {
		w, g := *want[i].Job, *got[i].Job
		g.ID = w.ID
		if jobs[i].CreatedAt == nil {
			if g.CreatedAt.Before(w.CreatedAt) || !g.ScheduledAt.Equal(g.CreatedAt) {
				t.Errorf("job %d: created at %v, scheduled at %v; River's %v", i, g.CreatedAt, g.ScheduledAt, w.CreatedAt)
			}
			g.CreatedAt, g.ScheduledAt = w.CreatedAt, w.ScheduledAt
		}
		if !reflect.DeepEqual(g, w) || got[i].UniqueSkippedAsDuplicate {
			t.Errorf("job %d:\n got %+v\nwant %+v", i, g, w)
		}
	}

	id := int64(1 << 40)
	for name, job := range map[string]*riverdriver.JobInsertFastParams{
		"a unique key": {EncodedArgs: []byte(`{}`), Kind: "u", MaxAttempts: 1, Priority: 1, Queue: "default", State: rivertype.JobStateAvailable, UniqueKey: []byte("k"), UniqueStates: 0xff},
		"an id":        {ID: &id, EncodedArgs: []byte(`{}`), Kind: "i", MaxAttempts: 1, Priority: 1, Queue: "default", State: rivertype.JobStateAvailable},
	} {
		tx, err := exec.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok, err := c.insert(ctx, tx, &riverdriver.JobInsertFastManyParams{Jobs: []*riverdriver.JobInsertFastParams{jobs[0], job}}); ok || err != nil {
			t.Errorf("a batch with %s: taken %v, error %v", name, ok, err)
		}
		_ = tx.Rollback(ctx)
	}
	tx, err := exec.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, ok, err := c.insert(ctx, tx, &riverdriver.JobInsertFastManyParams{Jobs: jobs[:1], Schema: "elsewhere"}); ok || err != nil {
		t.Errorf("a batch on a schema of its own: taken %v, error %v", ok, err)
	}
}

// TestRiverParamsKnown fails when River's parameters for the three
// statements taskd writes itself (statements) gain or lose a field: a new
// one would be ignored by taskd's statements, whatever it asks for, and
// the agreement tests would pass unless one of their rows set it. Read
// what River does with it, in riverpgxv5 and its SQL, before adding it
// here.
func TestRiverParamsKnown(t *testing.T) {
	for typ, want := range map[reflect.Type][]string{
		reflect.TypeFor[riverdriver.JobInsertFastManyParams](): {"Jobs", "Schema"},
		reflect.TypeFor[riverdriver.JobInsertFastParams](): {"ID", "Args", "CreatedAt", "EncodedArgs", "Kind", "MaxAttempts",
			"Metadata", "Priority", "Queue", "ScheduledAt", "State", "Tags", "UniqueKey", "UniqueStates"},
		// ProducerID is River's too: its own statement does not use it.
		reflect.TypeFor[riverdriver.JobGetAvailableParams](): {"ClientID", "Kind", "MaxAttemptedBy", "MaxToLock", "Now", "ProducerID", "Queue", "Schema"},
		// Now is used by River's statement only for a cancelled retry.
		reflect.TypeFor[riverdriver.JobSetStateIfRunningManyParams](): {"ID", "Attempt", "ErrData", "FinalizedAt", "MetadataDoMerge",
			"MetadataUpdates", "Now", "ScheduledAt", "Schema", "State"},
	} {
		var got []string
		for i := range typ.NumField() {
			got = append(got, typ.Field(i).Name)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%v has fields %v; taskd's statements know %v", typ, got, want)
		}
	}
}

// A closed pool is River's ErrClosedPool, on which River's services stop
// instead of retrying, whatever wraps it.
func TestRiverError(t *testing.T) {
	if err := riverError(fmt.Errorf("fetching jobs: %w", puddle.ErrClosedPool)); !errors.Is(err, riverdriver.ErrClosedPool) {
		t.Errorf("closed pool: %v", err)
	}
	other := errors.New("x")
	if err := riverError(other); err != other {
		t.Errorf("another error became %v", err)
	}
}
