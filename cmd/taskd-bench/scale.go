package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

const (
	// scaleAppAPI and scaleAppWorker are the application_name of scenario
	// 13's api process and (with its number) of its workers, so that
	// pg_stat_activity tells whose each backend is.
	scaleAppAPI    = "taskd-bench-api"
	scaleAppWorker = "taskd-bench-worker-"
	// scaleConnsBudget bounds scenario 13's processes' pools together: the
	// server's 100 connections are shared with whoever else uses it.
	scaleConnsBudget = 60
)

// Who a backend or a process of scenario 13 works for.
const (
	scaleAPI = iota
	scaleWorkers
	scaleHarness
	scaleGroups
)

// scaleIdle is what scenario 13's processes cost the database while no
// task is submitted.
type scaleIdle struct {
	XactRate float64          // transactions a second of the database (pg_stat_database)
	Conns    [scaleGroups]int // backends of the database, by group
	Listen   [scaleGroups]int // of them, the listening ones (countBackends)
}

func (s scaleIdle) String() string {
	return fmt.Sprintf("%.2f xact/s; backends api %d (%d LISTEN), workers %d (%d LISTEN), harness %d",
		s.XactRate, s.Conns[scaleAPI], s.Listen[scaleAPI], s.Conns[scaleWorkers], s.Listen[scaleWorkers], s.Conns[scaleHarness])
}

// scaleCPU is the CPU split of one scenario 13 load, each a share of the
// machine (all cores) over the load, 0–1.
type scaleCPU struct {
	// Postgres is PostgreSQL's backends serving each group's connections
	// (found by application_name at the end of the load).
	Postgres [scaleGroups]float64
	// PGBackground is PostgreSQL's own processes (WAL writer, checkpointer,
	// autovacuum launcher, …: pg_stat_activity rows without a database).
	PGBackground float64
	Taskd        [2]float64 // the api process, the worker processes together
	Harness      float64    // this process: submitters, watcher
	Other        float64    // busy with anything else (other users, the kernel, backends that exited)
	Idle         float64
}

func (c scaleCPU) pgTotal() float64 {
	return c.Postgres[scaleAPI] + c.Postgres[scaleWorkers] + c.Postgres[scaleHarness] + c.PGBackground
}

func (c scaleCPU) String() string {
	p := func(v float64) string { return fmt.Sprintf("%.0f%%", 100*v) }
	return fmt.Sprintf("CPU: postgres %s (for api %s, workers %s, harness %s, background %s), taskd api %s, workers %s, harness %s, other %s, idle %s",
		p(c.pgTotal()), p(c.Postgres[scaleAPI]), p(c.Postgres[scaleWorkers]), p(c.Postgres[scaleHarness]), p(c.PGBackground),
		p(c.Taskd[0]), p(c.Taskd[1]), p(c.Harness), p(c.Other), p(c.Idle))
}

// scaleRound is one run of scenario 13 with W worker processes.
type scaleRound struct {
	Base       *scaleIdle // the api process alone; measured in the first run of each round only
	Idle       scaleIdle  // with the W workers started, before the load
	Load       e2eResult
	CPU        scaleCPU
	AfterConns [scaleGroups]int // backends at the end of the load
}

// withAppName returns dbURL with application_name set to name (the URL
// may be a URL or a keyword/value connection string).
func withAppName(dbURL, name string) string {
	if u, err := url.Parse(dbURL); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("application_name", name)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dbURL + " application_name=" + name
}

// backend is a row of pg_stat_activity.
type backend struct {
	PID                 int
	Database, App, Kind string // datname ("" for PostgreSQL's own processes), application_name, backend_type
	Query               string
}

