package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// runLimit bounds the wait for one run's jobs to finish.
const runLimit = 15 * time.Minute

// e2eResult is one run of scenario 1 (or 7, or 8).
type e2eResult struct {
	Rate    float64 // tasks a second, from the first submission to the last completion
	Elapsed time.Duration
	PeakRSS float64 // taskd only, MiB
	// WALPerTask is the server's WAL written from the first submission
	// to the last completion, in bytes, divided by the tasks
	// (databases.walLSN: other databases' writes count too).
	WALPerTask float64
	// WALRelations is the same WAL by relation of the run's database
	// alone, bytes per task (walByRelation), when -wal-relations asked
	// for it and the WAL was still there.
	WALRelations map[string]float64
	// Attempt is the run's task_attempts.duration_ms, when e2eRun.Attempts
	// asked for it.
	Attempt *attemptDurations
	// CPU is the run's CPU over the same span, µs a task (cpuSpan): the
	// whole machine's, and taskd's (taskd runs only), PostgreSQL's and the
	// harness's processes'. 0 where /proc cannot be read.
	CPU cpuPerTask
}

// ownWAL is the run's database's WAL, bytes per task (WALRelations).
func (r e2eResult) ownWAL() float64 {
	var sum float64
	for _, v := range r.WALRelations {
		sum += v
	}
	return sum
}

// walRelations formats WALRelations, largest first.
func (r e2eResult) walRelations() string {
	names := slices.Collect(maps.Keys(r.WALRelations))
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(r.WALRelations[b], r.WALRelations[a]) })
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %.0f", n, r.WALRelations[n])
	}
	return strings.Join(parts, ", ")
}

// attemptDurations are percentiles of attempt durations, ms.
type attemptDurations struct{ P50, P99 float64 }

func (r e2eResult) String() string {
	s := fmt.Sprintf("%.0f tasks/s (%s)", r.Rate, r.Elapsed.Round(time.Millisecond))
	if r.WALPerTask > 0 {
		s += fmt.Sprintf(", WAL %.0f bytes/task", r.WALPerTask)
	}
	if r.WALRelations != nil {
		s += fmt.Sprintf(" (own database %.0f)", r.ownWAL())
	}
	if r.CPU.Machine > 0 {
		s += fmt.Sprintf(", machine CPU %.1f µs/task", r.CPU.Machine)
		var parts []string
		for _, p := range []struct {
			name string
			v    float64
		}{{"taskd", r.CPU.Taskd}, {"PostgreSQL", r.CPU.Postgres}, {"harness", r.CPU.Harness}} {
			if p.v > 0 {
				parts = append(parts, fmt.Sprintf("%s %.1f", p.name, p.v))
			}
		}
		if parts != nil {
			s += " (" + strings.Join(parts, ", ") + ")"
		}
	}
	if r.PeakRSS > 0 {
		s += fmt.Sprintf(", peak RSS %.1f MiB", r.PeakRSS)
	}
	if r.Attempt != nil {
		s += fmt.Sprintf(", attempt p50 %s ms, p99 %s ms", num(r.Attempt.P50), num(r.Attempt.P99))
	}
	return s
}

// e2eRun is what one end-to-end run of taskd submits, and to which taskd.
type e2eRun struct {
	N    int
	Kind string   // of every task; "double" when empty
	Env  []string // taskd's settings beyond its defaults (KEY=VALUE)
	// Profile, when set, is where a CPU profile of taskd is written,
	// starting as submission starts.
	Profile string
	// Attempts measures the attempts' durations once the run is timed.
	Attempts bool
	// Schema are statements run on the fresh database before taskd
	// starts (scenario 1i changes its indexes).
	Schema []string
	// Check, when set, looks at the started taskd before anything is
	// submitted (scenario 10 checks that its limit is in force).
	Check func(ctx context.Context, p *taskdProcess) error
}

// withDB runs fn on a fresh database with taskd's schema, dropped
// afterwards.
func (b *bench) withDB(ctx context.Context, fn func(dbURL string) error) error {
	return b.withTemplate(ctx, b.dbs.template, fn)
}

// withTemplate runs fn on a fresh clone of template, dropped afterwards.
func (b *bench) withTemplate(ctx context.Context, template string, fn func(dbURL string) error) (err error) {
	name, dbURL, err := b.dbs.clone(ctx, template)
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, b.dbs.drop(context.WithoutCancel(ctx), name))
	}()
	return fn(dbURL)
}

