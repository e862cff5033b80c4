package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/taskd/taskd/client"
	taskdhttp "github.com/taskd/taskd/internal/http"
	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/schedule"
	"github.com/taskd/taskd/internal/store"
	"github.com/taskd/taskd/internal/tasks"
)

// setup serves the real API, with workers, on the test's own database.
func setup(t *testing.T) *client.Client { return setupKinds(t, nil) }

// setupKinds is setup with the kinds of reg (nil: the built-in ones).
func setupKinds(t *testing.T, reg *kinds.Registry) *client.Client {
	t.Helper()
	ctx := context.Background()
	pool := pgtest.NewPool(t, 0)
	st := store.New(pool)
	jc, err := jobs.NewClient(jobs.Config{Store: st, Kinds: reg, Queues: map[string]int{"default": 5, "cpu": 1},
		FetchCooldown: time.Millisecond, FetchPollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := jc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = jc.Stop(sctx, 5*time.Second)
	})
	h, err := taskdhttp.NewServer(taskdhttp.Config{Store: st, Jobs: jc, Ready: st.Ping})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL, client.Config{HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ptr[T any](v T) *T { return &v }

func TestClient(t *testing.T) {
	t.Parallel()
	c := setup(t)
	ctx := context.Background()

	task, created, err := c.Submit(ctx, client.TaskRequest{Kind: ptr("double"), Args: json.RawMessage(`{"value":21}`)},
		client.SubmitOptions{IdempotencyKey: "k-1"})
	if err != nil || !created || task.Kind != "double" {
		t.Fatalf("Submit: %+v, %v, %v", task, created, err)
	}
	again, created, err := c.Submit(ctx, client.TaskRequest{Kind: ptr("double"), Args: json.RawMessage(`{"value":21}`)},
		client.SubmitOptions{IdempotencyKey: "k-1"})
	if err != nil || created || again.ID != task.ID {
		t.Fatalf("replayed Submit: %+v, %v, %v; want task %d, not created", again, created, err, task.ID)
	}
	deadline := time.Now().Add(20 * time.Second)
	for task.State != "completed" {
		if time.Now().After(deadline) {
			t.Fatalf("task not completed: %+v", task)
		}
		time.Sleep(20 * time.Millisecond)
		if task, err = c.Get(ctx, task.ID); err != nil {
			t.Fatal(err)
		}
	}
	if string(task.Result) != `{"result":42}` || len(task.Attempts) != 1 || task.Attempts[0].Outcome != "completed" {
		t.Errorf("completed task: result %s, attempts %+v", task.Result, task.Attempts)
	}

	_, _, err = c.Submit(ctx, client.TaskRequest{Kind: ptr("double"), Args: json.RawMessage(`{}`)}, client.SubmitOptions{})
	var e *client.Error
	if !client.IsStatus(err, http.StatusUnprocessableEntity) || !errors.As(err, &e) || len(e.Errors) == 0 || e.Errors[0].Field != "args.value" {
		t.Errorf("invalid Submit: err = %v, want a 422 naming args.value", err)
	}

	batch, created, err := c.SubmitBatch(ctx, []client.TaskRequest{
		{Kind: ptr("double"), Args: json.RawMessage(`{"value":1}`)},
		{Kind: ptr("sleep"), Args: json.RawMessage(`{"ms":60000}`), Tags: []string{"long"}},
	}, client.SubmitOptions{})
	if err != nil || !created || len(batch.TaskIDs) != 2 {
		t.Fatalf("SubmitBatch: %+v, %v, %v", batch, created, err)
	}
	b, err := c.Batch(ctx, batch.ID)
	if err != nil || b.Total != 2 {
		t.Fatalf("Batch: %+v, %v", b, err)
	}
	if w, err := c.Wait(ctx, batch.TaskIDs[0], 20*time.Second); err != nil || w.State != "completed" {
		t.Fatalf("Wait: %+v, %v", w, err)
	}
	cb, err := c.CancelBatch(ctx, batch.ID)
	if err != nil || cb.ID != batch.ID {
		t.Fatalf("CancelBatch: %+v, %v", cb, err)
	}
	if wb, err := c.WaitBatch(ctx, batch.ID, 20*time.Second); err != nil || !wb.Done || wb.Counts["cancelled"] != 1 {
		t.Fatalf("WaitBatch after CancelBatch: %+v, %v", wb, err)
	}
	list, err := c.List(ctx, client.ListParams{Kind: "double", Limit: 1})
	if err != nil || len(list.Tasks) != 1 || list.NextCursor == nil {
		t.Fatalf("List: %+v, %v", list, err)
	}
	next, err := c.List(ctx, client.ListParams{Kind: "double", Limit: 1, Cursor: *list.NextCursor})
	if err != nil || len(next.Tasks) != 1 || next.Tasks[0].ID >= list.Tasks[0].ID {
		t.Fatalf("List page 2: %+v, %v", next, err)
	}
	retried, err := c.Retry(ctx, task.ID)
	if err != nil || retried.ID != task.ID {
		t.Fatalf("Retry: %+v, %v", retried, err)
	}
	if _, err := c.Get(ctx, 424242); !client.IsStatus(err, http.StatusNotFound) {
		t.Errorf("Get of a missing task: err = %v, want 404", err)
	}
	kinds, err := c.Kinds(ctx)
	if err != nil || len(kinds) != 4 {
		t.Errorf("Kinds: %+v, %v", kinds, err)
	}
}

// TestClientPull runs an external worker's calls through the real
// handlers.
func TestClientPull(t *testing.T) {
	t.Parallel()
	ext := kinds.Kind{Name: "transcode", Queue: "media", Run: kinds.RunExternal, Declared: true,
		Decode: func(raw json.RawMessage, _ *kinds.Errors) river.JobArgs {
			return kinds.RawArgs{KindName: "transcode", Raw: raw}
		}}
	reg, err := kinds.NewRegistry(append(builtin.Kinds(), ext)...)
	if err != nil {
		t.Fatal(err)
	}
	c := setupKinds(t, reg)
	ctx := context.Background()

	batch, _, err := c.SubmitBatch(ctx, []client.TaskRequest{
		{Kind: ptr("transcode"), Args: json.RawMessage(`{"path":"a.mp4"}`)},
		{Kind: ptr("transcode"), Args: json.RawMessage(`{"path":"b.mp4"}`)},
	}, client.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	claimed, err := c.Claim(ctx, client.ClaimRequest{Max: ptr(10), Wait: ptr("1s"), Worker: ptr("w-1")})
	if err != nil || len(claimed) != 2 {
		t.Fatalf("Claim: %+v, %v; want both tasks", claimed, err)
	}
	for _, ct := range claimed {
		if ct.Kind != "transcode" || ct.Queue != "media" || ct.BatchID == nil || *ct.BatchID != batch.ID || ct.Attempt != 1 || ct.Lease == "" {
			t.Errorf("claimed task %+v, want transcode on media in batch %d", ct, batch.ID)
		}
	}
	hb, err := c.Heartbeat(ctx, claimed[0].ID, claimed[0].Lease, "2m")
	if err != nil || hb.CancelRequested || time.Until(hb.LeaseExpiresAt) < time.Minute {
		t.Fatalf("Heartbeat: %+v, %v", hb, err)
	}
	done, err := c.Complete(ctx, claimed[0].ID, claimed[0].Lease, json.RawMessage(`{"out":"a.webm"}`))
	if err != nil || done.State != "completed" || string(done.Result) != `{"out":"a.webm"}` || done.BatchID == nil {
		t.Fatalf("Complete: %+v, %v", done, err)
	}
	if _, err := c.Complete(ctx, claimed[0].ID, claimed[0].Lease, nil); !client.IsStatus(err, http.StatusConflict) {
		t.Errorf("second Complete: err = %v, want 409", err)
	}
	failed, err := c.Fail(ctx, claimed[1].ID, claimed[1].Lease, "corrupt input", client.FailRequest{Permanent: ptr(true)})
	if err != nil || failed.State != "discarded" {
		t.Fatalf("Fail: %+v, %v", failed, err)
	}
	var e *client.Error
	_, err = c.Claim(ctx, client.ClaimRequest{Kinds: []string{"double"}})
	if !client.IsStatus(err, http.StatusUnprocessableEntity) || !errors.As(err, &e) || e.Errors[0].Field != "kinds[0]" {
		t.Errorf("Claim of a built-in kind: err = %v, want a 422 naming kinds[0]", err)
	}
	empty, err := c.Claim(ctx, client.ClaimRequest{Wait: ptr("0s")})
	if err != nil || len(empty) != 0 {
		t.Errorf("Claim with nothing ready: %+v, %v", empty, err)
	}
}

func TestNewRefusesBadURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "localhost:8080", "ftp://x", "http://"} {
		if _, err := client.New(u, client.Config{}); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}

// TestClientSchedules lists the schedules of a server that has one (its
// loop not started: no task yet) and of one that has none.
func TestClientSchedules(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if list, err := setup(t).Schedules(ctx); err != nil || len(list) != 0 {
		t.Fatalf("Schedules without any: %+v, %v", list, err)
	}

	pool := pgtest.NewPool(t, 0)
	st := store.New(pool)
	jc, err := jobs.NewClient(jobs.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := schedule.ParseCron("*/5 * * * *")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := tasks.New(tasks.Config{Store: st, Jobs: jc, Schedules: []tasks.Schedule{
		{Name: "every-five", Spec: spec, Task: tasks.TaskParams{Kind: ptr("sleep"), Args: json.RawMessage(`{"ms": 1}`)}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	h, err := taskdhttp.NewServer(taskdhttp.Config{Store: st, Jobs: jc, Tasks: svc, Ready: st.Ping})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL, client.Config{HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	list, err := c.Schedules(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("Schedules: %+v, %v", list, err)
	}
	s := list[0]
	if s.Name != "every-five" || s.Spec.Cron != "*/5 * * * *" || s.Spec.Every != "" || s.Kind != "sleep" || s.Queue != "default" ||
		s.LastTaskID != nil || s.NextRunAt == nil || s.NextRunAt.Minute()%5 != 0 {
		t.Errorf("schedule = %+v", s)
	}
}

// TestClientQueues pauses and resumes a queue the server works and lists
// the queues in between; an unknown queue is a 404.
func TestClientQueues(t *testing.T) {
	t.Parallel()
	c := setup(t)
	ctx := context.Background()
	paused, err := c.PauseQueue(ctx, "cpu")
	if err != nil || paused.Name != "cpu" || !paused.Paused {
		t.Fatalf("PauseQueue: %+v, %v", paused, err)
	}
	qs, err := c.Queues(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, q := range qs {
		got[q.Name] = q.Paused
	}
	if p, ok := got["cpu"]; !ok || !p || got["default"] {
		t.Errorf("Queues after pausing cpu: %+v", qs)
	}
	resumed, err := c.ResumeQueue(ctx, "cpu")
	if err != nil || resumed.Paused {
		t.Fatalf("ResumeQueue: %+v, %v", resumed, err)
	}
	if _, err := c.PauseQueue(ctx, "nosuchqueue"); !client.IsStatus(err, http.StatusNotFound) {
		t.Errorf("PauseQueue of an unknown queue: err = %v, want 404", err)
	}
}

// TestClientToken sends Config.Token as a bearer token, and nothing
// without one.
func TestClientToken(t *testing.T) {
	t.Parallel()
	auth := make(chan string, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth <- r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"queues":[]}`))
	}))
	t.Cleanup(srv.Close)
	for token, want := range map[string]string{"s3cret": "Bearer s3cret", "": ""} {
		c, err := client.New(srv.URL, client.Config{HTTPClient: srv.Client(), Token: token})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Queues(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := <-auth; got != want {
			t.Errorf("token %q: Authorization = %q, want %q", token, got, want)
		}
	}
}