// activity reads pg_stat_activity on the admin connection.
func (d *databases) activity(ctx context.Context) ([]backend, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	rows, err := d.conn.Query(ctx, `SELECT pid, coalesce(datname, ''), coalesce(application_name, ''), coalesce(backend_type, ''), coalesce(query, '')
		FROM pg_stat_activity WHERE pid <> pg_backend_pid()`)
	if err != nil {
		return nil, fmt.Errorf("reading pg_stat_activity: %w", err)
	}
	defer rows.Close()
	var out []backend
	for rows.Next() {
		var b backend
		if err := rows.Scan(&b.PID, &b.Database, &b.App, &b.Kind, &b.Query); err != nil {
			return nil, fmt.Errorf("reading pg_stat_activity: %w", err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading pg_stat_activity: %w", err)
	}
	return out, nil
}

// scaleGroup says whose a backend of the benchmark's database is.
func scaleGroup(app string) int {
	switch {
	case app == scaleAppAPI:
		return scaleAPI
	case strings.HasPrefix(app, scaleAppWorker):
		return scaleWorkers
	default:
		return scaleHarness
	}
}

// databaseName is the database of dbURL.
func databaseName(dbURL string) (string, error) {
	if u, err := url.Parse(dbURL); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		return strings.TrimPrefix(u.Path, "/"), nil
	}
	_, name, ok := strings.Cut(dbURL, " dbname=")
	if !ok {
		return "", fmt.Errorf("no database in %q", dbURL)
	}
	return name, nil
}

// countBackends counts the backends of database by group, and the
// listening ones among them. pg_listening_channels() answers only for the
// caller's own backend, so a listener is told by its last statement:
// taskd's listeners sit in WaitForNotification after their LISTEN, and
// River's notifier pings its connection ("-- ping", pgx's Ping) every 5 s
// without a notification. A pooled connection's ping is always followed
// by the statement it was acquired for, so "-- ping" last is the notifier.
func countBackends(acts []backend, database string) (conns, listen [scaleGroups]int) {
	for _, a := range acts {
		if a.Database != database || a.Kind != "client backend" {
			continue
		}
		g := scaleGroup(a.App)
		conns[g]++
		if q := strings.TrimSpace(a.Query); strings.HasPrefix(strings.ToUpper(q), "LISTEN ") || q == "-- ping" {
			listen[g]++
		}
	}
	return conns, listen
}

// measureIdle waits XactSettle, then counts the database's transactions
// over XactWindow (as scenario 4 does) and its backends at the end.
func (b *bench) measureIdle(ctx context.Context, dbURL string) (scaleIdle, error) {
	c := b.cfg
	database, err := databaseName(dbURL)
	if err != nil {
		return scaleIdle{}, err
	}
	sleep(ctx, c.XactSettle)
	x0, err := b.dbs.xacts(ctx, dbURL)
	if err != nil {
		return scaleIdle{}, err
	}
	t0 := time.Now()
	sleep(ctx, c.XactWindow)
	if err := ctx.Err(); err != nil {
		return scaleIdle{}, err
	}
	x1, err := b.dbs.xacts(ctx, dbURL)
	if err != nil {
		return scaleIdle{}, err
	}
	res := scaleIdle{XactRate: float64(x1-x0) / time.Since(t0).Seconds()}
	acts, err := b.dbs.activity(ctx)
	if err != nil {
		return scaleIdle{}, err
	}
	res.Conns, res.Listen = countBackends(acts, database)
	return res, nil
}

// cpuSnapshot is the machine's CPU time and every process's at one moment,
// in USER_HZ.
type cpuSnapshot struct {
	machBusy, machAll uint64
	procs             map[int]uint64
}

// snapshotCPU reads /proc/stat and /proc/<pid>/stat of every process.
// Processes that exit while it reads are left out.
func snapshotCPU() (cpuSnapshot, error) {
	busy, all, err := machineTicks()
	if err != nil {
		return cpuSnapshot{}, err
	}
	s := cpuSnapshot{machBusy: busy, machAll: all, procs: map[int]uint64{}}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return cpuSnapshot{}, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if t, err := procTicks(pid); err == nil {
			s.procs[pid] = t
		}
	}
	return s, nil
}

// used is the CPU time pid used between s0 and s1; a process started
// after s0 counts from zero.
func used(s0, s1 cpuSnapshot, pid int) uint64 {
	t1, ok := s1.procs[pid]
	if !ok {
		return 0
	}
	t0 := s0.procs[pid]
	if t0 > t1 { // the pid was reused
		return t1
	}
	return t1 - t0
}

// splitCPU shares out the CPU used between s0 and s1: PostgreSQL's
// backends of database by group (acts, read at s1) and its background
// processes, the api process, the workers, this process, and the rest.
func splitCPU(s0, s1 cpuSnapshot, acts []backend, database string, api int, workers []int) scaleCPU {
	all := float64(s1.machAll - s0.machAll)
	if all <= 0 {
		return scaleCPU{}
	}
	share := func(t uint64) float64 { return float64(t) / all }
	var c scaleCPU
	var known uint64
	for _, a := range acts {
		t := used(s0, s1, a.PID)
		switch {
		case a.Database == "":
			c.PGBackground += share(t)
		case a.Database == database:
			c.Postgres[scaleGroup(a.App)] += share(t)
		default:
			continue
		}
		known += t
	}
	t := used(s0, s1, api)
	c.Taskd[0], known = share(t), known+t
	for _, pid := range workers {
		t := used(s0, s1, pid)
		c.Taskd[1], known = c.Taskd[1]+share(t), known+t
	}
	t = used(s0, s1, os.Getpid())
	c.Harness, known = share(t), known+t
	busy := s1.machBusy - s0.machBusy
	c.Idle = 1 - share(busy)
	if busy > known {
		c.Other = share(busy - known)
	}
	return c
}

