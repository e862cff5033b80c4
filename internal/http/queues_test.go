package http_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/store"
)

func (b *testBundle) queue(t *testing.T, name string) client.Queue {
	t.Helper()
	r := b.get(t, "/v1/queues")
	wantStatus(t, r, http.StatusOK)
	var l client.QueueList
	decode(t, r, &l)
	for _, q := range l.Queues {
		if q.Name == name {
			return q
		}
	}
	t.Fatalf("queue %q not in %+v", name, l.Queues)
	return client.Queue{}
}

// TestQueues: GET /v1/queues shows each queue's unfinished tasks, and a
// pause holds new tasks back until the resume.
func TestQueues(t *testing.T) {
	t.Parallel()
	b := setupRunning(t)
	// River records a queue once its producer has run.
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := b.post(t, "/v1/queues/default/pause", "")
		if r.Status == http.StatusOK {
			var q client.Queue
			decode(t, r, &q)
			if !q.Paused || q.Workers == 0 {
				t.Fatalf("paused queue: %+v", q)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pausing the default queue: %d %s", r.Status, r.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// River hands the pause to every process's producers by notification,
	// so it takes effect a moment after the answer: a task submitted in
	// that moment may still run. Submit until one stays available.
	var task apiTask
	for tries := 0; ; tries++ {
		task = b.createTask(t, `{"kind":"double","args":{"value":1}}`)
		held := true
		until := time.Now().Add(time.Second)
		for time.Now().Before(until) {
			if b.getTask(t, task.ID).State != "available" {
				held = false
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if held {
			break
		}
		if tries == 20 {
			t.Fatal("tasks of the paused queue keep running")
		}
	}
	b.createTask(t, `{"kind":"sleep","args":{"ms":1000},"delay":"1h"}`)
	// Paused: the task stays available, and its age shows.
	q := b.waitQueue(t, "default", func(q client.Queue) bool {
		return q.Counts["available"] == 1 && q.OldestAvailableAgeSeconds != nil && *q.OldestAvailableAgeSeconds > 0.2
	})
	if !q.Paused || q.Counts["scheduled"] != 1 {
		t.Fatalf("paused queue: %+v", q)
	}
	if got := b.getTask(t, task.ID); got.State != "available" {
		t.Fatalf("a task of a paused queue is %s", got.State)
	}
	r := b.post(t, "/v1/queues/default/resume", "")
	wantStatus(t, r, http.StatusOK)
	b.waitState(t, task.ID, "completed", 20*time.Second)
	q = b.queue(t, "default")
	if q.Paused || q.Counts["available"] != 0 || q.OldestAvailableAgeSeconds != nil {
		t.Fatalf("resumed queue: %+v", q)
	}
	// River reads "*" as every queue: not a name here.
	wantStatus(t, b.post(t, "/v1/queues/%2A/pause", ""), http.StatusNotFound)
	wantStatus(t, b.post(t, "/v1/queues/*/pause", ""), http.StatusNotFound)
	if q := b.queue(t, "default"); q.Paused {
		t.Fatal("pausing \"*\" paused the default queue")
	}
	wantStatus(t, b.post(t, "/v1/queues/nope/pause", ""), http.StatusNotFound)
	wantStatus(t, b.post(t, "/v1/queues/nope/resume", ""), http.StatusNotFound)
}

// TestPauseUnworkedQueue: a queue no process works, as an external kind's
// is, can be paused once it holds a task (it was a 404: River keeps no row
// for it), and its pause outlives River's queue cleaner.
func TestPauseUnworkedQueue(t *testing.T) {
	t.Parallel()
	b := setupRunning(t)
	ctx := context.Background()
	wantStatus(t, b.post(t, "/v1/queues/media2/pause", ""), http.StatusNotFound)
	if _, err := b.pool.Exec(ctx, `INSERT INTO river_job (args, kind, max_attempts, queue, state) VALUES ('{}', 'transcode', 3, 'media2', 'available')`); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, b.post(t, "/v1/queues/media2/pause", ""), http.StatusOK)
	if q := b.queue(t, "media2"); !q.Paused {
		t.Fatalf("paused unworked queue: %+v", q)
	}
	wantStatus(t, b.post(t, "/v1/queues/media2/pause", ""), http.StatusOK) // twice is once

	// A day without updates would have River's cleaner drop the row, and
	// the pause with it; taskd's maintenance keeps paused rows.
	if _, err := b.pool.Exec(ctx, `UPDATE river_queue SET updated_at = now() - interval '2 days' WHERE name IN ('media2', 'default')`); err != nil {
		t.Fatal(err)
	}
	if n, err := store.New(b.pool).QueuePausedKeep(ctx); err != nil || n != 1 {
		t.Fatalf("QueuePausedKeep = %d, %v; want 1 (the paused queue only)", n, err)
	}
	var fresh bool
	if err := b.pool.QueryRow(ctx, `SELECT updated_at > now() - interval '1 minute' FROM river_queue WHERE name = 'media2'`).Scan(&fresh); err != nil || !fresh {
		t.Fatalf("the paused queue's row was not kept: %v", err)
	}

	wantStatus(t, b.post(t, "/v1/queues/media2/resume", ""), http.StatusOK)
	if q := b.queue(t, "media2"); q.Paused {
		t.Fatalf("resumed unworked queue: %+v", q)
	}
}

func (b *testBundle) waitQueue(t *testing.T, name string, cond func(client.Queue) bool) client.Queue {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		q := b.queue(t, name)
		if cond(q) {
			return q
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %q never matched: %+v", name, q)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
