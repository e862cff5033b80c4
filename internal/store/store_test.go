package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskd/taskd/internal/pgtest"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return New(pool)
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
	var id int64
	if err := s.pool.QueryRow(ctx, `INSERT INTO river_job (args, kind, max_attempts, queue, state, finalized_at) VALUES ('{}', 'double', 25, 'default', 'completed', now()) RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if err := s.AttemptInsertMany(ctx, []Attempt{{TaskID: id, Attempt: 1, Worker: "w", Outcome: OutcomeCompleted}}); err != nil {
		t.Fatal(err)
	}
	err := s.WithTx(ctx, func(tx pgx.Tx) error {
		b, err := s.BatchInsertTx(ctx, tx, []int64{id})
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
	// An attempt of a task deleted before its batch was written is dropped,
	// not an error.
	if err := s.AttemptInsertMany(ctx, []Attempt{{TaskID: id, Attempt: 2, Worker: "w", Outcome: OutcomeCompleted}}); err != nil {
		t.Errorf("attempt of deleted task: %v", err)
	}
}
