package store

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/internal/pgtest"
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

// TestJobFetchAgreesWithRiver runs River's JobGetAvailable and JobFetch
// with the same parameters on two queues holding twin jobs, one queue
// each, and wants the same jobs fetched, in the same way: the order of
// priority, time and id, the kinds asked for (any, some, none), jobs not
// due or not available left alone, attempted_by cut to its last entries.
func TestJobFetchAgreesWithRiver(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	exec := riverpgxv5.New(s.pool).GetExecutor()
	twin := map[int64]int64{}
	now := time.Now().UTC().Truncate(time.Microsecond)
	for _, job := range []string{
		`'available', 'double', 2, $2::timestamptz - interval '3 minutes', '{}', NULL`,
		`'available', 'double', 1, $2::timestamptz - interval '1 minute', '{w1,w2,w3}', NULL`,
		`'available', 'double', 1, $2::timestamptz - interval '2 minutes', '{}', ARRAY['{"at": "2026-12-01T10:00:00Z", "attempt": 1, "error": "boom", "trace": ""}'::jsonb]`,
		`'available', 'other', 1, $2::timestamptz - interval '5 minutes', '{}', NULL`,
		`'available', 'double', 1, $2::timestamptz + interval '1 hour', '{}', NULL`,
		`'running', 'double', 1, $2::timestamptz - interval '1 hour', '{}', NULL`,
		`'available', 'double', 3, $2::timestamptz - interval '1 hour', '{w1}', NULL`,
		`'available', 'double', 3, $2::timestamptz - interval '1 hour', '{w1}', NULL`,
	} {
		var ids [2]int64
		for i, queue := range []string{"qa", "qb"} {
			if err := s.pool.QueryRow(ctx, `INSERT INTO river_job (state, kind, priority, scheduled_at, attempted_by, errors,
					queue, args, max_attempts, metadata, tags, created_at, attempt)
				VALUES (`+job+`, $1, '{"value": 1}', 25, '{"batch_id": 3}', '{t}', '2026-12-01T08:00:00Z', 1) RETURNING id`, queue, now).Scan(&ids[i]); err != nil {
				t.Fatalf("inserting %s: %v", job, err)
			}
		}
		twin[ids[1]] = ids[0]
	}
	for _, step := range []struct {
		kind []string
		max  int
	}{
		{[]string{"double"}, 3},   // 3 of the 5 due doubles, by priority, time, id
		{[]string{"nothing"}, 10}, // a kind no job has: none
		{[]string{}, 1},           // an empty list of kinds: as River's
		{nil, 10},                 // any kind: the rest
		{nil, 10},                 // nothing left
	} {
		params := &riverdriver.JobGetAvailableParams{ClientID: "c9", Kind: step.kind, MaxAttemptedBy: 3, MaxToLock: step.max, Now: &now, Queue: "qa"}
		want, err := exec.JobGetAvailable(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		got, decodeErrs, err := s.JobFetch(ctx, s.pool, JobFetchParams{Queue: "qb", Kind: step.kind, Now: &now, MaxToLock: step.max, MaxAttemptedBy: 3, ClientID: "c9"})
		if err != nil {
			t.Fatal(err)
		}
		if len(decodeErrs) != 0 || len(want.DecodeErrors) != 0 {
			t.Fatalf("decode errors: %v; River's %v", decodeErrs, want.DecodeErrors)
		}
		byID := func(rows []*rivertype.JobRow, mapID func(int64) int64) map[int64]*rivertype.JobRow {
			m := map[int64]*rivertype.JobRow{}
			for _, r := range rows {
				c := *r
				c.ID = mapID(r.ID)
				c.Queue = "q"
				m[c.ID] = &c
			}
			return m
		}
		w := byID(want.Jobs, func(id int64) int64 { return id })
		g := byID(got, func(id int64) int64 { return twin[id] })
		if !reflect.DeepEqual(g, w) {
			t.Errorf("kinds %v, max %d: fetched\n%v\nRiver's\n%v", step.kind, step.max, describe(g), describe(w))
		}
		if step.max == 3 && len(w) != 3 {
			t.Errorf("River's fetch took %d jobs, want 3: the case does not test the limit", len(w))
		}
	}
}

func describe(rows map[int64]*rivertype.JobRow) string {
	out := ""
	for _, r := range rows {
		out += fmt.Sprintf("  %+v\n", *r)
	}
	return out
}

// TestJobFetchConcurrent has four fetchers take a queue's jobs at once, as
// the producers of four processes would: every job is fetched once, none
// is left, and the statement's plan finds the rows by the fetching index
// and again by ctid (a TID scan), which is what it is for.
func TestJobFetchConcurrent(t *testing.T) {
	t.Parallel()
	s := New(pgtest.NewPool(t, 5))
	ctx := context.Background()
	const n = 3000
	if _, err := s.pool.Exec(ctx, `INSERT INTO river_job (state, kind, queue, args, max_attempts, priority, scheduled_at)
		SELECT 'available', 'double', 'default', '{}', 25, 1 + g % 4, now() - interval '1 minute' FROM generate_series(1, $1) g`, n); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE river_job`); err != nil {
		t.Fatal(err)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := explain(ctx, conn.Conn(), jobFetchSQL, []any{"default", []string{"double"}, nil, 100, 100, "c"})
	conn.Release()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.indexes, []string{"river_job_prioritized_fetching_index"}) || p.seqScan || !strings.Contains(p.text, `"Tid Scan"`) {
		t.Errorf("the fetch's plan uses indexes %v (sequential scan %v), want the fetching index and a Tid Scan:\n%s", p.indexes, p.seqScan, p.text)
	}

	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				jobs, _, err := s.JobFetch(ctx, s.pool, JobFetchParams{Queue: "default", MaxToLock: 37, MaxAttemptedBy: 100, ClientID: fmt.Sprint("c", w)})
				if err != nil {
					errs <- err
					return
				}
				if len(jobs) == 0 {
					return
				}
				mu.Lock()
				for _, j := range jobs {
					seen[j.ID]++
					if j.State != rivertype.JobStateRunning || j.Attempt != 1 {
						errs <- fmt.Errorf("job %d fetched as %s at attempt %d", j.ID, j.State, j.Attempt)
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Errorf("%d jobs fetched, want %d", len(seen), n)
	}
	for id, times := range seen {
		if times != 1 {
			t.Errorf("job %d fetched %d times", id, times)
		}
	}
	var left int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state <> 'running' OR attempt <> 1`).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d jobs not fetched once (%v)", left, err)
	}
}

