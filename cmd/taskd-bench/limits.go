package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/limits"
)

const (
	// limitProcessConns is the pool of each taskd process when scenario 11
	// runs several on one database: PostgreSQL's 100 connections are
	// shared with whoever else uses the server, and one slot's hand-over
	// needs few of them.
	limitProcessConns = 8
	// limitProcessesMax bounds -limit-processes for the same reason.
	limitProcessesMax = 5
)

// writeConfig writes a configuration file for taskd into the run's
// directory and returns its path.
func (b *bench) writeConfig(name, data string) (string, error) {
	path := filepath.Join(b.tmp, name)
	return path, os.WriteFile(path, []byte(data), 0o600)
}

// checkKindLimit fails unless GET /v1/kinds of p shows kind with exactly
// the concurrency cap want (0: no limit at all), so that a run measures
// the configuration it says it does.
func checkKindLimit(ctx context.Context, p *taskdProcess, kind string, want int) error {
	cl, err := client.New(p.base, client.Config{})
	if err != nil {
		return err
	}
	ks, err := cl.Kinds(ctx)
	if err != nil {
		return fmt.Errorf("GET /v1/kinds: %w", err)
	}
	i := slices.IndexFunc(ks, func(k client.Kind) bool { return k.Name == kind })
	if i < 0 {
		return fmt.Errorf("GET /v1/kinds has no kind %s", kind)
	}
	got := ks[i].Limits
	switch {
	case want == 0 && len(got) != 0:
		return fmt.Errorf("GET /v1/kinds: %s has limits %+v, want none", kind, got)
	case want != 0 && (len(got) != 1 || got[0].Concurrency != want):
		return fmt.Errorf("GET /v1/kinds: %s has limits %+v, want one of concurrency %d", kind, got, want)
	}
	return nil
}

// scenario10: the cost of a limit. Scenario 1's taskd run with a
// concurrency cap on double far above the workers (so that every task
// asks the limiter and none is refused) against the same binary with no
// limit, alternately.
func (b *bench) scenario10(ctx context.Context) error {
	c := b.cfg
	cfgPath, err := b.writeConfig("limit-cost.yaml", fmt.Sprintf("# scenario 10 (taskd-bench)\nlimits: [{kind: double, concurrency: %d}]\n", limits.ConcurrencyMax))
	if err != nil {
		return err
	}
	b.logf("scenario 10: limit cost: scenario 1 (%d double tasks, %d per batch, %d submitters) with limits: [{kind: double, concurrency: %d}] and with no limit alternately, %d pairs",
		c.N, c.BatchSize, c.Clients, limits.ConcurrencyMax, c.Pairs)
	check := func(want int) func(context.Context, *taskdProcess) error {
		return func(ctx context.Context, p *taskdProcess) error { return checkKindLimit(ctx, p, "double", want) }
	}
	var limited, none []float64
	for i := 1; i <= c.Pairs; i++ {
		r, err := b.e2eTaskd(ctx, e2eRun{N: c.N, Env: []string{"TASKD_CONFIG=" + cfgPath}, Check: check(limits.ConcurrencyMax)})
		if err != nil {
			return fmt.Errorf("with the limit: %w", err)
		}
		b.logf("  pair %d limit:    %s", i, r)
		limited = append(limited, r.Rate)
		r, err = b.e2eTaskd(ctx, e2eRun{N: c.N, Check: check(0)})
		if err != nil {
			return fmt.Errorf("without: %w", err)
		}
		b.logf("  pair %d no limit: %s", i, r)
		none = append(none, r.Rate)
	}
	b.compare(row{Scenario: "10 limit cost", Metric: "tasks/s", A: limited, B: none, Baseline: "same taskd, no limit", Target: "≥0.90× no limit"})
	if c.CPUProfile != "" {
		path := profilePath(c.CPUProfile, 10)
		b.logf("  profiling one more run with the limit (not counted) into %s", path)
		r, err := b.e2eTaskd(ctx, e2eRun{N: c.N, Env: []string{"TASKD_CONFIG=" + cfgPath}, Check: check(limits.ConcurrencyMax), Profile: path})
		if err != nil {
			return fmt.Errorf("profiled run: %w", err)
		}
		if err := b.saveProfileBinary(path); err != nil {
			return err
		}
		b.logf("  profiled run: %s; go tool pprof -top -nodecount=25 %s.taskd %s", r, path, path)
	}
	return nil
}

