package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskd/taskd/internal/store"
)

// listFilters are the lists scenario 5 measures.
var listFilters = []struct {
	Query  string // of GET /v1/tasks
	Params store.ListParams
}{
	{Query: "state=completed&limit=100", Params: store.ListParams{States: []string{"completed"}, Limit: 100}},
	{Query: "kind=double&limit=100", Params: store.ListParams{Kind: "double", Limit: 100}},
	{Query: "queue=default&limit=100", Params: store.ListParams{Queue: "default", Limit: 100}},
}

// readsResult is one run of the reads workload.
type readsResult struct {
	Rows    int
	Fill    time.Duration
	Get     []loadResult // taskd's GET /v1/tasks/{id}, one per pair
	BaseGet []loadResult // the read baseline's, paired with Get; empty unless asked for
	// GetCPU is the CPU of each of taskd's loads, µs a request (loadCPU);
	// the in-harness baseline's is only logged, its server's share being
	// mixed with the load generator's in the harness's.
	GetCPU []cpuPerTask
	// ProcGet and ProcCPU are the same baseline's in a process of its own
	// (startReadBaselineProcess), paired with Get; ProcCPU's Taskd is that
	// process's CPU.
	ProcGet  []loadResult
	ProcCPU  []cpuPerTask
	Sizes    [2]int       // bytes of taskd's and the baseline's answer for one task
	Lists    []loadResult // by listFilters
	RSSStart float64      // MiB, right after start
	RSSIdle  float64      // MiB, idle after the reads
	Peak     float64      // MiB
	Explains []string     // by listFilters
}

// fill inserts rows finished tasks (70% double, 20% sleep, 10% cpu on
// queue cpu), all completed within the last two hours so that the cleaner
// leaves them, with one attempt each, then vacuums and analyzes as
// autovacuum would after a bulk insert.
func fill(ctx context.Context, dbURL string, rows int) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	stmts := []string{
		`INSERT INTO river_job (args, attempt, attempted_at, attempted_by, created_at, finalized_at, kind,
			max_attempts, metadata, priority, queue, state, scheduled_at, tags)
		SELECT jsonb_build_object('value', g), 1, t + interval '1 ms', ARRAY['bench'], t, t + interval '2 ms', k,
			25, jsonb_build_object('output', jsonb_build_object('result', g * 2)), 1,
			CASE WHEN k = 'cpu' THEN 'cpu' ELSE 'default' END, 'completed', t, '{}'
		FROM (
			SELECT g, now() - interval '2 hours' + g * interval '1 ms' AS t,
				CASE WHEN g % 10 < 7 THEN 'double' WHEN g % 10 < 9 THEN 'sleep' ELSE 'cpu' END AS k
			FROM generate_series(1, ` + strconv.Itoa(rows) + `) AS g
		) AS s`,
		`INSERT INTO task_attempts (task_id, attempt, worker, started_at, finished_at, outcome, duration_ms)
		SELECT id, 1, 'bench', attempted_at, finalized_at, 'completed', 1 FROM river_job`,
		`VACUUM ANALYZE river_job`,
		`VACUUM ANALYZE task_attempts`,
	}
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("filling the table: %w", err)
		}
	}
	return nil
}