// withTaskd runs fn against `taskd serve` on a fresh database.
func (b *bench) withTaskd(ctx context.Context, env []string, fn func(p *taskdProcess, w *watcher) error) error {
	return b.withTaskdOn(ctx, env, nil, fn)
}

// withTaskdOn is withTaskd with the statements of schema run on the fresh
// database before taskd starts (scenario 1i changes its indexes).
func (b *bench) withTaskdOn(ctx context.Context, env, schema []string, fn func(p *taskdProcess, w *watcher) error) error {
	return b.withDB(ctx, func(dbURL string) (err error) {
		if err := execAll(ctx, dbURL, schema); err != nil {
			return err
		}
		p, err := startTaskd(ctx, b.taskd, dbURL, env...)
		if err != nil {
			return err
		}
		defer func() {
			if serr := p.stop(); serr != nil {
				err = errors.Join(err, serr)
			}
		}()
		w, err := newWatcher(ctx, dbURL)
		if err != nil {
			return err
		}
		defer w.close(ctx)
		return fn(p, w)
	})
}

// withBare runs fn against bare River, working jobs, on a fresh database.
// Its database has River's schema only.
func (b *bench) withBare(ctx context.Context, fetch riverSettings, fn func(r *bareRiver, w *watcher) error) error {
	return b.withTemplate(ctx, b.dbs.riverTemplate, func(dbURL string) (err error) {
		if err := execAll(ctx, dbURL, fetch.Schema); err != nil {
			return err
		}
		r, err := startBareRiver(ctx, dbURL, fetch)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, r.close(ctx)) }()
		w, err := newWatcher(ctx, dbURL)
		if err != nil {
			return err
		}
		defer w.close(ctx)
		return fn(r, w)
	})
}

// e2eTaskd submits run.N tasks through POST /v1/batches and times them
// until the last is completed.
func (b *bench) e2eTaskd(ctx context.Context, run e2eRun) (e2eResult, error) {
	kind := cmp.Or(run.Kind, "double")
	env := slices.Clone(run.Env)
	var pprofAddr string
	if run.Profile != "" {
		var err error
		if pprofAddr, err = freeAddr(); err != nil {
			return e2eResult{}, err
		}
		env = append(env, "TASKD_PPROF_ADDR="+pprofAddr)
	}
	var res e2eResult
	err := b.withTaskdOn(ctx, env, run.Schema, func(p *taskdProcess, w *watcher) error {
		if run.Check != nil {
			if err := run.Check(ctx, p); err != nil {
				return err
			}
		}
		client := newHTTPClient(b.cfg.Clients)
		full, last := batchBody(kind, b.cfg.BatchSize), batchBody(kind, run.N%b.cfg.BatchSize)
		wal0, err := b.dbs.walLSN(ctx)
		if err != nil {
			return err
		}
		span := startCPUSpan(p.pid())
		start := time.Now()
		profDone := b.startProfile(ctx, pprofAddr, run.Profile)
		err = submitAll(ctx, run.N, b.cfg.BatchSize, b.cfg.Clients, func(ctx context.Context, first, count int) error {
			body := full
			if count != b.cfg.BatchSize {
				body = last
			}
			return do(ctx, client, http.MethodPost, p.base+"/v1/batches", body, http.StatusCreated)
		})
		if err != nil {
			return err
		}
		if err := w.waitDone(ctx, run.N, runLimit); err != nil {
			return err
		}
		res.Elapsed = time.Since(start)
		res.Rate = float64(run.N) / res.Elapsed.Seconds()
		res.CPU = span.perTask(run.N)
		if err := b.measureWAL(ctx, w, wal0, run.N, &res); err != nil {
			return err
		}
		if _, res.PeakRSS, err = p.memory(); err != nil {
			return err
		}
		if run.Attempts {
			p50, p99, err := w.attemptDurations(ctx, kind)
			if err != nil {
				return err
			}
			res.Attempt = &attemptDurations{P50: p50, P99: p99}
		}
		return <-profDone
	})
	return res, err
}

