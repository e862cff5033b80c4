package jobs

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/internal/store"
)

// A fetch whose answer a lost connection ate after the server committed it
// (a PostgreSQL restart: the fault suite's R3 found it) leaves a task
// running under a live process that never ran it. That process takes it
// back within a few heartbeats, while the task it does run stays its own.
func TestRescueOrphansOfLiveProcess(t *testing.T) {
	t.Parallel()
	b := setup(t, nil) // RescueAfter 2 s, heartbeat 200 ms
	b.start(t)
	ctx := context.Background()

	held := b.submit(t, "sleep", map[string]any{"ms": 3000}, nil)
	b.waitTask(t, held, 10*time.Second, inState(store.StateRunning))

	// Scheduled far out, so that only the orphan rescue makes it
	// available; then marked as this process's fetch of 10 s ago.
	orphan := b.submit(t, "double", map[string]any{"value": 4}, func(o *river.InsertOpts) {
		o.ScheduledAt = time.Now().Add(time.Hour)
	})
	_, err := b.pool.Exec(ctx, `UPDATE river_job SET state = 'running', attempt = 1, attempted_at = now() - interval '10 seconds',
		attempted_by = ARRAY[$2::text] WHERE id = $1`, orphan, b.client.ID())
	if err != nil {
		t.Fatal(err)
	}

	task := b.waitTask(t, orphan, 10*time.Second, inState(store.StateCompleted))
	if compact(task.Result) != `{"result":8}` {
		t.Errorf("result = %s", task.Result)
	}
	if got := outcomes(b.finishedAttempts(t, orphan, 2)); !slices.Equal(got, []string{store.OutcomeLost, store.OutcomeCompleted}) {
		t.Errorf("orphan's outcomes = %v, want lost, completed", got)
	}
	if len(task.Errors) != 1 || !strings.Contains(task.Errors[0].Message, "never ran") {
		t.Errorf("orphan's errors = %+v", task.Errors)
	}

	// The task it runs, longer than RescueAfter, is not an orphan.
	task = b.waitTask(t, held, 10*time.Second, inState(store.StateCompleted))
	if task.Attempt != 1 || len(task.Errors) != 0 {
		t.Errorf("held task: attempt = %d, errors = %+v; want one clean attempt", task.Attempt, task.Errors)
	}
}

// A task counts as held from its fetch until River saved (or dropped) its
// completion, however long after its worker returned: River's completer
// retries a failed batch for as long as it takes, and a task rescued
// meanwhile would be completed by that stale completion wherever it runs
// again. Only once River stopped does time release it.
func TestHeldSetKeepsReturnedUntilSettled(t *testing.T) {
	t.Parallel()
	h := newHeldSet()
	h.hold(&rivertype.JobRow{ID: 1, Attempt: 1})
	h.release(h.hold(&rivertype.JobRow{ID: 2, Attempt: 1}))
	if got := h.orphans([]int64{1, 2, 3}, 0); !slices.Equal(got, []int64{3}) {
		t.Errorf("orphans = %v, want [3]: 1 works, 2 returned but River has not saved its completion", got)
	}
	h.settle([]int64{1, 2})
	if got := h.orphans([]int64{1, 2, 3}, time.Hour); !slices.Equal(got, []int64{2, 3}) {
		t.Errorf("orphans once saved = %v, want [2 3]: 1 works still", got)
	}

	h.release(h.hold(&rivertype.JobRow{ID: 4, Attempt: 1}))
	if got := h.orphans([]int64{4}, 0); len(got) != 0 {
		t.Errorf("orphans = %v while River runs, want none", got)
	}
	h.stopped()
	if got := h.orphans([]int64{4}, 0); !slices.Equal(got, []int64{4}) {
		t.Errorf("orphans past the grace once River stopped = %v, want [4]", got)
	}
}

// Two fetches of one task (an attempt that ignored its cancellation, and
// the task handed to this process again): the first one's return and
// completion do not release the second, which still works.
func TestHeldSetKeysByFetch(t *testing.T) {
	t.Parallel()
	h := newHeldSet()
	at1, at2 := time.Now().Add(-time.Minute), time.Now()
	first := h.hold(&rivertype.JobRow{ID: 5, Attempt: 1, AttemptedAt: &at1})
	second := h.hold(&rivertype.JobRow{ID: 5, Attempt: 2, AttemptedAt: &at2})
	h.release(first)
	h.settle([]int64{5})
	if got := h.orphans([]int64{5}, 0); len(got) != 0 {
		t.Errorf("orphans = %v, want none: the second fetch works", got)
	}
	h.release(second)
	h.settle([]int64{5})
	if got := h.orphans([]int64{5}, 0); !slices.Equal(got, []int64{5}) {
		t.Errorf("orphans = %v, want [5]", got)
	}
}