// reads starts taskd on a table of rows finished tasks and reads from it.
// full is scenario 5's workload (GET /v1/tasks/{id} at ReadConcurrency for
// Duration, each list for a quarter of Duration, EXPLAINs); otherwise a
// short one (2,000 GETs, 100 of each list), enough to measure memory.
// With baseline (and full), the GETs run Pairs times, each time followed
// by the same load against the read baseline (readBaseline) on the same
// table.
func (b *bench) reads(ctx context.Context, rows int, full, baseline bool) (*readsResult, error) {
	c := b.cfg
	res := &readsResult{Rows: rows}
	err := b.withDB(ctx, func(dbURL string) (err error) {
		start := time.Now()
		if err := fill(ctx, dbURL, rows); err != nil {
			return err
		}
		res.Fill = time.Since(start)
		b.logf("  filled %d finished tasks (with their attempts) in %s", rows, res.Fill.Round(time.Millisecond))
		// With -cpuprofile, the first GET load of scenario 5 is profiled.
		var env []string
		profile, pprofAddr := "", ""
		baseProfile, baseProfileAddr := "", ""
		if full && baseline && c.CPUProfile != "" {
			profile = profilePath(c.CPUProfile, 5)
			baseProfile = withSuffix(profile, "-baseline")
			if pprofAddr, err = freeAddr(); err != nil {
				return err
			}
			env = append(env, "TASKD_PPROF_ADDR="+pprofAddr)
		}
		p, err := startTaskd(ctx, b.taskd, dbURL, env...)
		if err != nil {
			return err
		}
		defer func() {
			if serr := p.stop(); serr != nil && err == nil {
				err = serr
			}
		}()
		sleep(ctx, c.Settle)
		if res.RSSStart, _, err = p.memory(); err != nil {
			return err
		}

		conc, warmup, dur := c.ReadConcurrency, c.Warmup, c.Duration
		if !full {
			conc, warmup, dur = 8, 0, 0
		}
		client := newHTTPClient(conc)
		// getFrom GETs random tasks from the server at base.
		getFrom := func(base string) func(ctx context.Context, _, _ int) error {
			return func(ctx context.Context, _, _ int) error {
				id := 1 + rand.IntN(rows)
				return do(ctx, client, http.MethodGet, base+"/v1/tasks/"+strconv.Itoa(id), nil, http.StatusOK)
			}
		}
		get := getFrom(p.base)
		// profiledGet runs one more GET load (not counted) while the
		// server's CPU profile is written to path.
		profiledGet := func(addr, path string, fn func(ctx context.Context, _, _ int) error) (loadResult, error) {
			done := b.startProfile(ctx, addr, path)
			r, err := timedLoad(ctx, conc, 0, time.Duration(c.ProfileSeconds)*time.Second+time.Second, fn)
			return r, errors.Join(err, <-done)
		}
		if full {
			var rb *readBaseline
			var bp *taskdProcess
			if baseline {
				if rb, err = startReadBaseline(ctx, dbURL); err != nil {
					return fmt.Errorf("read baseline: %w", err)
				}
				defer func() { err = errors.Join(err, rb.close(ctx)) }()
				var benv []string
				if profile != "" {
					if baseProfileAddr, err = freeAddr(); err != nil {
						return err
					}
					benv = append(benv, "TASKD_PPROF_ADDR="+baseProfileAddr)
				}
				if bp, err = startReadBaselineProcess(ctx, dbURL, benv...); err != nil {
					return fmt.Errorf("read baseline process: %w", err)
				}
				defer func() { err = errors.Join(err, bp.stop()) }()
				if res.Sizes[0], err = answerSize(ctx, client, p.base+"/v1/tasks/1"); err != nil {
					return err
				}
				if res.Sizes[1], err = answerSize(ctx, client, rb.base+"/v1/tasks/1"); err != nil {
					return err
				}
			}
			pairs := 1
			if baseline {
				pairs = c.Pairs
			}
			for i := 1; i <= pairs; i++ {
				r, cpu, err := loadCPU(ctx, p.pid(), conc, warmup, dur, get)
				if err != nil {
					return fmt.Errorf("GET /v1/tasks/{id}: %w", err)
				}
				res.Get, res.GetCPU = append(res.Get, r), append(res.GetCPU, cpu)
				if !baseline {
					break
				}
				b.logf("  pair %d taskd GET /v1/tasks/{id}:    %s; %s", i, r, cpu)
				if r, cpu, err = loadCPU(ctx, bp.pid(), conc, warmup, dur, getFrom(bp.base)); err != nil {
					return fmt.Errorf("read baseline process GET /v1/tasks/{id}: %w", err)
				}
				res.ProcGet, res.ProcCPU = append(res.ProcGet, r), append(res.ProcCPU, cpu)
				b.logf("  pair %d baseline (own process) GET /v1/tasks/{id}: %s; %s", i, r, cpu)
				if r, cpu, err = loadCPU(ctx, 0, conc, warmup, dur, getFrom(rb.base)); err != nil {
					return fmt.Errorf("read baseline GET /v1/tasks/{id}: %w", err)
				}
				res.BaseGet = append(res.BaseGet, r)
				b.logf("  pair %d baseline (in the harness) GET /v1/tasks/{id}: %s; %s", i, r, cpu)
			}
			if profile != "" {
				b.logf("  profiling one more GET load of the baseline's own process (not counted) into %s", baseProfile)
				r, err := profiledGet(baseProfileAddr, baseProfile, getFrom(bp.base))
				if err != nil {
					return fmt.Errorf("profiling the read baseline: %w", err)
				}
				if err := saveHarnessBinary(baseProfile); err != nil {
					return err
				}
				b.logf("  profiled load: %s; go tool pprof -top -nodecount=25 %s.bin %s", r, baseProfile, baseProfile)
			}
			if profile != "" {
				b.logf("  profiling one more taskd GET load (not counted) into %s", profile)
				r, err := profiledGet(pprofAddr, profile, get)
				if err != nil {
					return fmt.Errorf("profiling taskd: %w", err)
				}
				if err := b.saveProfileBinary(profile); err != nil {
					return err
				}
				b.logf("  profiled load: %s; go tool pprof -top -nodecount=25 %s.taskd %s", r, profile, profile)
			}
		} else if err := submitAll(ctx, 2000, 1, conc, func(ctx context.Context, _, _ int) error { return get(ctx, 0, 0) }); err != nil {
			return fmt.Errorf("GET /v1/tasks/{id}: %w", err)
		}
		for _, f := range listFilters {
			list := func(ctx context.Context, _, _ int) error {
				return do(ctx, client, http.MethodGet, p.base+"/v1/tasks?"+f.Query, nil, http.StatusOK)
			}
			if full {
				r, err := timedLoad(ctx, 1, min(warmup, time.Second), listDuration(dur), list)
				if err != nil {
					return fmt.Errorf("GET /v1/tasks?%s: %w", f.Query, err)
				}
				res.Lists = append(res.Lists, r)
			} else if err := submitAll(ctx, 100, 1, 1, func(ctx context.Context, _, _ int) error { return list(ctx, 0, 0) }); err != nil {
				return fmt.Errorf("GET /v1/tasks?%s: %w", f.Query, err)
			}
		}
		sleep(ctx, c.Settle)
		if res.RSSIdle, res.Peak, err = p.memory(); err != nil {
			return err
		}
		if full {
			pool, err := pgxpool.New(ctx, dbURL)
			if err != nil {
				return err
			}
			defer pool.Close()
			st := store.New(pool)
			for _, f := range listFilters {
				// The exact statement the store runs, run the same way.
				plan, err := st.ExplainTaskList(ctx, f.Params, true)
				if err != nil {
					return fmt.Errorf("EXPLAIN: %w", err)
				}
				res.Explains = append(res.Explains, plan)
			}
		}
		return nil
	})
	return res, err
}

