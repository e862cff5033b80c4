package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taskd/taskd/internal/store"
)

func TestCancelRunningTask(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.start(t)
	ctx := context.Background()

	id := b.submit(t, "sleep", map[string]any{"ms": 60_000}, nil)
	b.waitTask(t, id, 10*time.Second, inState(store.StateRunning))
	if err := b.tasks.Cancel(ctx, id); err != nil {
		t.Fatal(err)
	}
	task := b.waitTask(t, id, 10*time.Second, inState(store.StateCancelled))
	if !task.CancelRequested {
		t.Error("cancel_requested not set")
	}
	if got := outcomes(b.finishedAttempts(t, id, 1)); !slices.Equal(got, []string{store.OutcomeCancelled}) {
		t.Errorf("outcomes = %v", got)
	}

	var serr *StateError
	if err := b.tasks.Cancel(ctx, id); !errors.As(err, &serr) || serr.State != store.StateCancelled {
		t.Errorf("second cancel: %v, want StateError cancelled", err)
	}
	if err := b.tasks.Cancel(ctx, 999_999); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("cancel unknown: %v, want ErrNotFound", err)
	}
}

func TestRetryFinishedTask(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.start(t)
	ctx := context.Background()

	id := b.submit(t, "double", map[string]any{"value": 1}, nil)
	b.waitTask(t, id, 10*time.Second, inState(store.StateCompleted))
	b.finishedAttempts(t, id, 1)
	if err := b.tasks.Retry(ctx, id); err != nil {
		t.Fatal(err)
	}
	task := b.waitTask(t, id, 10*time.Second, func(task *store.Task) bool {
		return task.State == store.StateCompleted && len(task.Attempts) == 2
	})
	if compact(task.Result) != `{"result":2}` {
		t.Errorf("result after retry = %s", task.Result)
	}

	sched := b.submit(t, "double", map[string]any{"value": 1}, func(p *TaskParams) { p.Delay = ptr("1h") })
	var serr *StateError
	if err := b.tasks.Retry(ctx, sched); !errors.As(err, &serr) || serr.State != store.StateScheduled {
		t.Errorf("retry scheduled: %v, want StateError scheduled", err)
	}
}

func TestIdempotentSubmitUnderConcurrency(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	body := []byte(`{"kind":"double","args":{"value":3}}`)
	hash, err := RequestHash(body)
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created int
		ids     = map[int64]int{}
	)
	for range 20 {
		wg.Go(func() {
			var p TaskParams
			if err := json.Unmarshal(body, &p); err != nil {
				t.Error(err)
				return
			}
			sub, err := b.tasks.Submit(ctx, &p, &Idempotency{Key: "k1", Hash: hash})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ids[sub.TaskID]++
			if sub.Created {
				created++
			}
		})
	}
	wg.Wait()
	if created != 1 || len(ids) != 1 {
		t.Errorf("created = %d, distinct ids = %v; want exactly one task", created, ids)
	}
	var n int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM river_job`).Scan(&n); err != nil || n != 1 {
		t.Errorf("river_job rows = %d, %v", n, err)
	}

	other, _ := RequestHash([]byte(`{"kind":"double","args":{"value":4}}`))
	p := TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value":4}`)}
	if _, err := b.tasks.Submit(ctx, &p, &Idempotency{Key: "k1", Hash: other}); !errors.Is(err, ErrIdempotencyMismatch) {
		t.Errorf("different body: %v, want ErrIdempotencyMismatch", err)
	}
	// A batch may not reuse a task's key either.
	if _, err := b.tasks.SubmitBatch(ctx, &BatchParams{Tasks: []TaskParams{p}}, &Idempotency{Key: "k1", Hash: hash}); !errors.Is(err, ErrIdempotencyMismatch) {
		t.Errorf("batch under a task's key: %v, want ErrIdempotencyMismatch", err)
	}
}