// startProfile starts fetching a CPU profile of the taskd whose pprof
// server is at addr into path, for cfg.ProfileSeconds, and then the
// process's allocations since it started into path.allocs (for
// go tool pprof -sample_index=alloc_space); the channel gives the outcome.
// With path empty, it fetches nothing and the channel gives nil at once.
func (b *bench) startProfile(ctx context.Context, addr, path string) <-chan error {
	done := make(chan error, 1)
	if path == "" {
		done <- nil
		return done
	}
	go func() {
		if err := fetchProfile(ctx, "http://"+addr+"/debug/pprof/profile?seconds="+strconv.Itoa(b.cfg.ProfileSeconds), path); err != nil {
			done <- err
			return
		}
		done <- fetchProfile(ctx, "http://"+addr+"/debug/pprof/allocs", path+".allocs")
	}()
	return done
}

// profilePath is the CPU profile file of a scenario other than 1: the
// -cpuprofile file with "-s<scenario>" before its extension.
func profilePath(base string, scenario int) string {
	return withSuffix(base, "-s"+strconv.Itoa(scenario))
}

// withSuffix is path with suffix before its extension.
func withSuffix(path, suffix string) string {
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + suffix + ext
}

// saveProfileBinary copies the taskd binary beside a profile, as
// <profile>.taskd, for pprof.
func (b *bench) saveProfileBinary(profile string) error {
	return copyFile(profile+".taskd", b.taskd)
}

// saveHarnessBinary copies the harness's own binary beside a profile of
// the harness, as <profile>.bin, for pprof.
func saveHarnessBinary(profile string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return copyFile(profile+".bin", exe)
}

// roundOrder is the order in which round (or pair) i, from 1, runs n
// variants: each round starts with the next one, so that none always
// runs first (with two, they alternate).
func roundOrder(i, n int) []int {
	order := make([]int, n)
	for k := range order {
		order[k] = (i - 1 + k) % n
	}
	return order
}

// e2eBare is e2eTaskd's counterpart: InsertManyTx from as many goroutines,
// and River's workers, with settings, working the jobs.
func (b *bench) e2eBare(ctx context.Context, settings riverSettings) (e2eResult, error) {
	return b.e2eBareFrom(ctx, settings, nil)
}

// e2eBareFrom is e2eBare, calling started (when set) as the submissions
// begin, once bare River runs.
func (b *bench) e2eBareFrom(ctx context.Context, settings riverSettings, started func() error) (e2eResult, error) {
	var res e2eResult
	err := b.withBare(ctx, settings, func(r *bareRiver, w *watcher) error {
		wal0, err := b.dbs.walLSN(ctx)
		if err != nil {
			return err
		}
		if started != nil {
			if err := started(); err != nil {
				return err
			}
		}
		span := startCPUSpan(0)
		start := time.Now()
		if err := submitAll(ctx, b.cfg.N, b.cfg.BatchSize, b.cfg.Clients, r.insertMany); err != nil {
			return err
		}
		if err := w.waitDone(ctx, b.cfg.N, runLimit); err != nil {
			return err
		}
		res.Elapsed = time.Since(start)
		res.Rate = float64(b.cfg.N) / res.Elapsed.Seconds()
		res.CPU = span.perTask(b.cfg.N)
		return b.measureWAL(ctx, w, wal0, b.cfg.N, &res)
	})
	return res, err
}

// logWALRelations logs r's WAL by relation, if measured.
func (b *bench) logWALRelations(r e2eResult) {
	if r.WALRelations != nil {
		b.logf("    WAL by relation, bytes/task: %s", r.walRelations())
	}
}

// measureWAL sets res's WAL figures for n tasks from wal0 to now: the
// server's, and with -wal-relations the run's database's by relation (a
// failure of which, such as WAL recycled already, is logged, not
// returned).
func (b *bench) measureWAL(ctx context.Context, w *watcher, wal0 int64, n int, res *e2eResult) error {
	wal1, err := b.dbs.walLSN(ctx)
	if err != nil {
		return err
	}
	res.WALPerTask = float64(wal1-wal0) / float64(n)
	if !b.cfg.WALRelations {
		return nil
	}
	rels, err := walByRelation(ctx, w.conn, wal0, wal1)
	if err != nil {
		b.logf("  (WAL by relation not available: %v)", err)
		return nil
	}
	res.WALRelations = map[string]float64{}
	for name, bytes := range rels {
		res.WALRelations[name] = float64(bytes) / float64(n)
	}
	return nil
}

func fetchProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetching profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching profile %s: status %d", url, resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func copyFile(dst, src string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o755)
}