// loadCPU is timedLoad with the CPU it costs, µs an operation (cpuSpan;
// pid is taskd's process, 0 for none). The span covers the warmup too, so
// its operations are estimated from the measured rate over the whole
// span: the load runs at a steady rate by then.
func loadCPU(ctx context.Context, pid, conc int, warmup, dur time.Duration, fn func(ctx context.Context, worker, i int) error) (loadResult, cpuPerTask, error) {
	start, span := time.Now(), startCPUSpan(pid)
	r, err := timedLoad(ctx, conc, warmup, dur, fn)
	if err != nil {
		return r, cpuPerTask{}, err
	}
	return r, span.perTask(int(r.Rate * time.Since(start).Seconds())), nil
}

// scenario5: reads on a table of Rows finished tasks.
func (b *bench) scenario5(ctx context.Context) error {
	c := b.cfg
	b.logf("scenario 5: reads with %d finished tasks: GET /v1/tasks/{id} at %d connections for %s, each list sequentially for %s", c.Rows, c.ReadConcurrency, c.Duration, listDuration(c.Duration))
	b.logf("  baseline: net/http + pgx in the harness, pool of %d, the same statement (store.RawTask: TaskGetByID) written as JSON with taskd's keys; alternately with taskd, %d pairs", taskdPoolSize, c.Pairs)
	r, err := b.reads(ctx, c.Rows, true, true)
	if err != nil {
		return err
	}
	b.reads5 = r
	b.logf("  answer for task 1: taskd %d bytes, baseline %d bytes", r.Sizes[0], r.Sizes[1])
	for i, f := range listFilters {
		b.logf("  GET /v1/tasks?%s: %s", f.Query, r.Lists[i])
	}
	b.logf("  taskd RSS: %.1f MiB after start, %.1f MiB idle after the reads, peak %.1f MiB", r.RSSStart, r.RSSIdle, r.Peak)
	for i, f := range listFilters {
		fmt.Fprintf(b.out, "  EXPLAIN (ANALYZE, BUFFERS) of the list query for ?%s:\n", f.Query)
		for line := range strings.SplitSeq(r.Explains[i], "\n") {
			fmt.Fprintf(b.out, "    %s\n", line)
		}
	}
	rowsLabel := "5 reads " + shortCount(c.Rows)
	var rps, p99, procRPS, procP99, baseRPS, baseP99 []float64
	for i := range r.Get {
		rps, p99 = append(rps, r.Get[i].Rate), append(p99, r.Get[i].P99)
		procRPS, procP99 = append(procRPS, r.ProcGet[i].Rate), append(procP99, r.ProcGet[i].P99)
		baseRPS, baseP99 = append(baseRPS, r.BaseGet[i].Rate), append(baseP99, r.BaseGet[i].P99)
	}
	// The baseline in a process of its own is the target's: taskd has one.
	// The same server inside the harness, as in the first rounds, is kept
	// beside it for comparison with their figures.
	const (
		procBaseline = "net/http+pgx, same SELECT, own process"
		baseline     = "the same in the harness's process"
	)
	b.compare(row{Scenario: rowsLabel, Metric: "GET /v1/tasks/{id} rps", A: rps, B: procRPS, Baseline: procBaseline, Target: "≥0.85× baseline"})
	b.compare(row{Scenario: rowsLabel, Metric: "GET /v1/tasks/{id} p99 ms", A: p99, B: procP99, Baseline: procBaseline, Target: "≤1.5× baseline"})
	b.compare(row{Scenario: rowsLabel, Metric: "GET /v1/tasks/{id} rps", A: rps, B: baseRPS, Baseline: baseline})
	b.compare(row{Scenario: rowsLabel, Metric: "GET /v1/tasks/{id} p99 ms", A: p99, B: baseP99, Baseline: baseline})
	// Where a GET's CPU goes (none where /proc cannot be read): taskd's
	// process against the baseline's, and PostgreSQL's for each.
	var machine, procMachine, taskdCPU, procCPU, pg, procPG []float64
	for i := range r.GetCPU {
		t, bp := r.GetCPU[i], r.ProcCPU[i]
		machine, procMachine = append(machine, t.Machine), append(procMachine, bp.Machine)
		taskdCPU, procCPU = append(taskdCPU, t.Taskd), append(procCPU, bp.Taskd)
		pg, procPG = append(pg, t.Postgres), append(procPG, bp.Postgres)
	}
	if !slices.Contains(machine, 0) && !slices.Contains(procMachine, 0) {
		b.compare(row{Scenario: rowsLabel, Metric: "GET machine CPU µs/request", A: machine, B: procMachine, Baseline: procBaseline})
	}
	if !slices.Contains(taskdCPU, 0) && !slices.Contains(procCPU, 0) {
		b.compare(row{Scenario: rowsLabel, Metric: "GET server CPU µs/request", A: taskdCPU, B: procCPU, Baseline: procBaseline})
	}
	if !slices.Contains(pg, 0) && !slices.Contains(procPG, 0) {
		b.compare(row{Scenario: rowsLabel, Metric: "GET PostgreSQL CPU µs/request", A: pg, B: procPG, Baseline: procBaseline})
	}
	for i, f := range listFilters {
		target := ""
		if i == 0 {
			target = "p99 ≤ 20 ms"
		}
		b.addRow(row{Scenario: rowsLabel, Metric: "list ?" + strings.TrimSuffix(f.Query, "&limit=100") + " p99 ms", A: []float64{r.Lists[i].P99}, Baseline: "(taskd only)", Target: target})
	}
	return nil
}

