package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/internal/pgtest"
)

// TestRiverJobIndexPlans checks which index serves each query on river_job
// that taskd, River and the River UI run, on a table of 50,000 jobs large
// enough for the planner to care: it fails when one of them loses its
// index (a migration dropped it, or River changed the query), and it shows
// that none needs River's GIN indexes on args and metadata, which
// migration 00016 drops (docs/PERFORMANCE-indexes.md).
//
// The statements are River's and the store's own, not copies: each
// operation runs once (River's in a transaction rolled back) on a pool that
// records what it sends, and every statement recorded is then EXPLAINed
// with its arguments.
func TestRiverJobIndexPlans(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.NewDB(t)
	rec := &statementRecorder{}
	pcfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = 4
	pcfg.ConnConfig.Tracer = rec
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)

	// 50,000 jobs: mostly completed, a few of every other state; 10 % on
	// queue cpu; kind ext stands for an external kind; every 100th in a
	// batch.
	_, err = pool.Exec(ctx, `
		INSERT INTO river_job (args, kind, max_attempts, queue, state, attempt, attempted_at, finalized_at, scheduled_at, metadata)
		SELECT jsonb_build_object('value', i), (ARRAY['double','sleep','cpu','ext'])[1 + i % 4], 25,
			CASE WHEN i % 10 = 0 THEN 'cpu' ELSE 'default' END, s.state, 1,
			now() - interval '1 hour',
			CASE WHEN s.state IN ('completed', 'cancelled', 'discarded') THEN now() - (i % 100) * interval '1 minute' END,
			CASE WHEN s.state IN ('scheduled', 'retryable') THEN now() + interval '1 hour' ELSE now() - interval '2 hours' END,
			CASE WHEN i % 100 = 0 THEN jsonb_build_object('batch_id', 1 + i / 1000) ELSE '{}' END
		FROM generate_series(1, 50000) AS i,
			LATERAL (SELECT (CASE WHEN i % 2500 = 0 THEN 'cancelled' WHEN i % 50 = 0 THEN 'available' WHEN i % 97 = 0 THEN 'discarded'
				WHEN i % 89 = 0 THEN 'running' WHEN i % 83 = 0 THEN 'scheduled' WHEN i % 79 = 0 THEN 'retryable'
				ELSE 'completed' END)::river_job_state AS state) AS s;
		INSERT INTO batches (id, task_ids) OVERRIDING SYSTEM VALUE
		SELECT b, array_agg(id) FROM (SELECT id, (metadata ->> 'batch_id')::bigint AS b FROM river_job WHERE metadata ? 'batch_id') AS m GROUP BY b;
		-- One attempt a job, two for every third: the rows taskd's reads and
		-- rescues find by task (task_attempts_pkey, migration 00017).
		INSERT INTO task_attempts (task_id, attempt, worker, started_at, finished_at, outcome, duration_ms)
		SELECT id, n, 'w', attempted_at, attempted_at, CASE WHEN n = 1 AND id % 3 = 0 THEN 'failed' ELSE 'completed' END, 1
		FROM river_job, generate_series(1, 2) AS n WHERE n = 1 OR id % 3 = 0;
		ANALYZE river_job;
		ANALYZE batches;
		ANALYZE task_attempts;`)
	if err != nil {
		t.Fatal(err)
	}
	var running, finished []int64
	if err := pool.QueryRow(ctx, `SELECT array_agg(id) FROM (SELECT id FROM river_job WHERE state = 'running' ORDER BY id LIMIT 20) AS r`).Scan(&running); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT array_agg(id) FROM (SELECT id FROM river_job WHERE state = 'completed' AND metadata ? 'batch_id' LIMIT 20) AS r`).Scan(&finished); err != nil {
		t.Fatal(err)
	}

	driver := riverpgxv5.New(pool)
	client, err := river.NewClient(driver, &river.Config{SkipUnknownJobCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	// River's operations, each in a transaction rolled back so that the
	// table stays as filled.
	inTx := func(name string, fn func(ctx context.Context, tx pgx.Tx, exec riverdriver.ExecutorTx) error) {
		t.Helper()
		ctx := context.WithValue(ctx, operationKey{}, name)
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if err := fn(ctx, tx, driver.UnwrapExecutor(tx)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	now := time.Now()
	inTx("River insert", func(ctx context.Context, tx pgx.Tx, _ riverdriver.ExecutorTx) error {
		_, err := client.InsertManyTx(ctx, tx, []river.InsertManyParams{{Args: indexTestArgs{}, InsertOpts: &river.InsertOpts{Queue: "default"}}})
		return err
	})
	inTx("River fetch", func(ctx context.Context, _ pgx.Tx, exec riverdriver.ExecutorTx) error {
		// taskd's River client fetches only the kinds it knows
		// (FetchOnlyKnownKinds).
		_, err := exec.JobGetAvailable(ctx, &riverdriver.JobGetAvailableParams{ClientID: "test", Kind: []string{"double", "sleep"},
			MaxAttemptedBy: 100, MaxToLock: 100, Queue: "default"})
		return err
	})
	inTx("River completer", func(ctx context.Context, _ pgx.Tx, exec riverdriver.ExecutorTx) error {
		p := &riverdriver.JobSetStateIfRunningManyParams{Now: &now}
		for _, id := range running {
			p.ID = append(p.ID, id)
			p.Attempt = append(p.Attempt, nil)
			p.ErrData = append(p.ErrData, nil)
			p.FinalizedAt = append(p.FinalizedAt, &now)
			p.MetadataDoMerge = append(p.MetadataDoMerge, true)
			p.MetadataUpdates = append(p.MetadataUpdates, []byte(`{"output":{"result":42}}`))
			p.ScheduledAt = append(p.ScheduledAt, nil)
			p.State = append(p.State, rivertype.JobStateCompleted)
		}
		_, err := exec.JobSetStateIfRunningMany(ctx, p)
		return err
	})
	// taskd's statements for River's fetch and batch completion
	// (jobs.statements), through the store.
	inTx("taskd fetch", func(ctx context.Context, tx pgx.Tx, _ riverdriver.ExecutorTx) error {
		_, _, err := New(pool).JobFetch(ctx, tx, JobFetchParams{ClientID: "test", Kind: []string{"double", "sleep"}, MaxAttemptedBy: 100, MaxToLock: 100, Queue: "default"})
		return err
	})
	inTx("taskd completer", func(ctx context.Context, tx pgx.Tx, _ riverdriver.ExecutorTx) error {
		c := JobCompletions{ID: running}
		for range running {
			c.FinalizedAt = append(c.FinalizedAt, now)
			c.MetadataDoMerge = append(c.MetadataDoMerge, true)
			c.MetadataUpdates = append(c.MetadataUpdates, []byte(`{"output":{"result":42}}`))
		}
		_, err := New(pool).JobCompleteMany(ctx, tx, c)
		return err
	})
	inTx("River cancel check", func(ctx context.Context, _ pgx.Tx, exec riverdriver.ExecutorTx) error {
		_, err := exec.JobGetCancelRequested(ctx, &riverdriver.JobGetCancelRequestedParams{ID: running})
		return err
	})
	inTx("River rescuer", func(ctx context.Context, _ pgx.Tx, exec riverdriver.ExecutorTx) error {
		_, err := exec.JobGetStuck(ctx, &riverdriver.JobGetStuckParams{Max: 100, StuckHorizon: now.Add(-time.Minute)})
		return err
	})
	inTx("River cleaner", func(ctx context.Context, _ pgx.Tx, exec riverdriver.ExecutorTx) error {
		horizon := now.Add(-95 * time.Minute) // 5 % of the finished jobs
		_, err := exec.JobDeleteBefore(ctx, &riverdriver.JobDeleteBeforeParams{
			CancelledDoDelete: true, CancelledFinalizedAtHorizon: horizon, CompletedDoDelete: true, CompletedFinalizedAtHorizon: horizon,
			DiscardedDoDelete: true, DiscardedFinalizedAtHorizon: horizon, Max: 1000})
		return err
	})
	inTx("River scheduler", func(ctx context.Context, _ pgx.Tx, exec riverdriver.ExecutorTx) error {
		_, err := exec.JobSchedule(ctx, &riverdriver.JobScheduleParams{Max: 1000, Now: &now})
		return err
	})
	inTx("River queue counts", func(ctx context.Context, _ pgx.Tx, exec riverdriver.ExecutorTx) error {
		_, err := exec.JobCountByQueueAndState(ctx, &riverdriver.JobCountByQueueAndStateParams{QueueNames: []string{"cpu", "default"}})
		return err
	})
	inTx("River UI kind list", func(ctx context.Context, _ pgx.Tx, exec riverdriver.ExecutorTx) error {
		_, err := exec.JobKindList(ctx, &riverdriver.JobKindListParams{Max: 100})
		return err
	})
	// The River UI's job list (riverui v0.22.0 jobListEndpoint): a state,
	// ordered by time, and optionally kinds, queues, priorities and tags,
	// never args or metadata.
	for _, l := range []struct {
		name   string
		params *river.JobListParams
	}{
		{"River UI list running", river.NewJobListParams().First(20).States(rivertype.JobStateRunning).OrderBy(river.JobListOrderByTime, river.SortOrderAsc)},
		{"River UI list completed", river.NewJobListParams().First(20).States(rivertype.JobStateCompleted).OrderBy(river.JobListOrderByTime, river.SortOrderDesc)},
		{"River UI list cancelled", river.NewJobListParams().First(20).States(rivertype.JobStateCancelled).OrderBy(river.JobListOrderByTime, river.SortOrderDesc)},
		{"River UI list available, kinds", river.NewJobListParams().First(20).Kinds("cpu").States(rivertype.JobStateAvailable)},
		{"River UI list available, queues", river.NewJobListParams().First(20).Queues("cpu").States(rivertype.JobStateAvailable)},
		// River's API has a metadata filter that taskd and the UI do not
		// use: without river_job_metadata_index it reads the table.
		{"River metadata filter (unused)", river.NewJobListParams().First(20).Metadata(`{"batch_id": 7}`)},
	} {
		inTx(l.name, func(ctx context.Context, tx pgx.Tx, _ riverdriver.ExecutorTx) error {
			_, err := client.JobListTx(ctx, tx, l.params)
			return err
		})
	}

	// taskd's own, through the store.
	st := New(pool)
	op := func(name string, fn func(ctx context.Context) error) {
		t.Helper()
		if err := fn(context.WithValue(ctx, operationKey{}, name)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	op("taskd task", func(ctx context.Context) error { _, err := st.Task(ctx, running[0]); return err })
	op("taskd batch", func(ctx context.Context) error { _, err := st.Batch(ctx, 8); return err })
	op("taskd batch callbacks", func(ctx context.Context) error {
		_, err := st.BatchThenCandidates(ctx, finished, []string{"double"})
		return err
	})
	op("taskd wait mark", func(ctx context.Context) error { _, err := st.WaitMark(ctx, running); return err })
	op("taskd queue stats", func(ctx context.Context) error { _, err := st.QueueStats(ctx); return err })
	op("taskd claim", func(ctx context.Context) error {
		_, err := st.LeaseClaim(ctx, Claim{Kinds: []string{"ext"}, LeaseSecs: []float64{60}, Max: 10, Worker: "test"})
		return err
	})
	// The rescues write (one task; the orphan rescue finds none of
	// process "test"), after every other operation has run.
	op("taskd rescue", func(ctx context.Context) error { _, err := st.RescueLost(ctx, time.Minute, 1); return err })
	op("taskd orphan rescue", func(ctx context.Context) error {
		_, err := st.RescueOrphans(ctx, "test", running, time.Minute)
		return err
	})

	// The index each operation's statements on river_job must use ("": any
	// index), and whether a sequential scan of river_job may be among them.
	// The indexes asserted are those that serve the operation at any size;
	// where the planner's choice between two depends on the data ("" below),
	// only a sequential scan fails.
	want := map[string]struct {
		index   string
		seqScan bool
	}{
		"River insert":    {index: "river_job_unique_idx"}, // its ON CONFLICT arbiter: every insert fails without it
		"River fetch":     {index: "river_job_prioritized_fetching_index"},
		"River completer": {index: "river_job_pkey"},
		// The cancellation poll (once a minute with LISTEN) is served by
		// river_job_metadata_index where that exists (metadata ?
		// 'cancel_attempted_at' looks selective), by the primary key (its
		// ids, at most 1,000) without.
		"River cancel check": {index: "river_job_pkey"},
		// taskd's fetch finds the rows it locked again by ctid
		// (TestJobFetchConcurrent checks that it uses no other index).
		"taskd fetch":     {index: "river_job_prioritized_fetching_index"},
		"taskd completer": {index: "river_job_pkey"},
		"River rescuer":   {},
		// The cleaner and the scheduler find their jobs by an index and
		// then join back to river_job by id, which the planner does by
		// reading a table this small whole.
		"River cleaner":                   {index: "river_job_state_and_finalized_at_index", seqScan: true},
		"River scheduler":                 {index: "river_job_prioritized_fetching_index", seqScan: true},
		"River queue counts":              {index: "river_job_prioritized_fetching_index"},
		"River UI kind list":              {index: "river_job_kind"},
		"River UI list running":           {index: "river_job_prioritized_fetching_index"},
		"River UI list completed":         {index: "river_job_state_and_finalized_at_index"},
		"River UI list cancelled":         {index: "river_job_state_and_finalized_at_index"},
		"River UI list available, kinds":  {},
		"River UI list available, queues": {index: "river_job_prioritized_fetching_index"},
		"River metadata filter (unused)":  {seqScan: true},
		"taskd task":                      {index: "river_job_pkey"},
		"taskd batch":                     {index: "river_job_pkey"},
		"taskd batch callbacks":           {index: "river_job_pkey"},
		"taskd wait mark":                 {index: "river_job_pkey"},
		"taskd queue stats":               {index: "river_job_prioritized_fetching_index"},
		"taskd claim":                     {index: "river_job_available_kind_idx"},
		"taskd rescue":                    {},
		"taskd orphan rescue":             {index: "river_job_pkey"},
	}
	// The operations that read or update task_attempts, which must find
	// their rows by task (no operation may read task_attempts whole).
	attemptsByTask := []string{"taskd task", "taskd rescue", "taskd orphan rescue"}

	conn, err := pgx.Connect(ctx, dbURL) // no recorder
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var gin []string
	if err := conn.QueryRow(ctx, `SELECT coalesce(array_agg(indexname::text), '{}') FROM pg_indexes
		WHERE tablename = 'river_job' AND indexdef LIKE '%USING gin%'`).Scan(&gin); err != nil {
		t.Fatal(err)
	}
	if len(gin) > 0 {
		t.Errorf("GIN indexes on river_job after migration 00016: %v", gin)
	}

	seen := map[string]bool{}
	for _, s := range rec.riverJobStatements() {
		seen[s.operation] = true
		w, ok := want[s.operation]
		if !ok {
			t.Errorf("%s: no expectation for its statement:\n%s", s.operation, s.sql)
			continue
		}
		p, err := explain(ctx, conn, s.sql, s.args)
		if err != nil {
			t.Errorf("%s: EXPLAIN: %v\n%s", s.operation, err, s.sql)
			continue
		}
		if testing.Verbose() {
			t.Logf("%s: indexes %v, sequential scan of river_job %v", s.operation, p.indexes, p.seqScan)
		}
		if w.index != "" && !slices.Contains(p.indexes, w.index) {
			t.Errorf("%s: want %s among the indexes used, got %v:\n%s\n%s", s.operation, w.index, p.indexes, s.sql, p.text)
		}
		if len(p.indexes) == 0 && !w.seqScan {
			t.Errorf("%s: no index used:\n%s\n%s", s.operation, s.sql, p.text)
		}
		if p.seqScan && !w.seqScan {
			t.Errorf("%s: sequential scan of river_job:\n%s\n%s", s.operation, s.sql, p.text)
		}
		if p.seqScanAttempts {
			t.Errorf("%s: sequential scan of task_attempts:\n%s\n%s", s.operation, s.sql, p.text)
		}
		if slices.Contains(attemptsByTask, s.operation) && !slices.Contains(p.indexes, "task_attempts_pkey") {
			t.Errorf("%s: want task_attempts_pkey among the indexes used, got %v:\n%s\n%s", s.operation, p.indexes, s.sql, p.text)
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("%s: no statement on river_job recorded", name)
		}
	}
}

type indexTestArgs struct{}

func (indexTestArgs) Kind() string { return "double" }

type operationKey struct{}

// statementRecorder is a pgx tracer that keeps every statement sent with
// its arguments, under the operation named in its context.
type statementRecorder struct {
	mu    sync.Mutex
	stmts []recordedStatement
}

type recordedStatement struct {
	operation string
	sql       string
	args      []any
}

func (r *statementRecorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if name, ok := ctx.Value(operationKey{}).(string); ok {
		r.mu.Lock()
		r.stmts = append(r.stmts, recordedStatement{operation: name, sql: data.SQL, args: data.Args})
		r.mu.Unlock()
	}
	return ctx
}

func (r *statementRecorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// riverJobStatements are the recorded statements that name river_job.
func (r *statementRecorder) riverJobStatements() []recordedStatement {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recordedStatement
	for _, s := range r.stmts {
		if strings.Contains(s.sql, "river_job") && !strings.HasPrefix(strings.TrimSpace(strings.ToLower(s.sql)), "begin") {
			out = append(out, s)
		}
	}
	return out
}

// plan is what an EXPLAIN says about river_job and task_attempts.
type plan struct {
	indexes         []string // every index of any table scanned, and ON CONFLICT arbiters
	seqScan         bool     // of river_job
	seqScanAttempts bool     // of task_attempts
	text            string
}

func explain(ctx context.Context, conn *pgx.Conn, sql string, args []any) (plan, error) {
	var raw []byte
	if err := conn.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+sql, args...).Scan(&raw); err != nil {
		return plan{}, err
	}
	var doc []struct {
		Plan map[string]any `json:"Plan"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || len(doc) != 1 {
		return plan{}, fmt.Errorf("reading the plan %s: %v", raw, err)
	}
	p := plan{text: string(raw)}
	var walk func(node map[string]any)
	walk = func(node map[string]any) {
		if name, ok := node["Index Name"].(string); ok && !slices.Contains(p.indexes, name) {
			p.indexes = append(p.indexes, name)
		}
		if arbiters, ok := node["Conflict Arbiter Indexes"].([]any); ok {
			for _, a := range arbiters {
				if name, ok := a.(string); ok && !slices.Contains(p.indexes, name) {
					p.indexes = append(p.indexes, name)
				}
			}
		}
		if node["Node Type"] == "Seq Scan" {
			switch node["Relation Name"] {
			case "river_job":
				p.seqScan = true
			case "task_attempts":
				p.seqScanAttempts = true
			}
		}
		children, _ := node["Plans"].([]any)
		for _, c := range children {
			if m, ok := c.(map[string]any); ok {
				walk(m)
			}
		}
	}
	walk(doc[0].Plan)
	return p, nil
}