// scenario1: end to end, batched.
func (b *bench) scenario1(ctx context.Context) error {
	c := b.cfg
	b.logf("scenario 1: end to end, batched: %d double tasks, %d per batch, %d concurrent submitters, %d pairs", c.N, c.BatchSize, c.Clients, c.Pairs)
	var a, base, wal, baseWAL, cpu, baseCPU, taskdCPU, pg, basePG, harness, baseHarness []float64
	// The order alternates, taskd first in odd pairs and bare River in
	// even ones, so that neither always runs after the other (a
	// checkpoint of the last run's WAL, the autovacuum of its dropped
	// database).
	for i := 1; i <= c.Pairs; i++ {
		for _, v := range roundOrder(i, 2) {
			if v == 1 { // bare River
				r, err := b.e2eBare(ctx, taskdFetch)
				if err != nil {
					return fmt.Errorf("bare River: %w", err)
				}
				b.logf("  pair %d bare River: %s", i, r)
				b.logWALRelations(r)
				base, baseWAL = append(base, r.Rate), append(baseWAL, r.WALPerTask)
				baseCPU = append(baseCPU, r.CPU.Machine)
				basePG, baseHarness = append(basePG, r.CPU.Postgres), append(baseHarness, r.CPU.Harness)
				continue
			}
			r, err := b.e2eTaskd(ctx, e2eRun{N: c.N})
			if err != nil {
				return fmt.Errorf("taskd: %w", err)
			}
			b.logf("  pair %d taskd:      %s", i, r)
			b.logWALRelations(r)
			a, b.s1RSS, wal = append(a, r.Rate), append(b.s1RSS, r.PeakRSS), append(wal, r.WALPerTask)
			cpu, taskdCPU = append(cpu, r.CPU.Machine), append(taskdCPU, r.CPU.Taskd)
			pg, harness = append(pg, r.CPU.Postgres), append(harness, r.CPU.Harness)
		}
	}
	b.s1 = a
	b.compare(row{Scenario: "1 e2e batched", Metric: "tasks/s", A: a, B: base, Baseline: "bare River", Target: "≥1.0× River"})
	b.comparePairs("1 e2e batched", "tasks/s", a, base)
	// The server's WAL, not the run's alone: only a quiet server gives the
	// run's own.
	b.compare(row{Scenario: "1 e2e batched", Metric: "WAL bytes/task", A: wal, B: baseWAL, Baseline: "bare River"})
	// The whole machine's, not taskd's alone (cpuSpan); none where /proc
	// cannot be read.
	if !slices.Contains(cpu, 0) && !slices.Contains(baseCPU, 0) {
		b.compare(row{Scenario: "1 e2e batched", Metric: "machine CPU µs/task", A: cpu, B: baseCPU, Baseline: "bare River"})
	}
	if !slices.Contains(taskdCPU, 0) {
		b.addRow(row{Scenario: "1 e2e batched", Metric: "taskd process CPU µs/task", A: taskdCPU, Baseline: "(taskd only)"})
	}
	// PostgreSQL's share, where the server runs on this machine, and the
	// harness's (for bare River, its River client; for taskd, the
	// submitters alone).
	if !slices.Contains(pg, 0) && !slices.Contains(basePG, 0) {
		b.compare(row{Scenario: "1 e2e batched", Metric: "PostgreSQL CPU µs/task", A: pg, B: basePG, Baseline: "bare River"})
	}
	if !slices.Contains(harness, 0) && !slices.Contains(baseHarness, 0) {
		b.compare(row{Scenario: "1 e2e batched", Metric: "harness CPU µs/task", A: harness, B: baseHarness, Baseline: "bare River"})
	}
	if c.CPUProfile != "" {
		b.logf("  profiling one more taskd run (not counted) into %s", c.CPUProfile)
		r, err := b.e2eTaskd(ctx, e2eRun{N: c.N, Profile: c.CPUProfile})
		if err != nil {
			return fmt.Errorf("profiled taskd run: %w", err)
		}
		if err := b.saveProfileBinary(c.CPUProfile); err != nil {
			return err
		}
		b.logf("  profiled run: %s; go tool pprof -top -nodecount=25 %s.taskd %s", r, c.CPUProfile, c.CPUProfile)
		if err := b.profileBare(ctx, taskdFetch); err != nil {
			return err
		}
	}
	return nil
}