// scaleRun is one run of scenario 13 on a fresh database: one `taskd api`
// and workers `taskd worker` processes, each with a pool of ScaleConns.
// With base, the api process's idle cost is measured alone first. Then
// the idle cost with the workers, then ScaleN double tasks submitted
// through the api process as in scenario 1, timed until the workers have
// completed them, with the CPU split over that time.
func (b *bench) scaleRun(ctx context.Context, workers int, base bool) (scaleRound, error) {
	c := b.cfg
	var res scaleRound
	err := b.withDB(ctx, func(dbURL string) (err error) {
		database, err := databaseName(dbURL)
		if err != nil {
			return err
		}
		conns := "TASKD_DB_MAX_CONNS=" + strconv.Itoa(c.ScaleConns)
		var ps []*taskdProcess
		defer func() {
			for i := len(ps) - 1; i >= 0; i-- { // workers first, the api process last
				if serr := ps[i].stop(); serr != nil {
					err = errors.Join(err, serr)
				}
			}
		}()
		api, err := startTaskdRole(ctx, b.taskd, "api", withAppName(dbURL, scaleAppAPI), conns)
		if err != nil {
			return fmt.Errorf("api: %w", err)
		}
		ps = append(ps, api)
		if base {
			idle, err := b.measureIdle(ctx, dbURL)
			if err != nil {
				return fmt.Errorf("api alone: %w", err)
			}
			res.Base = &idle
		}
		var pids []int
		for i := range workers {
			p, err := startTaskdRole(ctx, b.taskd, "worker", withAppName(dbURL, scaleAppWorker+strconv.Itoa(i+1)), conns)
			if err != nil {
				return fmt.Errorf("worker %d: %w", i+1, err)
			}
			ps, pids = append(ps, p), append(pids, p.pid())
		}
		if res.Idle, err = b.measureIdle(ctx, dbURL); err != nil {
			return fmt.Errorf("idle workers: %w", err)
		}
		w, err := newWatcher(ctx, dbURL)
		if err != nil {
			return err
		}
		defer w.close(ctx)
		client := newHTTPClient(c.Clients)
		full, last := batchBody("double", c.BatchSize), batchBody("double", c.ScaleN%c.BatchSize)
		s0, err := snapshotCPU()
		if err != nil {
			return err
		}
		start := time.Now()
		err = submitAll(ctx, c.ScaleN, c.BatchSize, c.Clients, func(ctx context.Context, _, count int) error {
			body := full
			if count != c.BatchSize {
				body = last
			}
			return do(ctx, client, http.MethodPost, api.base+"/v1/batches", body, http.StatusCreated)
		})
		if err != nil {
			return err
		}
		if err := w.waitDone(ctx, c.ScaleN, runLimit); err != nil {
			return err
		}
		res.Load.Elapsed = time.Since(start)
		res.Load.Rate = float64(c.ScaleN) / res.Load.Elapsed.Seconds()
		s1, err := snapshotCPU()
		if err != nil {
			return err
		}
		acts, err := b.dbs.activity(ctx)
		if err != nil {
			return err
		}
		res.CPU = splitCPU(s0, s1, acts, database, api.pid(), pids)
		res.AfterConns, _ = countBackends(acts, database)
		return nil
	})
	return res, err
}