// limitWaitResult is one run of scenario 11, in ms: for each task after
// the first, its attempt's started_at less the previous attempt's
// finished_at, the moment the one slot was freed.
type limitWaitResult struct {
	P50, P95, Max, Min float64
	N                  int           // hand-overs (tasks − 1)
	MaxAt              int           // which hand-over (1 to N, in start order) took Max
	MaxAfter           time.Duration // when it started, after the first task started
	Negative           int           // hand-overs that started before the previous finished
	// Other* are the hand-overs to a task that ran in another process
	// than the previous one.
	Other              int
	OtherP50, OtherP95 float64
	// PutBack is how often a task was fetched and put back (River's
	// snoozes), on average: the waiting's cost in fetches.
	PutBack float64
}

func (r limitWaitResult) String() string {
	s := fmt.Sprintf("slot→start p50 %s ms, p95 %s ms, max %s ms (hand-over %d, %s after the first start), min %s ms (%d hand-overs, %d negative); put back %.2f× per task",
		num(r.P50), num(r.P95), num(r.Max), r.MaxAt, r.MaxAfter.Round(time.Millisecond), num(r.Min), r.N, r.Negative, r.PutBack)
	if r.Other > 0 {
		s += fmt.Sprintf("; %d to another process: p50 %s ms, p95 %s ms", r.Other, num(r.OtherP50), num(r.OtherP95))
	}
	return s
}

