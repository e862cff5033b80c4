package http_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// waitThenTask polls GET /v1/batches/{id} until then_task_id is set.
func (b *testBundle) waitThenTask(t testing.TB, id int64, timeout time.Duration) apiBatch {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := b.get(t, "/v1/batches/"+strconv.FormatInt(id, 10))
		wantStatus(t, r, http.StatusOK)
		var batch apiBatch
		decode(t, r, &batch)
		if batch.ThenTaskID != nil || batch.ThenError != nil {
			return batch
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch %d: no callback after %s: %s", id, timeout, r)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// callbacks counts the tasks whose metadata names batch id as theirs.
func (b *testBundle) callbacks(t testing.TB, id int64) int {
	t.Helper()
	var n int
	err := b.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM river_job WHERE metadata ->> 'after_batch' = $1::text`, strconv.FormatInt(id, 10)).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBatchThen submits a batch with a callback: GET /v1/batches/{id}
// shows then_task_id once the batch is done, and the callback task shows
// after_batch; replaying the request with its Idempotency-Key, before and
// after the callback, makes no second one.
func TestBatchThen(t *testing.T) {
	t.Parallel()
	b := setupRunning(t)
	body := `{"tasks":[{"kind":"double","args":{"value":1}},{"kind":"sleep","args":{"ms":300}}],
		"then":{"kind":"double","args":{"value":21},"tags":["after_batch"],"priority":2}}`
	const key = "batch-with-then"

	r := b.post(t, "/v1/batches", body, "Idempotency-Key", key)
	wantStatus(t, r, http.StatusCreated)
	var created apiBatchCreated
	decode(t, r, &created)
	path := "/v1/batches/" + strconv.FormatInt(created.ID, 10)

	r = b.get(t, path)
	wantStatus(t, r, http.StatusOK)
	var batch apiBatch
	decode(t, r, &batch)
	if !batch.Done && (batch.ThenTaskID != nil || batch.ThenError != nil) {
		t.Fatalf("batch not done yet shows a callback: %s", r)
	}
	// A replay while the batch runs is the same batch.
	r = b.post(t, "/v1/batches", body, "Idempotency-Key", key)
	wantStatus(t, r, http.StatusOK)
	var replayed apiBatchCreated
	decode(t, r, &replayed)
	if replayed.ID != created.ID {
		t.Fatalf("replay answered batch %d, want %d", replayed.ID, created.ID)
	}

	batch = b.waitThenTask(t, created.ID, waitTimeout)
	if batch.ThenError != nil {
		t.Fatalf("then_error %q", *batch.ThenError)
	}
	cb := b.waitState(t, *batch.ThenTaskID, "completed", waitTimeout)
	if cb.AfterBatch == nil || *cb.AfterBatch != created.ID || cb.BatchID != nil || cb.Kind != "double" || cb.Priority != 2 ||
		len(cb.Tags) != 1 || cb.Tags[0] != "after_batch" {
		t.Fatalf("callback task %s: want double with after_batch %d, priority 2, tag after_batch", cb, created.ID)
	}
	wantJSON(t, "callback result", cb.Result, `{"result":42}`)
	for _, id := range created.TaskIDs {
		if task := b.getTask(t, id); task.AfterBatch != nil || task.FinishedAt == nil || cb.CreatedAt.Before(*task.FinishedAt) {
			t.Errorf("batch task %s: want after_batch null, finished before the callback was created at %s", task, cb.CreatedAt)
		}
	}
	// Lists show after_batch too.
	r = b.get(t, "/v1/tasks?kind=double&limit=10")
	wantStatus(t, r, http.StatusOK)
	var list apiList
	decode(t, r, &list)
	for _, task := range list.Tasks {
		if (task.ID == cb.ID) != (task.AfterBatch != nil && *task.AfterBatch == created.ID) {
			t.Errorf("listed task %d has after_batch %v", task.ID, task.AfterBatch)
		}
	}

	// Replayed after the callback: still one batch and one callback.
	r = b.post(t, "/v1/batches", body, "Idempotency-Key", key)
	wantStatus(t, r, http.StatusOK)
	decode(t, r, &replayed)
	if replayed.ID != created.ID {
		t.Fatalf("replay answered batch %d, want %d", replayed.ID, created.ID)
	}
	if n := b.callbacks(t, created.ID); n != 1 {
		t.Fatalf("%d callback tasks, want 1", n)
	}
	if n := b.count(t, "batches"); n != 1 {
		t.Fatalf("%d batches, want 1", n)
	}
	r = b.get(t, path)
	wantStatus(t, r, http.StatusOK)
	decode(t, r, &batch)
	if batch.ThenTaskID == nil || *batch.ThenTaskID != cb.ID {
		t.Fatalf("then_task_id %v, want %d", batch.ThenTaskID, cb.ID)
	}
}

// TestBatchWithoutThen: then_task_id stays null for a batch without a
// callback ("then": null is none), and no task names it.
func TestBatchWithoutThen(t *testing.T) {
	t.Parallel()
	b := setupRunning(t)
	r := b.post(t, "/v1/batches?wait=10s", `{"tasks":[{"kind":"double","args":{"value":1}}],"then":null}`)
	wantStatus(t, r, http.StatusCreated)
	var batch apiBatch
	decode(t, r, &batch)
	if !batch.Done || batch.ThenTaskID != nil || batch.ThenError != nil {
		t.Fatalf("batch %+v: want done, without a callback", batch)
	}
	if n := b.callbacks(t, batch.ID); n != 0 {
		t.Fatalf("%d callback tasks, want none", n)
	}
}