// profileBare runs bare River once more (not counted) with a CPU profile of
// the harness, which hosts bare River's client (and the submitters), into
// <file>-bare, the harness's binary beside it as <profile>.bin: beside
// taskd's profile, what each spends a task on.
func (b *bench) profileBare(ctx context.Context, settings riverSettings) error {
	path := withSuffix(b.cfg.CPUProfile, "-bare")
	if err := saveHarnessBinary(path); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	b.logf("  profiling one more bare River run (not counted) into %s", path)
	// From the first submission, as taskd's profile.
	var stop *time.Timer
	r, err := b.e2eBareFrom(ctx, settings, func() error {
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		stop = time.AfterFunc(time.Duration(b.cfg.ProfileSeconds)*time.Second, pprof.StopCPUProfile)
		return nil
	})
	if stop != nil {
		stop.Stop()
		// Waits for a stop the timer began; does nothing after one.
		pprof.StopCPUProfile()
	}
	if err != nil {
		return fmt.Errorf("profiled bare River run: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	b.logf("  profiled run: %s; go tool pprof -top -nodecount=25 %s.bin %s", r, path, path)
	return nil
}

// scenario2: single submissions, C concurrent clients.
func (b *bench) scenario2(ctx context.Context) error {
	c := b.cfg
	b.logf("scenario 2: single submit for %s (after %s warm-up) at C=%v, %d rounds of taskd, taskd with an Idempotency-Key on every request, bare River InsertTx, and bare River InsertTx behind a minimal net/http handler in the harness and in a process of its own; every side works the jobs meanwhile", c.Duration, c.Warmup, c.Concurrency, c.Pairs)
	for _, conc := range c.Concurrency {
		var a, keyed, base, hop, own [3][]float64
		add := func(dst *[3][]float64, r loadResult) {
			dst[0], dst[1], dst[2] = append(dst[0], r.Rate), append(dst[1], r.P50), append(dst[2], r.P99)
		}
		// postLoad submits single tasks to the server at base for a timed
		// load, as taskd and both handler baselines are measured; with
		// keys, each request carries an Idempotency-Key of its own.
		postLoad := func(base string, keys bool) (loadResult, error) {
			client := newHTTPClient(conc)
			var n atomic.Int64
			return timedLoad(ctx, conc, c.Warmup, c.Duration, func(ctx context.Context, _, _ int) error {
				var header http.Header
				if keys {
					header = http.Header{"Idempotency-Key": {"bench-" + strconv.FormatInt(n.Add(1), 10)}}
				}
				return doWith(ctx, client, http.MethodPost, base+"/v1/tasks", taskBody, header, http.StatusCreated)
			})
		}
		for i := 1; i <= c.Pairs; i++ {
			var r loadResult
			err := b.withTaskd(ctx, nil, func(p *taskdProcess, _ *watcher) (err error) {
				r, err = postLoad(p.base, false)
				return err
			})
			if err != nil {
				return fmt.Errorf("taskd C=%d: %w", conc, err)
			}
			b.logf("  C=%d pair %d taskd:      %s", conc, i, r)
			add(&a, r)
			err = b.withTaskd(ctx, nil, func(p *taskdProcess, _ *watcher) (err error) {
				r, err = postLoad(p.base, true)
				return err
			})
			if err != nil {
				return fmt.Errorf("taskd with keys C=%d: %w", conc, err)
			}
			b.logf("  C=%d pair %d taskd, keys: %s", conc, i, r)
			add(&keyed, r)
			err = b.withBare(ctx, taskdFetch, func(rv *bareRiver, _ *watcher) (err error) {
				r, err = timedLoad(ctx, conc, c.Warmup, c.Duration, func(ctx context.Context, _, _ int) error {
					return rv.insertOne(ctx, 21)
				})
				return err
			})
			if err != nil {
				return fmt.Errorf("bare River C=%d: %w", conc, err)
			}
			b.logf("  C=%d pair %d bare River: %s", conc, i, r)
			add(&base, r)
			err = b.withBare(ctx, taskdFetch, func(rv *bareRiver, _ *watcher) (err error) {
				bs, err := startSubmitBaseline(rv)
				if err != nil {
					return err
				}
				defer func() { err = errors.Join(err, bs.close(ctx)) }()
				r, err = postLoad(bs.base, false)
				return err
			})
			if err != nil {
				return fmt.Errorf("bare River behind net/http C=%d: %w", conc, err)
			}
			b.logf("  C=%d pair %d bare River behind net/http: %s", conc, i, r)
			add(&hop, r)
			err = b.withTemplate(ctx, b.dbs.riverTemplate, func(dbURL string) (err error) {
				bp, err := startBaselineProcess(ctx, submitBaselineRole, dbURL)
				if err != nil {
					return err
				}
				defer func() { err = errors.Join(err, bp.stop()) }()
				r, err = postLoad(bp.base, false)
				return err
			})
			if err != nil {
				return fmt.Errorf("bare River behind net/http in its own process C=%d: %w", conc, err)
			}
			b.logf("  C=%d pair %d bare River behind net/http, own process: %s", conc, i, r)
			add(&own, r)
		}
		if c.CPUProfile != "" && conc == c.Concurrency[len(c.Concurrency)-1] {
			if err := b.profileSubmit(ctx, conc, taskBody); err != nil {
				return err
			}
		}
		name := "2 submit C=" + strconv.Itoa(conc)
		b.compare(row{Scenario: name, Metric: "tasks/s", A: a[0], B: base[0], Baseline: "bare River InsertTx", Target: "≥0.85× River"})
		b.compare(row{Scenario: name, Metric: "p50 ms", A: a[1], B: base[1], Baseline: "bare River InsertTx"})
		b.compare(row{Scenario: name, Metric: "p99 ms", A: a[2], B: base[2], Baseline: "bare River InsertTx", Target: "≤1.5× River"})
		b.compare(row{Scenario: name, Metric: "tasks/s, taskd with Idempotency-Key", A: keyed[0], B: base[0], Baseline: "bare River InsertTx"})
		b.compare(row{Scenario: name, Metric: "p99 ms, taskd with Idempotency-Key", A: keyed[2], B: base[2], Baseline: "bare River InsertTx"})
		const behind = "bare River InsertTx behind net/http"
		b.compare(row{Scenario: name, Metric: "tasks/s", A: a[0], B: hop[0], Baseline: behind})
		b.compare(row{Scenario: name, Metric: "p50 ms", A: a[1], B: hop[1], Baseline: behind})
		b.compare(row{Scenario: name, Metric: "p99 ms", A: a[2], B: hop[2], Baseline: behind})
		// The same handler in a process of its own, as taskd has: how
		// much of the gap is taskd's own (see the read baseline).
		const ownProcess = behind + ", own process"
		b.compare(row{Scenario: name, Metric: "tasks/s", A: a[0], B: own[0], Baseline: ownProcess})
		b.compare(row{Scenario: name, Metric: "p99 ms", A: a[2], B: own[2], Baseline: ownProcess})
		b.compare(row{Scenario: name, Metric: "tasks/s, own-process handler", A: own[0], B: base[0], Baseline: "bare River InsertTx"})
	}
	return nil
}

// profileSubmit runs scenario 2's taskd load once more at conc (not
// counted) with a CPU profile of taskd, into profilePath(CPUProfile, 2).
func (b *bench) profileSubmit(ctx context.Context, conc int, taskBody []byte) error {
	path := profilePath(b.cfg.CPUProfile, 2)
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	b.logf("  profiling one more taskd load at C=%d (not counted) into %s", conc, path)
	var r loadResult
	err = b.withTaskd(ctx, []string{"TASKD_PPROF_ADDR=" + addr}, func(p *taskdProcess, _ *watcher) (err error) {
		client := newHTTPClient(conc)
		done := b.startProfile(ctx, addr, path)
		r, err = timedLoad(ctx, conc, 0, time.Duration(b.cfg.ProfileSeconds)*time.Second+time.Second, func(ctx context.Context, _, _ int) error {
			return do(ctx, client, http.MethodPost, p.base+"/v1/tasks", taskBody, http.StatusCreated)
		})
		return errors.Join(err, <-done)
	})
	if err != nil {
		return fmt.Errorf("profiling taskd C=%d: %w", conc, err)
	}
	if err := b.saveProfileBinary(path); err != nil {
		return err
	}
	b.logf("  profiled load: %s; go tool pprof -top -nodecount=25 %s.taskd %s", r, path, path)
	return nil
}

// pickupResult is one run of scenario 3.
type pickupResult struct{ P50, P95, P99 float64 }

func (r pickupResult) String() string {
	return fmt.Sprintf("pickup p50 %s ms, p95 %s ms, p99 %s ms", num(r.P50), num(r.P95), num(r.P99))
}

// scenario3: pickup latency of tasks submitted one at a time into an idle
// service.
func (b *bench) scenario3(ctx context.Context) error {
	c := b.cfg
	n := max(1, int(c.PickupDuration.Seconds()*float64(c.PickupRate)))
	b.logf("scenario 3: pickup latency: %d tasks at %d/s one at a time into an idle service, %d rounds (taskd, River at taskd's settings, River at River's defaults)", n, c.PickupRate, c.Pairs)
	measure := func(w *watcher, submit func(ctx context.Context, i int) error) (pickupResult, error) {
		select {
		case <-ctx.Done():
			return pickupResult{}, ctx.Err()
		case <-time.After(c.Settle):
		}
		if err := paced(ctx, n, c.PickupRate, submit); err != nil {
			return pickupResult{}, err
		}
		if err := w.waitDone(ctx, n, runLimit); err != nil {
			return pickupResult{}, err
		}
		var r pickupResult
		var err error
		r.P50, r.P95, r.P99, err = w.pickup(ctx)
		return r, err
	}
	var res [3][3][]float64 // variant, percentile, runs
	add := func(v int, r pickupResult) {
		res[v][0], res[v][1], res[v][2] = append(res[v][0], r.P50), append(res[v][1], r.P95), append(res[v][2], r.P99)
	}
	for i := 1; i <= c.Pairs; i++ {
		err := b.withTaskd(ctx, nil, func(p *taskdProcess, w *watcher) error {
			client := newHTTPClient(1)
			r, err := measure(w, func(ctx context.Context, _ int) error {
				return do(ctx, client, http.MethodPost, p.base+"/v1/tasks", taskBody, http.StatusCreated)
			})
			if err != nil {
				return err
			}
			b.logf("  round %d taskd:                      %s", i, r)
			add(0, r)
			b.s3RSS, _, err = p.memory()
			return err
		})
		if err != nil {
			return fmt.Errorf("taskd: %w", err)
		}
		for v, fetch := range []riverSettings{taskdFetch, riverFetch} {
			err := b.withBare(ctx, fetch, func(rv *bareRiver, w *watcher) error {
				r, err := measure(w, func(ctx context.Context, _ int) error { return rv.insertOne(ctx, 21) })
				if err != nil {
					return err
				}
				b.logf("  round %d bare River, %-14s: %s", i, fetch.Name, r)
				add(v+1, r)
				return nil
			})
			if err != nil {
				return fmt.Errorf("bare River (%s): %w", fetch.Name, err)
			}
		}
	}
	targets := []string{"p50 ≤ 5 ms", "", "p99 ≤ 25 ms"}
	for v, fetch := range []riverSettings{taskdFetch, riverFetch} {
		baseline := fmt.Sprintf("bare River, %s (cooldown %s)", fetch.Name, fetch.FetchCooldown)
		for pi, metric := range []string{"pickup p50 ms", "pickup p95 ms", "pickup p99 ms"} {
			target := ""
			if v == 0 {
				target = targets[pi]
			}
			b.compare(row{Scenario: "3 pickup", Metric: metric, A: res[0][pi], B: res[v+1][pi], Baseline: baseline, Target: target})
		}
	}
	return nil
}

// scenario7: the cost of attempt recording, scenario 1 with
// TASKD_RECORD_ATTEMPTS=true and false alternately.
func (b *bench) scenario7(ctx context.Context) error {
	c := b.cfg
	b.logf("scenario 7: attempt recording: scenario 1 with TASKD_RECORD_ATTEMPTS=true and false alternately, %d pairs", c.Pairs)
	var on, off []float64
	// On first in odd pairs, off first in even ones (see scenario1).
	for i := 1; i <= c.Pairs; i++ {
		for _, v := range roundOrder(i, 2) {
			record := v == 0
			r, err := b.e2eTaskd(ctx, e2eRun{N: c.N, Env: []string{"TASKD_RECORD_ATTEMPTS=" + strconv.FormatBool(record)}})
			if err != nil {
				return fmt.Errorf("attempts recorded %t: %w", record, err)
			}
			if record {
				b.logf("  pair %d attempts on:  %s", i, r)
				on = append(on, r.Rate)
			} else {
				b.logf("  pair %d attempts off: %s", i, r)
				off = append(off, r.Rate)
			}
		}
	}
	b.compare(row{Scenario: "7 record attempts", Metric: "tasks/s", A: on, B: off, Baseline: "taskd, TASKD_RECORD_ATTEMPTS=false"})
	b.comparePairs("7 record attempts", "tasks/s", on, off)
	return nil
}