// scenario13: scale-out. End-to-end tasks/s through one `taskd api` with
// 1, 2, 4 … `taskd worker` processes, the CPU split over each load, and
// what each worker process costs the database while idle.
func (b *bench) scenario13(ctx context.Context) error {
	c := b.cfg
	b.logf("scenario 13: scale-out: %d double tasks, %d per batch from %d submitters, through one taskd api with %v taskd worker processes (pools of %d each), idle cost over %s after %s, %d rounds",
		c.ScaleN, c.BatchSize, c.Clients, c.ScaleWorkers, c.ScaleConns, c.XactWindow, c.XactSettle, c.Pairs)
	type acc struct {
		rate, xact, xactPer, connsPer, listenPer, afterPer, apiConns, apiListen []float64
		cpu                                                                     [10][]float64
	}
	res := make([]acc, len(c.ScaleWorkers))
	var baseXact, baseConns, baseListen []float64
	for i := 1; i <= c.Pairs; i++ {
		var base *scaleIdle
		for v, workers := range c.ScaleWorkers {
			r, err := b.scaleRun(ctx, workers, v == 0)
			if err != nil {
				return fmt.Errorf("%d workers: %w", workers, err)
			}
			if r.Base != nil {
				base = r.Base
				b.logf("  round %d, api alone:  idle %s", i, base)
				baseXact, baseConns, baseListen = append(baseXact, base.XactRate), append(baseConns, float64(base.Conns[scaleAPI])), append(baseListen, float64(base.Listen[scaleAPI]))
			}
			b.logf("  round %d, %d worker(s): idle %s", i, workers, r.Idle)
			b.logf("  round %d, %d worker(s): %s; %s; backends after: api %d, workers %d", i, workers, r.Load, r.CPU, r.AfterConns[scaleAPI], r.AfterConns[scaleWorkers])
			a := &res[v]
			a.rate = append(a.rate, r.Load.Rate)
			a.xact = append(a.xact, r.Idle.XactRate)
			a.xactPer = append(a.xactPer, (r.Idle.XactRate-base.XactRate)/float64(workers))
			a.connsPer = append(a.connsPer, float64(r.Idle.Conns[scaleWorkers])/float64(workers))
			a.listenPer = append(a.listenPer, float64(r.Idle.Listen[scaleWorkers])/float64(workers))
			a.afterPer = append(a.afterPer, float64(r.AfterConns[scaleWorkers])/float64(workers))
			a.apiConns = append(a.apiConns, float64(r.Idle.Conns[scaleAPI]))
			a.apiListen = append(a.apiListen, float64(r.Idle.Listen[scaleAPI]))
			for mi, x := range []float64{r.CPU.pgTotal(), r.CPU.Postgres[scaleAPI], r.CPU.Postgres[scaleWorkers], r.CPU.Postgres[scaleHarness], r.CPU.PGBackground,
				r.CPU.Taskd[0], r.CPU.Taskd[1], r.CPU.Harness, r.CPU.Other, r.CPU.Idle} {
				a.cpu[mi] = append(a.cpu[mi], 100*x)
			}
		}
	}
	const alone = "api alone (W=0)"
	b.compare(row{Scenario: "13 scale idle W=0", Metric: "xact/s", A: baseXact, Baseline: "(api process only)"})
	b.compare(row{Scenario: "13 scale idle W=0", Metric: "api backends", A: baseConns, Baseline: "(api process only)"})
	b.compare(row{Scenario: "13 scale idle W=0", Metric: "api LISTEN backends", A: baseListen, Baseline: "(api process only)"})
	cpuMetrics := []string{"CPU % postgres", "CPU % pg for api", "CPU % pg for workers", "CPU % pg for harness", "CPU % pg background",
		"CPU % taskd api", "CPU % taskd workers", "CPU % harness", "CPU % other", "CPU % idle"}
	for v, workers := range c.ScaleWorkers {
		name := fmt.Sprintf("13 scale W=%d", workers)
		a := res[v]
		b.compare(row{Scenario: name, Metric: "tasks/s", A: a.rate, B: res[0].rate, Baseline: fmt.Sprintf("W=%d", c.ScaleWorkers[0])})
		for mi, metric := range cpuMetrics {
			b.compare(row{Scenario: name, Metric: metric, A: a.cpu[mi], Baseline: "(share of the machine during the load)"})
		}
		b.compare(row{Scenario: name, Metric: "idle xact/s", A: a.xact, B: baseXact, Baseline: alone})
		b.compare(row{Scenario: name, Metric: "idle xact/s per worker", A: a.xactPer, Baseline: "(W=n − W=0) / n"})
		b.compare(row{Scenario: name, Metric: "idle backends per worker", A: a.connsPer, Baseline: "(pg_stat_activity)"})
		b.compare(row{Scenario: name, Metric: "LISTEN backends per worker", A: a.listenPer, Baseline: "(last query LISTEN or -- ping)"})
		b.compare(row{Scenario: name, Metric: "backends per worker after load", A: a.afterPer, Baseline: fmt.Sprintf("(pool max %d + listeners)", c.ScaleConns)})
		b.compare(row{Scenario: name, Metric: "idle api backends", A: a.apiConns, B: baseConns, Baseline: alone})
	}
	return nil
}
