package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/store"
)

// waitTimeout bounds each wait for a task or batch: generous, since a
// "fail" task's retry waits out its backoff.
const waitTimeout = 20 * time.Second

// submitBatch submits a batch with callback then (nil: none).
func (b *testBundle) submitBatch(t *testing.T, tasks []TaskParams, then *TaskParams) *Submission {
	t.Helper()
	sub, err := b.tasks.SubmitBatch(context.Background(), &BatchParams{Tasks: tasks, Then: then}, nil)
	if err != nil {
		t.Fatalf("submitting batch: %v", err)
	}
	return sub
}

// task is a TaskParams of kind with args given as JSON.
func task(kind, args string) TaskParams {
	return TaskParams{Kind: &kind, Args: json.RawMessage(args)}
}

// waitThen waits until batch id's callback is decided and returns the
// batch.
func (b *testBundle) waitThen(t *testing.T, id int64, timeout time.Duration) *store.Batch {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		batch, err := b.store.Batch(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if batch.ThenTaskID != 0 || batch.ThenError != "" {
			return batch
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch %d: no callback within %s", id, timeout)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// callbacksOf returns the IDs of the tasks that are batch id's callback.
func (b *testBundle) callbacksOf(t *testing.T, id int64) []int64 {
	t.Helper()
	rows, err := b.pool.Query(context.Background(),
		`SELECT id FROM river_job WHERE metadata ->> 'after_batch' = $1::text ORDER BY id`, strconv.FormatInt(id, 10))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var tid int64
		if err := rows.Scan(&tid); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tid)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// finishBySQL makes tasks final without River, so that no process hears
// of it: what a process killed right after the final write leaves.
func (b *testBundle) finishBySQL(t *testing.T, ids []int64) {
	t.Helper()
	_, err := b.pool.Exec(context.Background(),
		`UPDATE river_job SET state = 'completed', finalized_at = now() WHERE id = ANY($1)`, ids)
	if err != nil {
		t.Fatal(err)
	}
}

// lastFinalized returns when the last of ids became final.
func (b *testBundle) lastFinalized(t *testing.T, ids []int64) time.Time {
	t.Helper()
	var at time.Time
	if err := b.pool.QueryRow(context.Background(), `SELECT max(finalized_at) FROM river_job WHERE id = ANY($1)`, ids).Scan(&at); err != nil {
		t.Fatal(err)
	}
	return at
}

// TestBatchThenAfterEveryTaskIsFinal: the callback comes once every task
// is final, whether completed, discarded or cancelled, and not while one
// still runs; it is an ordinary task that names its batch.
func TestBatchThenAfterEveryTaskIsFinal(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.start(t)
	ctx := context.Background()

	fail := task("fail", `{"times":5}`)
	fail.MaxAttempts = ptr(1)
	then := task("double", `{"value":100}`)
	then.Tags = []string{"after_all"}
	sub := b.submitBatch(t, []TaskParams{task("double", `{"value":1}`), task("sleep", `{"ms":60000}`), fail}, &then)
	done, sleeping, discarded := sub.TaskIDs[0], sub.TaskIDs[1], sub.TaskIDs[2]

	b.waitTask(t, done, waitTimeout, inState(store.StateCompleted))
	b.waitTask(t, discarded, waitTimeout, inState(store.StateDiscarded))
	b.waitTask(t, sleeping, waitTimeout, inState(store.StateRunning))
	// Two of three final: deciding now must not insert the callback.
	b.tasks.then.decide(ctx, sub.BatchID)
	if batch, err := b.store.Batch(ctx, sub.BatchID); err != nil || batch.ThenTaskID != 0 || batch.ThenError != "" {
		t.Fatalf("with a task running: batch %+v, %v; want no callback yet", batch, err)
	}
	if ids := b.callbacksOf(t, sub.BatchID); len(ids) != 0 {
		t.Fatalf("callback tasks %v inserted while a task runs", ids)
	}

	if err := b.tasks.Cancel(ctx, sleeping); err != nil {
		t.Fatal(err)
	}
	batch := b.waitThen(t, sub.BatchID, waitTimeout)
	if batch.ThenError != "" {
		t.Fatalf("then_error = %q", batch.ThenError)
	}
	if ids := b.callbacksOf(t, sub.BatchID); !slices.Equal(ids, []int64{batch.ThenTaskID}) {
		t.Fatalf("callback tasks %v, want exactly then_task_id %d", ids, batch.ThenTaskID)
	}
	cb := b.waitTask(t, batch.ThenTaskID, waitTimeout, inState(store.StateCompleted))
	if cb.Kind != "double" || compact(cb.Result) != `{"result":200}` || cb.AfterBatch != sub.BatchID || cb.BatchID != 0 ||
		!slices.Equal(cb.Tags, []string{"after_all"}) {
		t.Errorf("callback task %+v: want double of 100 with after_batch %d and tag after_all", cb, sub.BatchID)
	}
	if last := b.lastFinalized(t, sub.TaskIDs); cb.CreatedAt.Before(last) {
		t.Errorf("callback created at %s, before the batch's last task finished at %s", cb.CreatedAt, last)
	}
	states := make([]string, len(sub.TaskIDs))
	for i, id := range sub.TaskIDs {
		task, err := b.store.Task(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		states[i] = task.State
	}
	if want := []string{store.StateCompleted, store.StateCancelled, store.StateDiscarded}; !slices.Equal(states, want) {
		t.Errorf("batch task states %v, want %v", states, want)
	}
}

// TestBatchThenAfterRetry: a task that fails first and succeeds on its
// retry is not final in between; the callback comes once, after the
// retry.
func TestBatchThenAfterRetry(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.start(t)

	then := task("double", `{"value":1}`)
	sub := b.submitBatch(t, []TaskParams{task("fail", `{"times":1}`), task("double", `{"value":2}`)}, &then)
	retried := b.waitTask(t, sub.TaskIDs[0], waitTimeout, inState(store.StateCompleted))
	if len(retried.Errors) != 1 {
		t.Fatalf("the fail task has errors %+v, want one failed attempt before it completed", retried.Errors)
	}
	batch := b.waitThen(t, sub.BatchID, waitTimeout)
	cb, err := b.store.Task(context.Background(), batch.ThenTaskID)
	if err != nil {
		t.Fatal(err)
	}
	if last := b.lastFinalized(t, sub.TaskIDs); cb.CreatedAt.Before(last) {
		t.Errorf("callback created at %s, before the retried task completed at %s", cb.CreatedAt, last)
	}
	// Whatever else is still looked at (the recheck runs on), one callback.
	b.tasks.then.decide(context.Background(), sub.BatchID)
	if ids := b.callbacksOf(t, sub.BatchID); !slices.Equal(ids, []int64{batch.ThenTaskID}) {
		t.Fatalf("callback tasks %v, want exactly then_task_id %d", ids, batch.ThenTaskID)
	}
}

// TestBatchThenGuardExactlyOnce decides done batches from many goroutines
// at once, each in its own transaction, as processes would: each batch
// gets one callback.
func TestBatchThenGuardExactlyOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	const batches, deciders = 20, 8
	subs := make([]*Submission, batches)
	var all []int64
	for i := range subs {
		then := task("double", `{"value":`+strconv.Itoa(i)+`}`)
		subs[i] = b.submitBatch(t, []TaskParams{task("double", `{"value":1}`), task("double", `{"value":2}`)}, &then)
		all = append(all, subs[i].TaskIDs...)
	}
	b.finishBySQL(t, all)

	// Services of their own, as other processes would have.
	svcs := make([]*Service, deciders)
	for i := range svcs {
		svc, err := New(Config{Store: b.store, Jobs: b.jobs})
		if err != nil {
			t.Fatal(err)
		}
		svcs[i] = svc
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, svc := range svcs {
		wg.Go(func() {
			<-start
			for _, sub := range subs {
				svc.then.decide(ctx, sub.BatchID)
			}
		})
	}
	close(start)
	wg.Wait()
	for i, sub := range subs {
		batch, err := b.store.Batch(ctx, sub.BatchID)
		if err != nil {
			t.Fatal(err)
		}
		ids := b.callbacksOf(t, sub.BatchID)
		if len(ids) != 1 || batch.ThenTaskID != ids[0] {
			t.Fatalf("batch %d: callback tasks %v, then_task_id %d; want exactly one, recorded", i, ids, batch.ThenTaskID)
		}
	}
}

// TestBatchThenRecheck: batches whose last task finished unannounced (its
// process died right after the final write) get their callbacks from the
// periodic recheck, also behind more pending batches than one recheck
// looks at.
func TestBatchThenRecheck(t *testing.T) {
	t.Parallel()
	b := setupWith(t, nil, func(c *Config) { c.ThenRecheckInterval = 50 * time.Millisecond })
	// No River: nothing runs and nothing is announced.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-done
	})

	// More batches still running than one recheck reads, before the done
	// ones.
	then := task("double", `{"value":1}`)
	for range thenRecheckMax + 5 {
		b.submitBatch(t, []TaskParams{task("double", `{"value":1}`)}, &then)
	}
	var doneSubs []*Submission
	var finished []int64
	for range 3 {
		sub := b.submitBatch(t, []TaskParams{task("double", `{"value":1}`), task("double", `{"value":2}`)}, &then)
		doneSubs = append(doneSubs, sub)
		finished = append(finished, sub.TaskIDs...)
	}
	b.finishBySQL(t, finished)
	go func() {
		defer close(done)
		b.tasks.RunBatchCallbacks(ctx)
	}()
	for _, sub := range doneSubs {
		batch := b.waitThen(t, sub.BatchID, waitTimeout)
		if ids := b.callbacksOf(t, sub.BatchID); !slices.Equal(ids, []int64{batch.ThenTaskID}) {
			t.Fatalf("batch %d: callback tasks %v, then_task_id %d", sub.BatchID, ids, batch.ThenTaskID)
		}
	}
	var n int
	if err := b.pool.QueryRow(context.Background(), `SELECT count(*) FROM river_job WHERE metadata ? 'after_batch'`).Scan(&n); err != nil || n != len(doneSubs) {
		t.Fatalf("%d callback tasks (%v), want %d: only the done batches have one", n, err, len(doneSubs))
	}
}

// TestBatchThenFromEvents: a batch's callback comes as soon as this
// process announces its tasks' final states, the batch read from their
// metadata, with no recheck to fall back on; a task whose metadata holds
// its own policy beside its batch counts too. (Without the announcement
// the callback waits for the recheck, an hour here, and the test fails.)
func TestBatchThenFromEvents(t *testing.T) {
	t.Parallel()
	var (
		mu  sync.Mutex
		got jobs.Finished
	)
	b := setupWith(t, func(c *jobs.Config) {
		next := c.FinishedFunc
		c.FinishedFunc = func(f jobs.Finished) {
			mu.Lock()
			got.Tasks, got.Batches = append(got.Tasks, f.Tasks...), append(got.Batches, f.Batches...)
			mu.Unlock()
			next(f)
		}
	}, func(c *Config) { c.ThenRecheckInterval = time.Hour })
	b.start(t)

	own := task("double", `{"value":2}`)
	own.Timeout = ptr("30s")
	then := task("double", `{"value":3}`)
	sub := b.submitBatch(t, []TaskParams{task("double", `{"value":1}`), own}, &then)
	batch := b.waitThen(t, sub.BatchID, waitTimeout)
	if batch.ThenError != "" {
		t.Fatalf("then_error = %q", batch.ThenError)
	}
	if last := b.lastFinalized(t, sub.TaskIDs); batch.ThenTaskID == 0 || b.waitTask(t, batch.ThenTaskID, waitTimeout, inState(store.StateCompleted)).CreatedAt.Before(last) {
		t.Fatalf("callback task %d: want one created after the batch's last task finished at %s", batch.ThenTaskID, last)
	}
	var meta string
	if err := b.pool.QueryRow(context.Background(), `SELECT metadata::text FROM river_job WHERE id = $1`, sub.TaskIDs[1]).Scan(&meta); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(meta, `"timeout"`) {
		t.Fatalf("metadata of the task with a timeout of its own is %s; the test needs a policy beside the batch", meta)
	}
	// By batch, not by task: the tasks' own lookup would find the
	// callback too.
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(got.Batches, sub.BatchID) || slices.ContainsFunc(got.Tasks, func(id int64) bool { return slices.Contains(sub.TaskIDs, id) }) {
		t.Fatalf("handed batches %v and tasks %v; want batch %d and none of its tasks %v", got.Batches, got.Tasks, sub.BatchID, sub.TaskIDs)
	}
}

// TestBatchThenNoLongerValid: a stored callback that does not validate
// when its batch is done (the configuration changed) is recorded as
// then_error, once, and nothing is inserted; one of a kind this process
// does not know is left to a process that does.
func TestBatchThenNoLongerValid(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	then := task("double", `{"value":1}`)
	bad := b.submitBatch(t, []TaskParams{task("double", `{"value":1}`)}, &then)
	foreign := b.submitBatch(t, []TaskParams{task("double", `{"value":1}`)}, &then)
	for id, req := range map[int64]string{
		bad.BatchID:     `{"kind":"double","args":{"value":"x"},"priority":9}`,
		foreign.BatchID: `{"kind":"elsewhere","args":{}}`,
	} {
		if _, err := b.pool.Exec(ctx, `UPDATE batches SET then_request = $2 WHERE id = $1`, id, req); err != nil {
			t.Fatal(err)
		}
	}
	b.finishBySQL(t, slices.Concat(bad.TaskIDs, foreign.TaskIDs))

	b.tasks.then.decide(ctx, bad.BatchID)
	batch, err := b.store.Batch(ctx, bad.BatchID)
	if err != nil {
		t.Fatal(err)
	}
	if batch.ThenTaskID != 0 || !strings.Contains(batch.ThenError, "then.args.value") || !strings.Contains(batch.ThenError, "then.priority") {
		t.Fatalf("batch %+v: want no callback task and a then_error naming then.args.value and then.priority", batch)
	}
	b.tasks.then.decide(ctx, bad.BatchID)
	if again, err := b.store.Batch(ctx, bad.BatchID); err != nil || again.ThenError != batch.ThenError || len(b.callbacksOf(t, bad.BatchID)) != 0 {
		t.Fatalf("decided again: %+v, %v", again, err)
	}

	pending, err := b.store.BatchThenPending(ctx, 0, b.jobs.Kinds().Names(), 100)
	if err != nil || len(pending) != 0 {
		t.Fatalf("pending callbacks of known kinds: %+v, %v; want none", pending, err)
	}
	pending, err = b.store.BatchThenPending(ctx, 0, []string{"elsewhere"}, 100)
	if err != nil || len(pending) != 1 || pending[0].BatchID != foreign.BatchID || !pending[0].Done {
		t.Fatalf("pending callbacks of kind elsewhere: %+v, %v; want batch %d, done", pending, err, foreign.BatchID)
	}
}

// TestSubmitBatchThenValidation: an invalid callback fails the whole
// submission, its problems named then.<field> next to the tasks'.
func TestSubmitBatchThenValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	badTask := task("double", `{"value":1}`)
	badTask.Priority = ptr(7)
	then := task("double", `{"value":"x"}`)
	then.Queue = ptr("nowhere")
	then.Delay = ptr("soon")
	_, err := b.tasks.SubmitBatch(ctx, &BatchParams{Tasks: []TaskParams{badTask}, Then: &then}, nil)
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("err = %v, want a ValidationError", err)
	}
	var fields []string
	for _, fe := range verr.Errors {
		fields = append(fields, fe.Field)
	}
	if want := []string{"tasks[0].priority", "then.args.value", "then.queue", "then.delay"}; !slices.Equal(fields, want) {
		t.Errorf("fields %v, want %v", fields, want)
	}
	_, err = b.tasks.SubmitBatch(ctx, &BatchParams{Then: &TaskParams{}}, nil)
	if !errors.As(err, &verr) || len(verr.Errors) != 2 || verr.Errors[0].Field != "tasks" || verr.Errors[1].Field != "then.kind" {
		t.Errorf("no tasks, then without kind: %v", err)
	}
	var jobs, batches int
	if err := b.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM river_job), (SELECT count(*) FROM batches)`).Scan(&jobs, &batches); err != nil || jobs+batches != 0 {
		t.Errorf("%d tasks and %d batches inserted (%v), want none", jobs, batches, err)
	}
}

// TestBatchThenExternalCallback: a callback of an external kind is claimed
// like any task, and the claim names its batch.
func TestBatchThenExternalCallback(t *testing.T) {
	t.Parallel()
	b := setupExternal(t, nil)
	b.start(t)
	then := task("ext", `{"n":1}`)
	sub := b.submitBatch(t, []TaskParams{task("double", `{"value":1}`)}, &then)
	batch := b.waitThen(t, sub.BatchID, waitTimeout)
	got := b.claim(t, ClaimParams{Kinds: []string{"ext"}})
	if len(got) != 1 || got[0].ID != batch.ThenTaskID || got[0].AfterBatch == nil || *got[0].AfterBatch != sub.BatchID || got[0].BatchID != nil {
		t.Fatalf("claimed %+v, want the callback %d with after_batch %d", got, batch.ThenTaskID, sub.BatchID)
	}
}