// TestJobInsertManyAgreesWithRiver inserts the same jobs with River's
// JobInsertFastMany and with JobInsertMany (as jobs.completionPilot fills
// its columns from River's parameters) and wants the same rows back, in
// the order given.
func TestJobInsertManyAgreesWithRiver(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	exec := riverpgxv5.New(s.pool).GetExecutor()
	at := time.Date(2026, 12, 1, 8, 0, 0, 1000, time.UTC)
	later := at.Add(time.Hour)
	jobs := []*riverdriver.JobInsertFastParams{
		{EncodedArgs: []byte(`{"value": 1}`), Kind: "double", MaxAttempts: 25, Priority: 1, Queue: "default", State: rivertype.JobStateAvailable, CreatedAt: &at, ScheduledAt: &at},
		{EncodedArgs: []byte(`{"b": 2,  "a": [1, 2.50]}`), Kind: "k", MaxAttempts: 1, Priority: 4, Queue: "q", State: rivertype.JobStateScheduled, CreatedAt: &at, ScheduledAt: &later,
			Metadata: []byte(`{"batch_id": 7}`), Tags: []string{"a", "b"}},
		{Kind: "empty", MaxAttempts: 3, Priority: 2, Queue: "default", State: rivertype.JobStateAvailable, CreatedAt: &at, ScheduledAt: &at, Tags: []string{}},
	}
	for range 3 { // more than one of a kind, for the order
		jobs = append(jobs, jobs[0])
	}
	tx, err := exec.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want, err := tx.JobInsertFastMany(ctx, &riverdriver.JobInsertFastManyParams{Jobs: jobs})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var in JobInserts
	for _, j := range jobs {
		args, meta := j.EncodedArgs, j.Metadata
		if len(args) == 0 {
			args = []byte("{}")
		}
		if len(meta) == 0 {
			meta = []byte("{}")
		}
		in.Args = append(in.Args, args)
		in.CreatedAt = append(in.CreatedAt, *j.CreatedAt)
		in.Kind = append(in.Kind, j.Kind)
		in.MaxAttempts = append(in.MaxAttempts, int16(j.MaxAttempts))
		in.Metadata = append(in.Metadata, meta)
		in.Priority = append(in.Priority, int16(j.Priority))
		in.Queue = append(in.Queue, j.Queue)
		in.ScheduledAt = append(in.ScheduledAt, *j.ScheduledAt)
		in.State = append(in.State, string(j.State))
		in.Tags = append(in.Tags, strings.Join(j.Tags, ","))
	}
	got, err := s.JobInsertMany(ctx, s.pool, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d rows, River's %d", len(got), len(want))
	}
	for i := range want {
		if want[i].UniqueSkippedAsDuplicate {
			t.Fatalf("River's row %d is a duplicate", i)
		}
		g := *got[i]
		if i > 0 && g.ID <= got[i-1].ID {
			t.Errorf("row %d has id %d after %d: not in the order given", i, g.ID, got[i-1].ID)
		}
		g.ID = want[i].Job.ID
		if !reflect.DeepEqual(&g, want[i].Job) {
			t.Errorf("job %d:\n got %+v\nwant %+v", i, &g, want[i].Job)
		}
	}
}
