package store

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
)

// TestJobCompleteManyAgreesWithRiver runs River's JobSetStateIfRunningMany
// and JobCompleteMany on two copies of the same jobs, one copy each, and
// wants the same rows back and the same rows left in the table: running
// jobs with and without a result to merge, with errors, tags, a unique key
// and a cancellation request; jobs that no longer run, with and without
// metadata to merge; and a job that does not exist.
func TestJobCompleteManyAgreesWithRiver(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	exec := riverpgxv5.New(s.pool).GetExecutor()

	shapes := []struct {
		name    string
		insert  string // the columns after id, as VALUES
		merge   bool
		updates string
	}{
		{"running", `'running', 1, '{"batch_id": 5}', NULL, NULL, NULL`, false, ""},
		{"running with result", `'running', 1, '{"batch_id": 5}', NULL, NULL, NULL`, true, `{"output": 6}`},
		{"running with errors, tags, unique key", `'running', 3, '{}', ARRAY['{"at": "2026-12-01T10:00:00Z", "attempt": 1, "error": "boom", "trace": ""}'::jsonb, '{"at": "2026-12-01T10:01:00Z", "attempt": 2, "error": "again", "trace": "t"}'::jsonb], '\x0102'::bytea, B'10010001'`, true, `{"output": {"a": [1, 2]}}`},
		{"running, cancel requested", `'running', 1, '{"cancel_attempted_at": "2026-12-01T10:00:00Z"}', NULL, NULL, NULL`, false, ""},
		{"completed already", `'completed', 1, '{"output": 1}', NULL, NULL, NULL`, false, ""},
		{"completed already, result merged", `'completed', 1, '{"output": 1}', NULL, NULL, NULL`, true, `{"output": 2}`},
		{"retryable", `'retryable', 2, '{}', NULL, NULL, NULL`, false, ""},
	}
	insert := func(values string) int64 {
		t.Helper()
		var id int64
		finalized := "NULL"
		if values[:len("'completed'")] == "'completed'" {
			finalized = "'2026-12-01T09:00:00Z'"
		}
		err := s.pool.QueryRow(ctx, `INSERT INTO river_job (state, attempt, metadata, errors, unique_key, unique_states,
				args, kind, max_attempts, queue, priority, tags, created_at, scheduled_at, attempted_at, attempted_by, finalized_at)
			VALUES (`+values+`, '{"value": 2}', 'double', 25, 'default', 2, '{a,b}',
				'2026-12-01T08:00:00Z', '2026-12-01T08:00:01Z', '2026-12-01T08:00:02Z', '{w1,w2}', `+finalized+`)
			RETURNING id`).Scan(&id)
		if err != nil {
			t.Fatalf("inserting %s: %v", values, err)
		}
		return id
	}
	finalizedAt := time.Date(2026, 12, 1, 11, 0, 0, 123000, time.UTC)
	river := &riverdriver.JobSetStateIfRunningManyParams{}
	ours := JobCompletions{}
	twin := map[int64]int64{} // our job's id → River's
	for _, sh := range shapes {
		a, b := insert(sh.insert), insert(sh.insert)
		twin[b] = a
		var updates []byte
		if sh.merge {
			updates = []byte(sh.updates)
		}
		at := finalizedAt
		river.ID = append(river.ID, a)
		river.Attempt = append(river.Attempt, nil)
		river.ErrData = append(river.ErrData, nil)
		river.FinalizedAt = append(river.FinalizedAt, &at)
		river.MetadataDoMerge = append(river.MetadataDoMerge, sh.merge)
		river.MetadataUpdates = append(river.MetadataUpdates, updates)
		river.ScheduledAt = append(river.ScheduledAt, nil)
		river.State = append(river.State, rivertype.JobStateCompleted)
		ours.ID = append(ours.ID, b)
		ours.FinalizedAt = append(ours.FinalizedAt, at)
		ours.MetadataDoMerge = append(ours.MetadataDoMerge, sh.merge)
		ours.MetadataUpdates = append(ours.MetadataUpdates, updates)
	}
	// A job that does not exist, in both.
	river.ID = append(river.ID, 1<<40)
	river.Attempt = append(river.Attempt, nil)
	river.ErrData = append(river.ErrData, nil)
	river.FinalizedAt = append(river.FinalizedAt, &finalizedAt)
	river.MetadataDoMerge = append(river.MetadataDoMerge, true)
	river.MetadataUpdates = append(river.MetadataUpdates, []byte(`{"output": 3}`))
	river.ScheduledAt = append(river.ScheduledAt, nil)
	river.State = append(river.State, rivertype.JobStateCompleted)
	ours.ID = append(ours.ID, 1<<40+1)
	ours.FinalizedAt = append(ours.FinalizedAt, finalizedAt)
	ours.MetadataDoMerge = append(ours.MetadataDoMerge, true)
	ours.MetadataUpdates = append(ours.MetadataUpdates, []byte(`{"output": 3}`))

	want, err := exec.JobSetStateIfRunningMany(ctx, river)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.JobCompleteMany(ctx, s.pool, ours)
	if err != nil {
		t.Fatal(err)
	}
	compare := func(what string, want, got []*rivertype.JobRow) {
		t.Helper()
		if len(got) != len(want) || len(want) != len(shapes) {
			t.Fatalf("%s: %d rows from JobCompleteMany, %d from River's statement, %d jobs", what, len(got), len(want), len(shapes))
		}
		for i := range want {
			g := *got[i]
			if twin[g.ID] != want[i].ID {
				t.Fatalf("%s: row %d is job %d, the twin of %d; River's is %d (not in River's order)", what, i, g.ID, twin[g.ID], want[i].ID)
			}
			g.ID = want[i].ID
			if !reflect.DeepEqual(&g, want[i]) {
				t.Errorf("%s: %s:\n got %+v\nwant %+v", what, shapes[i].name, &g, want[i])
			}
		}
	}
	compare("returned", want, got)
	if got[1].State != rivertype.JobStateCompleted || string(got[1].Metadata) != `{"output": 6, "batch_id": 5}` {
		t.Errorf("a running job's completion: state %s, metadata %s", got[1].State, got[1].Metadata)
	}

	// What the table holds afterwards, read by River.
	wantRows, err := exec.JobGetByIDMany(ctx, &riverdriver.JobGetByIDManyParams{ID: river.ID})
	if err != nil {
		t.Fatal(err)
	}
	gotRows, err := exec.JobGetByIDMany(ctx, &riverdriver.JobGetByIDManyParams{ID: ours.ID})
	if err != nil {
		t.Fatal(err)
	}
	compare("stored", wantRows, gotRows)
}
