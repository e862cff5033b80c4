package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskd/taskd/internal/pgtest"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	return New(pgtest.NewPool(t, 0))
}

// insertFinished inserts a completed task and returns its ID.
func insertFinished(t *testing.T, s *Store) int64 {
	t.Helper()
	var id int64
	if err := s.pool.QueryRow(context.Background(), `INSERT INTO river_job (args, kind, max_attempts, queue, state, finalized_at)
		VALUES ('{}', 'double', 25, 'default', 'completed', now()) RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestTaskListUsesIndexes checks that each filter of GET /v1/tasks is
// served by an index, on a table large enough for the planner to care.
func TestTaskListUsesIndexes(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	_, err := s.pool.Exec(ctx, `
		INSERT INTO river_job (args, kind, max_attempts, queue, state, finalized_at, attempt)
		SELECT '{"value":1}', (ARRAY['double','sleep','cpu','fail'])[1 + i % 4], 25,
			CASE WHEN i % 10 = 0 THEN 'cpu' ELSE 'default' END,
			(CASE WHEN i % 2500 = 0 THEN 'cancelled' WHEN i % 50 = 0 THEN 'available' WHEN i % 97 = 0 THEN 'discarded' ELSE 'completed' END)::river_job_state,
			CASE WHEN i % 50 = 0 AND i % 2500 <> 0 THEN NULL ELSE now() END, 1
		FROM generate_series(1, 50000) AS i;
		ANALYZE river_job;`)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		params ListParams
		index  string
	}{
		{"no filter", ListParams{Limit: 50}, "river_job_pkey"},
		{"common state", ListParams{States: []string{StateCompleted}, Limit: 100}, ""},
		{"uncommon state", ListParams{States: []string{StateDiscarded}, Limit: 50}, ""},
		{"rare state", ListParams{States: []string{StateCancelled}, Limit: 50}, "river_job_prioritized_fetching_index"},
		{"rare state, next page", ListParams{States: []string{StateCancelled}, BeforeID: 25000, Limit: 50}, "river_job_prioritized_fetching_index"},
		{"uncommon state, next page", ListParams{States: []string{StateAvailable}, BeforeID: 25000, Limit: 50}, ""},
		{"kind", ListParams{Kind: "cpu", Limit: 50}, ""},
		{"rare queue", ListParams{Queue: "cpu", States: []string{StateAvailable}, Limit: 50}, ""},
		{"several states", ListParams{States: []string{StateAvailable, StateDiscarded}, Limit: 50}, ""},
		// A tenant's token (auth.Principal.Queues) adds a queue list to
		// any of the filters above.
		{"tenant", ListParams{Queues: []string{"cpu"}, Limit: 50}, ""},
		{"tenant, next page", ListParams{Queues: []string{"cpu", "other"}, BeforeID: 25000, Limit: 50}, ""},
		{"tenant, rare state", ListParams{Queues: []string{"cpu"}, States: []string{StateCancelled}, Limit: 50}, "river_job_prioritized_fetching_index"},
		{"tenant, uncommon state", ListParams{Queues: []string{"cpu", "default"}, States: []string{StateAvailable}, Limit: 50}, ""},
		{"tenant, kind", ListParams{Queues: []string{"cpu"}, Kind: "cpu", Limit: 50}, ""},
		{"tenant, queue", ListParams{Queues: []string{"cpu"}, Queue: "cpu", States: []string{StateAvailable}, Limit: 50}, ""},
	}
	for _, tt := range tests {
		plan, err := s.ExplainTaskList(ctx, tt.params, false)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(plan, "Seq Scan") {
			t.Errorf("%s: sequential scan:\n%s", tt.name, plan)
		}
		if !strings.Contains(plan, "Index") {
			t.Errorf("%s: no index used:\n%s", tt.name, plan)
		}
		if tt.index != "" && !strings.Contains(plan, tt.index) {
			t.Errorf("%s: want %s:\n%s", tt.name, tt.index, plan)
		}
		if testing.Verbose() {
			t.Logf("%s:\n%s", tt.name, plan)
		}
	}
}

func TestTaskListFiltersAndPages(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	_, err := s.pool.Exec(ctx, `
		INSERT INTO river_job (args, kind, max_attempts, queue, state)
		SELECT '{}', CASE WHEN i % 2 = 0 THEN 'double' ELSE 'sleep' END, 25, 'default',
			CASE WHEN i % 3 = 0 THEN 'scheduled' ELSE 'available' END::river_job_state
		FROM generate_series(1, 30) AS i`)
	if err != nil {
		t.Fatal(err)
	}
	var seen []int64
	var before int64
	for {
		page, err := s.TaskList(ctx, ListParams{Kind: "double", BeforeID: before, Limit: 4})
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range page {
			if task.Kind != "double" {
				t.Fatalf("kind filter let %q through", task.Kind)
			}
			if len(seen) > 0 && task.ID >= seen[len(seen)-1] {
				t.Fatalf("not newest first: %d after %d", task.ID, seen[len(seen)-1])
			}
			seen = append(seen, task.ID)
		}
		if len(page) < 4 {
			break
		}
		before = page[len(page)-1].ID
	}
	if len(seen) != 15 {
		t.Errorf("paged through %d double tasks, want 15", len(seen))
	}
	both, err := s.TaskList(ctx, ListParams{States: []string{StateScheduled, StateAvailable}, Limit: 100})
	if err != nil || len(both) != 30 {
		t.Errorf("two states: %d tasks, %v; want 30", len(both), err)
	}
	sched, err := s.TaskList(ctx, ListParams{States: []string{StateScheduled}, Limit: 100})
	if err != nil || len(sched) != 10 {
		t.Errorf("scheduled: %d tasks, %v; want 10", len(sched), err)
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.Task(ctx, 42); !errors.Is(err, ErrNotFound) {
		t.Errorf("Task: %v", err)
	}
	if _, err := s.Batch(ctx, 42); !errors.Is(err, ErrNotFound) {
		t.Errorf("Batch: %v", err)
	}
	if _, err := s.IdempotencyKey(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("IdempotencyKey: %v", err)
	}
	if err := s.ProcessHeartbeat(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ProcessHeartbeat: %v", err)
	}
}

// Deleting a task (as River's cleaner does) takes its attempts and
// idempotency key with it; a batch goes once none of its tasks is left.
func TestTaskDeletionCascades(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	id := insertFinished(t, s)
	if err := s.AttemptInsertMany(ctx, []Attempt{{TaskID: id, Attempt: 1, Worker: "w", Outcome: OutcomeCompleted}}); err != nil {
		t.Fatal(err)
	}
	err := s.WithTx(ctx, func(tx pgx.Tx) error {
		bid, err := s.BatchNextIDTx(ctx, tx)
		if err != nil {
			return err
		}
		b, err := s.BatchInsertTx(ctx, tx, bid, []int64{id}, nil)
		if err != nil {
			return err
		}
		if ok, err := s.IdempotencyKeyInsertTx(ctx, tx, IdempotencyKey{Key: "k", RequestHash: []byte{1}, TaskID: id}); err != nil || !ok {
			return fmt.Errorf("key: %v %v", ok, err)
		}
		_, err = s.IdempotencyKeyInsertTx(ctx, tx, IdempotencyKey{Key: "kb", RequestHash: []byte{1}, BatchID: b.ID})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM river_job WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	count := func(sql string) int {
		var n int
		if err := s.pool.QueryRow(ctx, sql).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(`SELECT count(*) FROM task_attempts`); n != 0 {
		t.Errorf("attempts left: %d", n)
	}
	if n := count(`SELECT count(*) FROM idempotency_keys WHERE task_id IS NOT NULL`); n != 0 {
		t.Errorf("task keys left: %d", n)
	}
	if n, err := s.BatchDeleteEmpty(ctx, 0, 10); err != nil || n != 1 {
		t.Errorf("BatchDeleteEmpty = %d, %v; want 1", n, err)
	}
	if n := count(`SELECT count(*) FROM idempotency_keys`); n != 0 {
		t.Errorf("batch keys left: %d", n)
	}
	// An attempt whose task may be gone (a retried write, an attempt the
	// watchdog cancelled) is written with AttemptInsertMissing, which
	// drops the attempts of deleted tasks, not an error: task_attempts has
	// no foreign key to keep them out.
	if err := s.AttemptInsertMissing(ctx, []Attempt{{TaskID: id, Attempt: 2, Worker: "w", Outcome: OutcomeCompleted}}); err != nil {
		t.Errorf("attempt of deleted task: %v", err)
	}
	if n := count(`SELECT count(*) FROM task_attempts`); n != 0 {
		t.Errorf("attempts of a deleted task written: %d", n)
	}

	// One DELETE of many tasks (as the cleaner's) takes exactly their
	// attempts, and TRUNCATE … CASCADE empties task_attempts.
	var ids []int64
	for range 3 {
		id := insertFinished(t, s)
		ids = append(ids, id)
		if err := s.AttemptInsertMany(ctx, []Attempt{{TaskID: id, Attempt: 1, Worker: "w", Outcome: OutcomeFailed}, {TaskID: id, Attempt: 2, Worker: "w", Outcome: OutcomeCompleted}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM river_job WHERE id = ANY($1)`, ids[:2]); err != nil {
		t.Fatal(err)
	}
	if n := count(fmt.Sprintf(`SELECT count(*) FROM task_attempts WHERE task_id = %d`, ids[2])); n != 2 {
		t.Errorf("attempts of the task left alone: %d, want 2", n)
	}
	if n := count(`SELECT count(*) FROM task_attempts`); n != 2 {
		t.Errorf("attempts after deleting two of three tasks: %d, want 2", n)
	}
	if _, err := s.pool.Exec(ctx, `TRUNCATE river_job CASCADE`); err != nil {
		t.Fatal(err)
	}
	if n := count(`SELECT count(*) FROM task_attempts`); n != 0 {
		t.Errorf("attempts after TRUNCATE river_job CASCADE: %d", n)
	}
}