func TestSubmitBatchOrderAndAtomicity(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()

	params := make([]TaskParams, 300)
	for i := range params {
		params[i] = TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value":` + itoa(i) + `}`)}
	}
	sub, err := b.tasks.SubmitBatch(ctx, &BatchParams{Tasks: params}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(sub.TaskIDs) != len(params) {
		t.Fatalf("got %d ids", len(sub.TaskIDs))
	}
	for i, id := range sub.TaskIDs {
		task, err := b.store.Task(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"value":` + itoa(i) + `}`; compact(task.Args) != want {
			t.Fatalf("task_ids[%d] = %d has args %s, want %s", i, id, task.Args, want)
		}
	}
	batch, err := b.store.Batch(ctx, sub.BatchID)
	if err != nil || !slices.Equal(batch.TaskIDs, sub.TaskIDs) {
		t.Fatalf("stored batch = %+v, %v", batch, err)
	}

	// One bad item: nothing is inserted, and the error names it.
	bad := slices.Clone(params[:5])
	bad[3] = TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value":"x"}`)}
	bad[4] = TaskParams{Kind: ptr("sleep"), Args: json.RawMessage(`{"ms":1}`), Priority: ptr(7)}
	_, err = b.tasks.SubmitBatch(ctx, &BatchParams{Tasks: bad}, nil)
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("err = %v, want ValidationError", err)
	}
	var fields []string
	for _, fe := range verr.Errors {
		fields = append(fields, fe.Field)
	}
	if !slices.Equal(fields, []string{"tasks[3].args.value", "tasks[4].priority"}) {
		t.Errorf("fields = %v", fields)
	}
	var n int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM river_job`).Scan(&n); err != nil || n != len(params) {
		t.Errorf("river_job rows = %d, %v; want %d", n, err, len(params))
	}
}

func TestPrepareValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	now := time.Now()
	tests := []struct {
		name   string
		params TaskParams
		fields []string
	}{
		{"ok", TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value":1}`)}, nil},
		{"no kind", TaskParams{}, []string{"kind"}},
		{"unknown kind", TaskParams{Kind: ptr("triple")}, []string{"kind"}},
		{"missing args", TaskParams{Kind: ptr("sleep")}, []string{"args.ms"}},
		{"args not object", TaskParams{Kind: ptr("sleep"), Args: json.RawMessage(`[1]`)}, []string{"args"}},
		{"unknown arg", TaskParams{Kind: ptr("sleep"), Args: json.RawMessage(`{"ms":1,"x":2}`)}, []string{"args.x"}},
		{"double overflow", TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value":1e308}`)}, []string{"args.value"}},
		{"sleep too long", TaskParams{Kind: ptr("sleep"), Args: json.RawMessage(`{"ms":3600001}`)}, []string{"args.ms"}},
		{"sleep fraction", TaskParams{Kind: ptr("sleep"), Args: json.RawMessage(`{"ms":1.5}`)}, []string{"args.ms"}},
		{"fail negative", TaskParams{Kind: ptr("fail"), Args: json.RawMessage(`{"times":-1}`)}, []string{"args.times"}},
		{"fail empty message", TaskParams{Kind: ptr("fail"), Args: json.RawMessage(`{"times":1,"message":""}`)}, []string{"args.message"}},
		{"cpu too big", TaskParams{Kind: ptr("cpu"), Args: json.RawMessage(`{"n":10000001}`)}, []string{"args.n"}},
		{"unknown queue", TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value":1}`), Queue: ptr("nope")}, []string{"queue"}},
		{"priority", TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value":1}`), Priority: ptr(5)}, []string{"priority"}},
		{"max_attempts", TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value":1}`), MaxAttempts: ptr(1001)}, []string{"max_attempts"}},
		{"both times", TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value":1}`), Delay: ptr("1s"), ScheduledAt: ptr(now.Format(time.RFC3339))}, []string{"delay"}},
		{"bad time", TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value":1}`), ScheduledAt: ptr("tomorrow")}, []string{"scheduled_at"}},
		{"far time", TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value":1}`), ScheduledAt: ptr("2999-01-01T00:00:00Z")}, []string{"scheduled_at"}},
		{"bad delay", TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value":1}`), Delay: ptr("soon")}, []string{"delay"}},
		{"negative delay", TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value":1}`), Delay: ptr("-1s")}, []string{"delay"}},
		{"tags", TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value":1}`), Tags: []string{"ok_tag", "a", "has space", "-lead", "in-side", strings.Repeat("x", 256)}}, []string{"tags[1]", "tags[2]", "tags[3]", "tags[5]"}},
		{"several", TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{}`), Priority: ptr(0), MaxAttempts: ptr(0)}, []string{"args.value", "priority", "max_attempts"}},
	}
	for _, tt := range tests {
		_, errs := b.tasks.prepare(&tt.params, "", now)
		var fields []string
		for _, fe := range errs {
			fields = append(fields, fe.Field)
			if fe.Message == "" {
				t.Errorf("%s: empty message for %s", tt.name, fe.Field)
			}
		}
		if !slices.Equal(fields, tt.fields) {
			t.Errorf("%s: fields = %v (%+v), want %v", tt.name, fields, errs, tt.fields)
		}
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
