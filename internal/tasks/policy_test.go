package tasks

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/taskd/taskd/client"
)

// Only what a task sets of its policy goes into its metadata, normalized,
// so that its kind's defaults still apply to the rest.
func TestPreparePolicyMetadata(t *testing.T) {
	t.Parallel()
	b := setupExternal(t, nil)
	now := time.Now()
	for _, tc := range []struct {
		name   string
		p      TaskParams
		meta   string // "" for none
		fields []string
	}{
		{"none", TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value":1}`)}, "", nil},
		{"empty backoff", TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value":1}`), Backoff: &client.Backoff{}}, "", nil},
		{"some fields", TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value":1}`),
			Backoff: &client.Backoff{Initial: ptr("2000ms"), Jitter: ptr(0.0)}, Timeout: ptr("90s")},
			`{"backoff":{"initial":"2s","jitter":0},"timeout":"1m30s"}`, nil},
		{"external kind: a lease", TaskParams{Kind: ptr("ext"), Timeout: ptr("1h")}, `{"timeout":"1h"}`, nil},
		{"external kind: too short a lease", TaskParams{Kind: ptr("ext"), Timeout: ptr("4s")}, "", []string{"timeout"}},
		{"external kind: too long a lease", TaskParams{Kind: ptr("ext"), Timeout: ptr("61m")}, "", []string{"timeout"}},
		{"in taskd: 12h at most", TaskParams{Kind: ptr("sleep"), Args: json.RawMessage(`{"ms":1}`), Timeout: ptr("12h")}, `{"timeout":"12h"}`, nil},
		{"in taskd: 1s at least", TaskParams{Kind: ptr("sleep"), Args: json.RawMessage(`{"ms":1}`), Timeout: ptr("999ms")}, "", []string{"timeout"}},
		{"bad backoff, prefixed", TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value":1}`), Backoff: &client.Backoff{Multiplier: ptr(0.0)}}, "", []string{"backoff.multiplier"}},
	} {
		params, errs := b.tasks.prepare(&tc.p, "", now)
		var fields []string
		for _, fe := range errs {
			fields = append(fields, fe.Field)
		}
		if !slices.Equal(fields, tc.fields) {
			t.Errorf("%s: problems on %v (%+v), want on %v", tc.name, fields, errs, tc.fields)
			continue
		}
		if errs != nil {
			continue
		}
		if got := string(params.InsertOpts.Metadata); got != tc.meta {
			t.Errorf("%s: metadata %q, want %q", tc.name, got, tc.meta)
		}
	}
}

// A batch task keeps its own policy next to its batch.
func TestSubmitBatchKeepsOwnPolicy(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	sub, err := b.tasks.SubmitBatch(ctx, &BatchParams{Tasks: []TaskParams{
		{Kind: ptr("double"), Args: json.RawMessage(`{"value":1}`), Timeout: ptr("5m")},
		{Kind: ptr("double"), Args: json.RawMessage(`{"value":2}`)},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{
		`{"batch_id": ` + itoa(int(sub.BatchID)) + `, "timeout": "5m"}`,
		`{"batch_id": ` + itoa(int(sub.BatchID)) + `}`,
	} {
		var (
			meta  string
			equal bool
		)
		err := b.pool.QueryRow(ctx, `SELECT metadata::text, metadata = $2::jsonb FROM river_job WHERE id = $1`, sub.TaskIDs[i], want).Scan(&meta, &equal)
		if err != nil {
			t.Fatal(err)
		}
		if !equal {
			t.Errorf("task %d: metadata %s, want %s", i, meta, want)
		}
		task, err := b.store.Task(ctx, sub.TaskIDs[i])
		if err != nil {
			t.Fatal(err)
		}
		if task.BatchID != sub.BatchID {
			t.Errorf("task %d: batch %d, want %d", i, task.BatchID, sub.BatchID)
		}
	}
}