// scenario6: taskd's memory: peak during scenario 1, and idle with Rows
// finished tasks against a small table after the same reads.
func (b *bench) scenario6(ctx context.Context) error {
	c := b.cfg
	b.logf("scenario 6: memory")
	if len(b.s1RSS) == 0 {
		b.logf("  scenario 1 did not run: one taskd run of it for its peak RSS")
		r, err := b.e2eTaskd(ctx, e2eRun{N: c.N})
		if err != nil {
			return err
		}
		b.s1RSS = append(b.s1RSS, r.PeakRSS)
	}
	full := b.reads5 != nil
	big := b.reads5
	if big == nil {
		var err error
		if big, err = b.reads(ctx, c.Rows, false, false); err != nil {
			return err
		}
	}
	smallRows := min(1000, c.Rows)
	small, err := b.reads(ctx, smallRows, full, false)
	if err != nil {
		return err
	}
	b.logf("  peak RSS during scenario 1: %v MiB", b.s1RSS)
	b.logf("  %d rows: RSS %.1f MiB after start, %.1f MiB idle after reads; %d rows: %.1f / %.1f MiB", c.Rows, big.RSSStart, big.RSSIdle, smallRows, small.RSSStart, small.RSSIdle)
	b.addRow(row{Scenario: "6 memory", Metric: "peak RSS in S1 MiB", A: b.s1RSS, Baseline: "(taskd only)"})
	b.addRow(row{Scenario: "6 memory", Metric: "RSS after start MiB", A: []float64{big.RSSStart}, B: []float64{small.RSSStart},
		Baseline: fmt.Sprintf("taskd: %s vs %s rows", shortCount(c.Rows), shortCount(smallRows)), Target: "no growth with rows"})
	b.addRow(row{Scenario: "6 memory", Metric: "RSS idle after reads MiB", A: []float64{big.RSSIdle}, B: []float64{small.RSSIdle},
		Baseline: fmt.Sprintf("taskd: %s vs %s rows", shortCount(c.Rows), shortCount(smallRows)), Target: "no growth with rows"})
	if b.s3RSS > 0 {
		b.addRow(row{Scenario: "6 memory", Metric: "RSS after S3 MiB", A: []float64{b.s3RSS}, Baseline: "(taskd only)"})
	}
	return nil
}

func shortCount(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return strconv.Itoa(n/1_000_000) + "M"
	case n >= 1000 && n%1000 == 0:
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

// listDuration is how long each list of scenario 5 runs.
func listDuration(d time.Duration) time.Duration { return max(d/4, 250*time.Millisecond) }

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