// TestRescueLostRecordsEachAttemptOnce reproduces what kill -9 leaves
// behind, without killing anything: running tasks of a process whose
// heartbeat went stale, some with the row of their current attempt already
// written (the attempt middleware writes it before River can save the
// task's new state). Each attempt must end up with exactly one row, and the
// task must be available with River's attempt counter unchanged, so that
// the re-run is the next attempt.
func TestRescueLostRecordsEachAttemptOnce(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := s.pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if err := s.ProcessRegister(ctx, "dead-1", "elsewhere", 1); err != nil {
		t.Fatal(err)
	}
	exec(`UPDATE taskd_processes SET heartbeat_at = now() - interval '1 minute' WHERE client_id = 'dead-1'`)

	const runsAgain = "so the task runs again"
	tests := []struct {
		name        string
		maxAttempts int
		// earlier are rows of earlier attempts that had the same number (River
		// gives the number of an interrupted attempt back); each started a
		// minute before the current one.
		earlier []string
		// recorded is the outcome of the current attempt's row, written
		// before the process died; "" for none.
		recorded string
		want     []string // outcomes of the task's rows afterwards
		// wantError is in the error of the current attempt's row, and
		// wantRiverError in the error River records for it.
		wantError, wantRiverError string
		wantState                 string
	}{
		{
			name: "completed, not saved", maxAttempts: 25, recorded: OutcomeCompleted,
			want:      []string{OutcomeCompletedUnsaved},
			wantError: "the work completed but process dead-1 died before its completion (and result) was saved, " + runsAgain,
			wantRiverError: "completed_unsaved: the work completed but process dead-1 died before its completion (and result) was saved, " +
				runsAgain,
			wantState: StateAvailable,
		},
		{
			name: "completed on the last attempt", maxAttempts: 1, recorded: OutcomeCompleted,
			want:           []string{OutcomeCompletedUnsaved},
			wantError:      "the task had no attempts left and was discarded",
			wantRiverError: "completed_unsaved: the work completed",
			wantState:      StateDiscarded,
		},
		{
			name: "nothing recorded", maxAttempts: 25,
			want:           []string{OutcomeLost},
			wantError:      "process dead-1 stopped heartbeating while running this attempt",
			wantRiverError: "lost: process dead-1 stopped heartbeating while running this attempt",
			wantState:      StateAvailable,
		},
		{
			name: "failed, not saved", maxAttempts: 25, recorded: OutcomeFailed,
			want:           []string{OutcomeFailed},
			wantError:      "boom",
			wantRiverError: "failed: boom (process dead-1 died before River saved this outcome)",
			wantState:      StateAvailable,
		},
		{
			name: "an earlier attempt with the same number", maxAttempts: 25, earlier: []string{OutcomeInterrupted},
			want:           []string{OutcomeInterrupted, OutcomeLost},
			wantError:      "stopped heartbeating",
			wantRiverError: "lost: process dead-1",
			wantState:      StateAvailable,
		},
	}
	ids := make([]int64, len(tests))
	for i, tt := range tests {
		var attemptedAt time.Time
		err := s.pool.QueryRow(ctx, `
			INSERT INTO river_job (args, kind, max_attempts, queue, state, attempt, attempted_at, attempted_by)
			VALUES ('{"value":1}', 'double', $1, 'default', 'running', 1, now() - interval '30 seconds', ARRAY['dead-1'])
			RETURNING id, attempted_at`, tt.maxAttempts).Scan(&ids[i], &attemptedAt)
		if err != nil {
			t.Fatal(err)
		}
		var rows []Attempt
		for _, outcome := range tt.earlier {
			started := attemptedAt.Add(-time.Minute)
			finished := started.Add(time.Second)
			rows = append(rows, Attempt{TaskID: ids[i], Attempt: 1, Worker: "dead-1", StartedAt: started, FinishedAt: &finished, Outcome: outcome})
		}
		if tt.recorded != "" {
			// As the attempt middleware does: StartedAt is River's
			// attempted_at as River read it back.
			finished := attemptedAt.Add(time.Second)
			a := Attempt{TaskID: ids[i], Attempt: 1, Worker: "dead-1", StartedAt: attemptedAt, FinishedAt: &finished, Outcome: tt.recorded}
			if tt.recorded == OutcomeFailed {
				a.Error = "boom"
			}
			rows = append(rows, a)
		}
		if len(rows) > 0 {
			if err := s.AttemptInsertMany(ctx, rows); err != nil {
				t.Fatal(err)
			}
		}
	}

	rescued, err := s.RescueLost(ctx, 5*time.Second, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(rescued) != len(tests) {
		t.Fatalf("rescued %+v, want the %d tasks", rescued, len(tests))
	}
	for i, tt := range tests {
		id := ids[i]
		if rescued[i].TaskID != id || rescued[i].Outcome != tt.want[len(tt.want)-1] {
			t.Errorf("%s: rescued %+v, want task %d with outcome %s", tt.name, rescued[i], id, tt.want[len(tt.want)-1])
		}
		rows, err := s.pool.Query(ctx, `SELECT attempt, outcome, coalesce(error, '') FROM task_attempts WHERE task_id = $1 ORDER BY id`, id)
		if err != nil {
			t.Fatal(err)
		}
		var outcomes []string
		var lastError string
		for rows.Next() {
			var (
				attempt int
				outcome string
			)
			if err := rows.Scan(&attempt, &outcome, &lastError); err != nil {
				t.Fatal(err)
			}
			if attempt != 1 {
				t.Errorf("%s: a row for attempt %d, want only attempt 1", tt.name, attempt)
			}
			outcomes = append(outcomes, outcome)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(outcomes, tt.want) {
			t.Errorf("%s: outcomes = %v, want %v", tt.name, outcomes, tt.want)
		}
		if !strings.Contains(lastError, tt.wantError) {
			t.Errorf("%s: attempt error = %q, want it to contain %q", tt.name, lastError, tt.wantError)
		}

		var (
			state      string
			attempt    int
			riverError string
			nErrors    int
		)
		err = s.pool.QueryRow(ctx, `SELECT state, attempt, cardinality(errors), errors[cardinality(errors)]->>'error' FROM river_job WHERE id = $1`, id).
			Scan(&state, &attempt, &nErrors, &riverError)
		if err != nil {
			t.Fatal(err)
		}
		if state != tt.wantState || attempt != 1 || nErrors != 1 {
			t.Errorf("%s: state %s, attempt %d, %d errors; want %s, 1, 1", tt.name, state, attempt, nErrors, tt.wantState)
		}
		if !strings.Contains(riverError, tt.wantRiverError) {
			t.Errorf("%s: River error = %q, want it to contain %q", tt.name, riverError, tt.wantRiverError)
		}

		if state != StateAvailable {
			continue
		}
		// The re-run, fetched as River fetches, is attempt 2.
		exec(`UPDATE river_job SET state = 'running', attempt = attempt + 1, attempted_at = now(), attempted_by = attempted_by || 'alive-1'::text WHERE id = $1`, id)
		task, err := s.Task(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if last := task.Attempts[len(task.Attempts)-1]; last.Outcome != OutcomeRunning || last.Attempt != 2 {
			t.Errorf("%s: attempt in progress = %+v, want attempt 2 running", tt.name, last)
		}
	}

	// Duplicate executions are countable from task_attempts alone.
	var unsaved int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM task_attempts WHERE outcome = 'completed_unsaved'`).Scan(&unsaved); err != nil {
		t.Fatal(err)
	}
	if unsaved != 2 {
		t.Errorf("completed_unsaved rows = %d, want 2", unsaved)
	}
}

// TestTaskShowsAttemptInProgressOnce: between an attempt's row being
// written and River saving the task's new state, the task is still
// running; its attempt must not also be listed as in progress.
func TestTaskShowsAttemptInProgressOnce(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	var id int64
	err := s.pool.QueryRow(ctx, `INSERT INTO river_job (args, kind, max_attempts, queue, state, attempt, attempted_at, attempted_by)
		VALUES ('{}', 'fail', 25, 'default', 'running', 1, now(), '{w}') RETURNING id`).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	task, err := s.Task(ctx, id)
	if err != nil || len(task.Attempts) != 1 || task.Attempts[0].Outcome != OutcomeRunning {
		t.Fatalf("running task without a row: %+v %v, want one attempt in progress", task, err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO task_attempts (task_id, attempt, worker, started_at, finished_at, outcome, error, duration_ms)
		SELECT id, 1, 'w', attempted_at, now(), 'failed', 'boom', 1 FROM river_job WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	task, err = s.Task(ctx, id)
	if err != nil || len(task.Attempts) != 1 || task.Attempts[0].Outcome != OutcomeFailed {
		t.Fatalf("running task whose attempt is written: %+v %v, want the one failed attempt", task.Attempts, err)
	}
}

// TestTaskListQueues checks the tenant filter of lists (ListParams.Queues)
// and TaskQueue, which the checks of single tasks use.
func TestTaskListQueues(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	_, err := s.pool.Exec(ctx, `
		INSERT INTO river_job (args, kind, max_attempts, queue, state)
		SELECT '{}', 'double', 25, (ARRAY['a','b','c'])[1 + i % 3], 'available'
		FROM generate_series(1, 30) AS i`)
	if err != nil {
		t.Fatal(err)
	}
	count := func(p ListParams) map[string]int {
		t.Helper()
		p.Limit = 100
		list, err := s.TaskList(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, task := range list {
			n[task.Queue]++
			q, err := s.TaskQueue(ctx, task.ID)
			if err != nil || q != task.Queue {
				t.Errorf("TaskQueue(%d) = %q, %v; want %q", task.ID, q, err, task.Queue)
			}
		}
		return n
	}
	if n := count(ListParams{Queues: []string{"a", "c"}}); n["a"] != 10 || n["c"] != 10 || len(n) != 2 {
		t.Errorf("queues a, c: %v", n)
	}
	if n := count(ListParams{Queues: []string{"a"}, Queue: "b"}); len(n) != 0 {
		t.Errorf("queues a, filter b: %v, want none", n)
	}
	if n := count(ListParams{Queues: []string{}}); len(n) != 0 {
		t.Errorf("empty queue list: %v, want none", n)
	}
	if n := count(ListParams{}); len(n) != 3 {
		t.Errorf("no queue list: %v, want all three queues", n)
	}
	if _, err := s.TaskQueue(ctx, 1<<40); !errors.Is(err, ErrNotFound) {
		t.Errorf("TaskQueue of a missing task: %v, want ErrNotFound", err)
	}
}

// TestRawTask checks that RawTask reads the row Task maps, and
// ErrNotFound for a task that is not there.
func TestRawTask(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	var id int64
	err := s.pool.QueryRow(ctx, `
		INSERT INTO river_job (args, attempt, attempted_at, attempted_by, finalized_at, kind, max_attempts, metadata, queue, state, tags)
		VALUES ('{"value":21}', 1, now(), ARRAY['w1'], now(), 'double', 25, '{"output":{"result":42},"batch_id":7}', 'default', 'completed', ARRAY['abc'])
		RETURNING id`).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO task_attempts (task_id, attempt, worker, started_at, finished_at, outcome, duration_ms)
		VALUES ($1, 1, 'w1', now(), now(), 'completed', 3)`, id); err != nil {
		t.Fatal(err)
	}
	raw, err := s.RawTask(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	task, err := s.Task(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if raw.ID != task.ID || raw.Kind != task.Kind || raw.State != task.State || string(raw.Args) != string(task.Args) ||
		raw.BatchID != task.BatchID || string(raw.Output) != string(task.Result) || !slices.Equal(raw.Tags, task.Tags) {
		t.Errorf("RawTask = %+v, Task = %+v", raw, task)
	}
	var attempts []map[string]any
	if err := json.Unmarshal(raw.Attempts, &attempts); err != nil || len(attempts) != 1 || attempts[0]["worker"] != "w1" {
		t.Errorf("RawTask attempts = %s (%v), want the one attempt", raw.Attempts, err)
	}
	if _, err := s.RawTask(ctx, id+1); !errors.Is(err, ErrNotFound) {
		t.Errorf("RawTask of a missing task: %v, want ErrNotFound", err)
	}
}

// A heartbeat never moves heartbeat_at backwards: an older beat that
// commits after a newer one (beats overlap) leaves the newer timestamp.
func TestProcessHeartbeatMonotonic(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	if err := s.ProcessRegister(ctx, "p1", "host", 1); err != nil {
		t.Fatal(err)
	}
	// A newer beat, as one that committed first would have left it.
	var ahead time.Time
	if err := s.Pool().QueryRow(ctx,
		"UPDATE taskd_processes SET heartbeat_at = now() + interval '1 hour' WHERE client_id = 'p1' RETURNING heartbeat_at").Scan(&ahead); err != nil {
		t.Fatal(err)
	}
	if err := s.ProcessHeartbeat(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	if err := s.ProcessRegister(ctx, "p1", "host", 1); err != nil {
		t.Fatal(err)
	}
	var at time.Time
	if err := s.Pool().QueryRow(ctx, "SELECT heartbeat_at FROM taskd_processes WHERE client_id = 'p1'").Scan(&at); err != nil {
		t.Fatal(err)
	}
	if !at.Equal(ahead) {
		t.Errorf("heartbeat_at = %v after an older beat; want it kept at %v", at, ahead)
	}
}

// A checked attempt insert that runs while a delete of its task is
// uncommitted waits for the delete (it locks the job row, as the foreign
// key's check did) and then writes nothing: without the lock it would see
// the row, write the attempt after the delete's trigger ran, and leave it
// behind.
func TestAttemptInsertCheckedWaitsForDelete(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	id := insertFinished(t, s)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `DELETE FROM river_job WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- s.AttemptInsertMissing(ctx, []Attempt{{TaskID: id, Attempt: 1, Worker: "w", Outcome: OutcomeCompleted}})
	}()
	waitForLock(t, s, "%INSERT INTO task_attempts%", "the checked insert, while the delete of its task was uncommitted,", done)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := attemptsOf(t, s, id); n != 0 {
		t.Errorf("%d attempts of the deleted task left", n)
	}
}

// waitForLock waits until a statement of s's database whose text is LIKE
// pattern waits for a lock. It fails t when returned, the statement's
// outcome, comes first (what is the statement, for the message), or after
// 10 s.
func waitForLock(t *testing.T, s *Store, pattern, what string, returned <-chan error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1`, pattern).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			return
		}
		select {
		case err := <-returned:
			t.Fatalf("%s returned (%v); want it to wait for the lock", what, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s neither waited for the lock nor returned within 10s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
}

// attemptsOf counts the attempt rows of task id.
func attemptsOf(t *testing.T, s *Store, id int64) int {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM task_attempts WHERE task_id = $1`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// The other order: a delete of a task that runs while a checked insert of
// its attempt is uncommitted waits for the insert (which holds the job
// row's key share lock), and its trigger then deletes the attempt.
func TestDeleteWaitsForCheckedInsert(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	id := insertFinished(t, s)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	// The statement AttemptInsertMissing runs, in a transaction left open.
	rows := attemptRows([]Attempt{{TaskID: id, Attempt: 1, Worker: "w", Outcome: OutcomeCompleted}})
	n, err := s.q.WithTx(tx).AttemptInsertChecked(ctx, checkedParams(rows))
	if err != nil || n != 1 {
		t.Fatalf("checked insert = %d, %v; want 1 row", n, err)
	}
	deleted := make(chan error, 1)
	go func() {
		_, err := s.pool.Exec(ctx, `DELETE FROM river_job WHERE id = $1`, id)
		deleted <- err
	}()
	waitForLock(t, s, "DELETE FROM river_job%", "the delete, while the checked insert of its task's attempt was uncommitted,", deleted)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	if left := attemptsOf(t, s, id); left != 0 {
		t.Errorf("%d attempts of the deleted task left", left)
	}
}
