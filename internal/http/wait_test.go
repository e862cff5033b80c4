package http_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/taskd/taskd/client"
)

// TestWaitForTask: ?wait= holds the answer until the task is final, or
// the wait ends, and answers with the state as it is then.
func TestWaitForTask(t *testing.T) {
	t.Parallel()
	b := setupRunning(t)

	// POST /v1/tasks?wait= answers 201 with the finished task.
	r := b.post(t, "/v1/tasks?wait=30s", `{"kind":"sleep","args":{"ms":200}}`)
	wantStatus(t, r, http.StatusCreated)
	var task client.Task
	decode(t, r, &task)
	if task.State != "completed" || string(task.Result) != `{"slept_ms":200}` {
		t.Fatalf("POST ?wait=30s answered %s %s, want completed", task.State, task.Result)
	}

	// GET ?wait= on a task that takes longer than the wait: the state as
	// it is when the wait ends.
	long := b.createTask(t, `{"kind":"sleep","args":{"ms":60000}}`)
	r = b.get(t, fmt.Sprintf("/v1/tasks/%d?wait=300ms", long.ID))
	wantStatus(t, r, http.StatusOK)
	decode(t, r, &task)
	if task.State == "completed" {
		t.Fatalf("a 60 s task completed within a 300 ms wait: %+v", task)
	}

	// GET ?wait= released by the task's cancellation (a final state).
	done := make(chan *response, 1)
	go func() { done <- b.get(t, fmt.Sprintf("/v1/tasks/%d?wait=60s", long.ID)) }()
	wantStatus(t, b.post(t, fmt.Sprintf("/v1/tasks/%d/cancel", long.ID), ""), http.StatusOK)
	r = <-done
	wantStatus(t, r, http.StatusOK)
	decode(t, r, &task)
	if task.State != "cancelled" {
		t.Fatalf("GET ?wait=60s after a cancel answered %s, want cancelled", task.State)
	}

	for _, bad := range []string{"61s", "-1s", "soon", ""} {
		r := b.get(t, fmt.Sprintf("/v1/tasks/%d?wait=%s", long.ID, bad))
		wantStatus(t, r, http.StatusUnprocessableEntity)
		var p client.Problem
		decode(t, r, &p)
		if len(p.Errors) != 1 || p.Errors[0].Field != "wait" {
			t.Errorf("?wait=%s: %+v, want a problem naming wait", bad, p)
		}
	}
}

// TestWaitForBatch: POST /v1/batches?wait= is fan-out and gather in one
// request; GET /v1/batches/{id}?wait= waits for every task; a batch can be
// cancelled whole.
func TestWaitForBatch(t *testing.T) {
	t.Parallel()
	b := setupRunning(t)
	r := b.post(t, "/v1/batches?wait=30s", `{"tasks":[{"kind":"double","args":{"value":1}},{"kind":"double","args":{"value":2}},{"kind":"double","args":{"value":3}}]}`)
	wantStatus(t, r, http.StatusCreated)
	var batch client.Batch
	decode(t, r, &batch)
	if !batch.Done || len(batch.Tasks) != 3 {
		t.Fatalf("POST /v1/batches?wait=30s: %+v, want all 3 done", batch)
	}
	for i, want := range []string{`{"result":2}`, `{"result":4}`, `{"result":6}`} {
		if string(batch.Tasks[i].Result) != want {
			t.Errorf("task %d: result %s, want %s (in submission order)", i, batch.Tasks[i].Result, want)
		}
	}

	// ?wait=0s answers at once, in the batch form all the same (docs/API.md;
	// it gave the short form, ids only).
	r = b.post(t, "/v1/batches?wait=0s", `{"tasks":[{"kind":"sleep","args":{"ms":60000},"delay":"1h"}]}`)
	wantStatus(t, r, http.StatusCreated)
	var now client.Batch
	decode(t, r, &now)
	if now.Total != 1 || len(now.Tasks) != 1 || now.Done {
		t.Errorf("POST /v1/batches?wait=0s: %s, want the batch form with its one task, not done", r.Body)
	}

	r = b.post(t, "/v1/batches", `{"tasks":[{"kind":"sleep","args":{"ms":60000}},{"kind":"double","args":{"value":1}},{"kind":"sleep","args":{"ms":60000},"delay":"1h"}]}`)
	wantStatus(t, r, http.StatusCreated)
	var created client.BatchCreated
	decode(t, r, &created)
	done := make(chan *response, 1)
	go func() { done <- b.get(t, fmt.Sprintf("/v1/batches/%d?wait=60s", created.ID)) }()
	r = b.post(t, fmt.Sprintf("/v1/batches/%d/cancel", created.ID), "")
	wantStatus(t, r, http.StatusOK)
	r = <-done
	wantStatus(t, r, http.StatusOK)
	decode(t, r, &batch)
	if !batch.Done {
		t.Fatalf("GET ?wait=60s after the batch's cancel: %+v, want done", batch)
	}
	if batch.Counts["cancelled"] < 2 {
		t.Errorf("after the batch's cancel: counts %v, want the sleeps cancelled", batch.Counts)
	}
	wantStatus(t, b.post(t, "/v1/batches/999999/cancel", ""), http.StatusNotFound)
}
