package store

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestFinishWaited: a task some request waits for (WaitMark) is completed
// with its output by FinishWaited, and announced; one nobody waits for,
// one no longer running, and one running another fetch than the attempt's
// (rescued and run again elsewhere) are left to River.
func TestFinishWaited(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	attemptedAt := map[int64]time.Time{}
	insert := func(state string) int64 {
		t.Helper()
		var id int64
		var at time.Time
		err := s.pool.QueryRow(ctx, `INSERT INTO river_job (args, kind, max_attempts, queue, state, attempt, attempted_at, finalized_at)
			VALUES ('{}', 'double', 25, 'default', $1::river_job_state, 1, now(), CASE WHEN $1::text = 'completed' THEN now() END) RETURNING id, attempted_at`, state).Scan(&id, &at)
		if err != nil {
			t.Fatal(err)
		}
		attemptedAt[id] = at
		return id
	}
	waited, unwaited, done, rerun := insert("running"), insert("running"), insert("completed"), insert("running")
	// The process running a task hears that a request now waits for it.
	marks, err := s.ListenWaited(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer marks.Close(ctx)
	finished, err := s.WaitMark(ctx, []int64{waited, done, rerun, 999_999})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(finished)
	if !slices.Equal(finished, []int64{done, 999_999}) {
		t.Fatalf("WaitMark says %v are final or gone, want %d and the missing 999999", finished, done)
	}

	mctx, mcancel := context.WithTimeout(ctx, 10*time.Second)
	defer mcancel()
	ids, err := marks.Next(mctx)
	slices.Sort(ids)
	if err != nil || !slices.Equal(ids, []int64{waited, rerun}) {
		t.Fatalf("waited-for announcement: %v, %v; want [%d %d]", ids, err, waited, rerun)
	}

	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `LISTEN "public.taskd_finished"`); err != nil {
		t.Fatal(err)
	}
	err = s.FinishWaited(ctx, []Attempt{
		{TaskID: waited, StartedAt: attemptedAt[waited], Duration: time.Second, Outcome: OutcomeCompleted, Output: []byte(`{"result":42}`)},
		{TaskID: unwaited, StartedAt: attemptedAt[unwaited], Duration: time.Second, Outcome: OutcomeCompleted, Output: []byte(`{"result":1}`)},
		{TaskID: rerun, StartedAt: attemptedAt[rerun].Add(-time.Minute), Duration: time.Second, Outcome: OutcomeCompleted, Output: []byte(`{"result":2}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[int64]string{waited: "completed", unwaited: "running", rerun: "running"} {
		var state, output string
		if err := s.pool.QueryRow(ctx, `SELECT state::text, coalesce(metadata ->> 'output', '') FROM river_job WHERE id = $1`, id).Scan(&state, &output); err != nil {
			t.Fatal(err)
		}
		if state != want || (want == "completed") != (output == `{"result": 42}`) {
			t.Errorf("task %d: %s with output %q, want %s (and the output once completed)", id, state, output, want)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := conn.Conn().WaitForNotification(wctx)
	if err != nil {
		t.Fatalf("no announcement: %v", err)
	}
	if want := strconv.FormatInt(waited, 10); n.Payload != want {
		t.Errorf("announced %q, want %q", n.Payload, want)
	}
}