// sleepBatchBody returns a POST /v1/batches body of count sleep tasks of
// ms milliseconds.
func sleepBatchBody(count int, ms int64) []byte {
	b := []byte(`{"tasks":[`)
	for i := range count {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"kind":"sleep","args":{"ms":`...)
		b = strconv.AppendInt(b, ms, 10)
		b = append(b, `}}`...)
	}
	return append(b, `]}`...)
}

// limitWaitRun runs scenario 11 once on a fresh database with procs
// `taskd serve` processes sharing it, each with the configuration file at
// cfgPath: LimitWaitN sleep tasks submitted at once to the first, so that
// they queue for the one slot, and the hand-overs read from task_attempts
// once all have completed.
func (b *bench) limitWaitRun(ctx context.Context, cfgPath string, procs int) (limitWaitResult, error) {
	c := b.cfg
	var res limitWaitResult
	err := b.withDB(ctx, func(dbURL string) (err error) {
		env := []string{"TASKD_CONFIG=" + cfgPath}
		if procs > 1 {
			env = append(env, "TASKD_DB_MAX_CONNS="+strconv.Itoa(limitProcessConns))
		}
		var ps []*taskdProcess
		defer func() {
			for _, p := range ps {
				if serr := p.stop(); serr != nil {
					err = errors.Join(err, serr)
				}
			}
		}()
		for range procs {
			p, err := startTaskd(ctx, b.taskd, dbURL, env...)
			if err != nil {
				return err
			}
			ps = append(ps, p)
		}
		for _, p := range ps {
			if err := checkKindLimit(ctx, p, "sleep", 1); err != nil {
				return err
			}
		}
		w, err := newWatcher(ctx, dbURL)
		if err != nil {
			return err
		}
		defer w.close(ctx)
		hc := newHTTPClient(1)
		ms := c.LimitSleep.Milliseconds()
		err = submitAll(ctx, c.LimitWaitN, c.BatchSize, 1, func(ctx context.Context, _, count int) error {
			return do(ctx, hc, http.MethodPost, ps[0].base+"/v1/batches", sleepBatchBody(count, ms), http.StatusCreated)
		})
		if err != nil {
			return err
		}
		if err := w.waitDone(ctx, c.LimitWaitN, runLimit); err != nil {
			return err
		}
		res, err = w.limitWait(ctx, c.LimitWaitN)
		return err
	})
	return res, err
}

// limitWait reads the hand-overs of a scenario 11 run from task_attempts:
// every sleep task must have exactly one attempt, completed (waiting for
// the slot used none), and River's attempt must be 1.
func (w *watcher) limitWait(ctx context.Context, n int) (limitWaitResult, error) {
	rows, err := w.conn.Query(ctx, `SELECT a.started_at, a.finished_at, a.worker, a.outcome, j.attempt,
			coalesce((j.metadata->>'snoozes')::int, 0)
		FROM task_attempts a JOIN river_job j ON j.id = a.task_id
		WHERE j.kind = 'sleep'
		ORDER BY a.started_at, a.id`)
	if err != nil {
		return limitWaitResult{}, fmt.Errorf("reading attempts: %w", err)
	}
	type attempt struct {
		started, finished time.Time
		worker            string
	}
	var (
		as      []attempt
		snoozes int
	)
	for rows.Next() {
		var a attempt
		var outcome string
		var jobAttempt, s int
		if err := rows.Scan(&a.started, &a.finished, &a.worker, &outcome, &jobAttempt, &s); err != nil {
			return limitWaitResult{}, fmt.Errorf("reading attempts: %w", err)
		}
		if outcome != "completed" || jobAttempt != 1 {
			return limitWaitResult{}, fmt.Errorf("an attempt with outcome %s and River attempt %d: waiting for the slot must use no attempt", outcome, jobAttempt)
		}
		as = append(as, a)
		snoozes += s
	}
	if err := rows.Err(); err != nil {
		return limitWaitResult{}, fmt.Errorf("reading attempts: %w", err)
	}
	if len(as) != n {
		return limitWaitResult{}, fmt.Errorf("%d attempts of %d sleep tasks, want one each", len(as), n)
	}
	res := limitWaitResult{N: n - 1, PutBack: float64(snoozes) / float64(n)}
	var all, other []float64
	for i := 1; i < len(as); i++ {
		d := ms(as[i].started.Sub(as[i-1].finished))
		all = append(all, d)
		if i == 1 || d > all[res.MaxAt-1] {
			res.MaxAt, res.MaxAfter = i, as[i].started.Sub(as[0].started)
		}
		if d < 0 {
			res.Negative++
		}
		if as[i].worker != as[i-1].worker {
			other = append(other, d)
		}
	}
	slices.Sort(all)
	slices.Sort(other)
	res.P50, res.P95, res.Min, res.Max = percentile(all, 50), percentile(all, 95), all[0], all[len(all)-1]
	res.Other, res.OtherP50, res.OtherP95 = len(other), percentile(other, 50), percentile(other, 95)
	return res, nil
}

// scenario11: the limit wait delay. LimitWaitN short sleep tasks queue
// for the one slot of limits: [{kind: sleep, concurrency: 1}]; each
// hand-over's delay is from the slot's release (the previous attempt's
// finished_at) to the next attempt's start. One variant per entry of
// LimitProcesses, rounds alternating between them.
func (b *bench) scenario11(ctx context.Context) error {
	c := b.cfg
	path, err := b.writeConfig("limit-wait.yaml", "# scenario 11 (taskd-bench)\nlimits: [{kind: sleep, concurrency: 1}]\n")
	if err != nil {
		return err
	}
	b.logf("scenario 11: limit wait delay: %d sleep tasks of %s submitted at once under limits: [{kind: sleep, concurrency: 1}], with %v taskd processes on the database (pools of %d when more than one), %d rounds",
		c.LimitWaitN, c.LimitSleep, c.LimitProcesses, limitProcessConns, c.Pairs)
	// variant, metric (p50, p95, max, put back, other p50, other p95), rounds
	res := make([][6][]float64, len(c.LimitProcesses))
	for i := 1; i <= c.Pairs; i++ {
		for v, procs := range c.LimitProcesses {
			r, err := b.limitWaitRun(ctx, path, procs)
			if err != nil {
				return fmt.Errorf("%d processes: %w", procs, err)
			}
			b.logf("  round %d, %d process(es): %s", i, procs, r)
			for mi, x := range []float64{r.P50, r.P95, r.Max, r.PutBack, r.OtherP50, r.OtherP95} {
				if !math.IsNaN(x) { // no hand-over to another process
					res[v][mi] = append(res[v][mi], x)
				}
			}
		}
	}
	for v, procs := range c.LimitProcesses {
		name := fmt.Sprintf("11 limit wait P=%d", procs)
		b.compare(row{Scenario: name, Metric: "slot→start p50 ms", A: res[v][0], Baseline: "(taskd only)"})
		b.compare(row{Scenario: name, Metric: "slot→start p95 ms", A: res[v][1], Baseline: "(taskd only)", Target: "p95 ≤ 100 ms"})
		b.compare(row{Scenario: name, Metric: "slot→start max ms", A: res[v][2], Baseline: "(taskd only)"})
		b.compare(row{Scenario: name, Metric: "put back per task", A: res[v][3], Baseline: "(taskd only)"})
		if procs > 1 {
			b.compare(row{Scenario: name, Metric: "to other process p50 ms", A: res[v][4], Baseline: "(taskd only)"})
			b.compare(row{Scenario: name, Metric: "to other process p95 ms", A: res[v][5], Baseline: "(taskd only)", Target: "p95 ≤ 100 ms"})
		}
	}
	return nil
}
