package tasks_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/taskdtest"
)

func TestMain(m *testing.M) { taskdtest.Main(m) }

// TestBatchThenAcrossProcessesWithCrash runs many batches with callbacks
// on three `taskd serve` processes sharing one database, their tasks
// finishing on any of them, some failing and retried, some discarded, and
// SIGKILLs one process while they run (its running tasks are rescued by
// the others; the checks it had not made yet are lost with it). In the
// end every batch has exactly one task whose metadata names it
// (after_batch), its then_task_id points at it, it was created after the
// batch's last task finished, and it ran.
func TestBatchThenAcrossProcessesWithCrash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.NewDB(t)
	pool, err := pgxpool.New(ctx, dbURL+"&pool_max_conns=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)

	opts := taskdtest.Options{
		DatabaseURL: dbURL,
		Args:        []string{"--queues", "default=50,cpu=1"},
		// Small pools: three processes and other tests share PostgreSQL.
		// A fast heartbeat, so that the killed process's tasks are rescued
		// within seconds.
		Env: []string{"TASKD_DB_MAX_CONNS=6", "TASKD_HEARTBEAT_INTERVAL=250ms", "TASKD_RESCUE_AFTER=1s"},
	}
	procs := make([]*taskdtest.Process, 3)
	clients := make([]*client.Client, 3)
	for i := range procs {
		procs[i] = taskdtest.Start(t, opts)
		if clients[i], err = client.New(procs[i].URL, client.Config{}); err != nil {
			t.Fatal(err)
		}
	}

	const batches, perBatch = 60, 8
	for i := range batches {
		req := client.BatchRequest{Then: &client.TaskRequest{Kind: ptr("double"), Args: json.RawMessage(`{"value":` + strconv.Itoa(i) + `}`)}}
		for j := range perBatch {
			var task client.TaskRequest
			switch {
			case j == 0 && i%3 == 0: // fails once, then completes on its retry
				task = client.TaskRequest{Kind: ptr("fail"), Args: json.RawMessage(`{"times":1}`)}
			case j == 1 && i%5 == 0: // discarded at its first failure
				task = client.TaskRequest{Kind: ptr("fail"), Args: json.RawMessage(`{"times":5}`), MaxAttempts: ptr(1)}
			default:
				// 0.2 to 3 s, so that batches finish all along; the same
				// for the tasks of one batch, which several processes run,
				// so that they finish together and their processes decide
				// the batch at the same time.
				task = client.TaskRequest{Kind: ptr("sleep"), Args: json.RawMessage(`{"ms":` + strconv.Itoa(200+(i*977)%2800) + `}`)}
			}
			req.Tasks = append(req.Tasks, task)
		}
		if _, _, err := clients[i%3].SubmitBatchRequest(ctx, req, client.SubmitOptions{}); err != nil {
			t.Fatalf("submitting batch %d: %v", i, err)
		}
	}

	count := func(sql string, args ...any) int {
		t.Helper()
		var n int
		if err := pool.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor := func(what string, timeout time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s", what, timeout)
			}
			time.Sleep(50 * time.Millisecond) // polling interval
		}
	}

	// Kill one while some callbacks are in and many tasks run.
	waitFor("callbacks and running tasks", 60*time.Second, func() bool {
		return count(`SELECT count(*) FROM batches WHERE then_task_id IS NOT NULL`) >= 5 &&
			count(`SELECT count(*) FROM river_job WHERE state = 'running'`) >= 30
	})
	procs[1].Kill()
	runningAtKill := count(`SELECT count(*) FROM river_job WHERE state = 'running'`)
	decidedAtKill := count(`SELECT count(*) FROM batches WHERE then_at IS NOT NULL`)
	// It comes back: its start rechecks what was left undecided.
	procs[1].Restart()

	waitFor("every batch's callback", 90*time.Second, func() bool {
		return count(`SELECT count(*) FROM batches WHERE then_at IS NOT NULL`) == batches
	})
	rows, err := pool.Query(ctx, `
		SELECT b.id, b.then_task_id, b.then_error,
			(SELECT count(*) FROM river_job c WHERE c.metadata ->> 'after_batch' = b.id::text),
			(SELECT c.id FROM river_job c WHERE c.metadata ->> 'after_batch' = b.id::text LIMIT 1),
			(SELECT count(*) FROM river_job j WHERE j.id = ANY(b.task_ids) AND j.state NOT IN ('completed', 'cancelled', 'discarded')),
			coalesce((SELECT c.created_at FROM river_job c WHERE c.id = b.then_task_id) >=
				(SELECT max(j.finalized_at) FROM river_job j WHERE j.id = ANY(b.task_ids)), false)
		FROM batches b ORDER BY b.id`)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for rows.Next() {
		var (
			id, callbacks, unfinished int64
			thenTask, callback        *int64
			thenErr                   *string
			afterLast                 bool
		)
		if err := rows.Scan(&id, &thenTask, &thenErr, &callbacks, &callback, &unfinished, &afterLast); err != nil {
			t.Fatal(err)
		}
		seen++
		switch {
		case callbacks != 1:
			t.Errorf("batch %d has %d callback tasks, want 1", id, callbacks)
		case thenErr != nil:
			t.Errorf("batch %d: then_error %q", id, *thenErr)
		case thenTask == nil || *thenTask != *callback:
			t.Errorf("batch %d: then_task_id %v, want its callback %d", id, thenTask, *callback)
		case unfinished != 0:
			t.Errorf("batch %d has a callback but %d unfinished tasks", id, unfinished)
		case !afterLast:
			t.Errorf("batch %d: its callback was created before its last task finished", id)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if seen != batches {
		t.Fatalf("%d batches in the database, want %d", seen, batches)
	}
	if n := count(`SELECT count(*) FROM river_job WHERE metadata ? 'after_batch'`); n != batches {
		t.Errorf("%d callback tasks in all, want %d", n, batches)
	}
	if n := count(`SELECT count(*) FROM river_job WHERE metadata ? 'batch_id' AND errors IS NOT NULL AND state = 'completed'`); n == 0 {
		t.Error("no batch task was retried")
	}
	// The callbacks run like any task: each doubles its batch's index.
	waitFor("the callbacks to complete", 60*time.Second, func() bool {
		return count(`SELECT count(*) FROM river_job c JOIN batches b ON b.then_task_id = c.id
			WHERE c.state = 'completed' AND c.metadata -> 'output' = jsonb_build_object('result', 2 * (c.args ->> 'value')::int)`) == batches
	})
	rescued := count(`SELECT count(*) FROM task_attempts WHERE outcome IN ('lost', 'completed_unsaved')`)
	t.Logf("killed one process with %d tasks running in all (%d of its attempts were rescued) and %d of %d callbacks decided",
		runningAtKill, rescued, decidedAtKill, batches)
}

func ptr[T any](v T) *T { return &v }
