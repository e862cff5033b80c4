package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"

	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/kinds/builtin"
)

const (
	// cpuReadRows is how many finished tasks scenario 12's GETs read from
	// (made by fill, as in scenario 5).
	cpuReadRows = 10_000
	// cpuTopUpEvery is how often scenario 12 checks the cpu backlog.
	cpuTopUpEvery = 200 * time.Millisecond
	// cpuBusyWithin bounds the wait for every cpu worker to be running.
	cpuBusyWithin = 30 * time.Second
	// userHZ is the unit of /proc/<pid>/stat's CPU times: USER_HZ, 100 on
	// every Linux architecture Go runs on.
	userHZ = 100
)

// defaultCPUWorkers is -cpu-workers' default: one per core, and taskd's
// default (jobs.CPUWorkersDefault, one fewer) when that differs.
func defaultCPUWorkers() string {
	n, d := runtime.NumCPU(), jobs.CPUWorkersDefault()
	if n == d {
		return strconv.Itoa(n)
	}
	return strconv.Itoa(n) + "," + strconv.Itoa(d)
}

// cpuPhase is one timed load of scenario 12.
type cpuPhase struct {
	Get loadResult
	// MachineBusy is the share of the machine's CPU time not idle during
	// the load (/proc/stat), 0–1.
	MachineBusy float64
	// TaskdCores is taskd's CPU time during the load over its length: the
	// cores it kept busy (/proc/<pid>/stat).
	TaskdCores float64
}

func (p cpuPhase) String() string {
	return fmt.Sprintf("GET %s; machine CPU %.0f%% busy, taskd %.2f cores", p.Get, 100*p.MachineBusy, p.TaskdCores)
}

// cpuRound is one round of scenario 12 for one number of cpu workers.
type cpuRound struct {
	Idle, Busy cpuPhase
	// Attempt is the p50 of the cpu attempts that finished, ms (NaN when
	// none did).
	Attempt   float64
	Submitted int // cpu tasks submitted to keep the workers busy
}

// cpuSample reads the machine's busy and total CPU time (/proc/stat, in
// USER_HZ) and the taskd process's (utime + stime).
type cpuSample struct {
	at                time.Time
	machBusy, machAll uint64
	taskd             uint64
}

func readCPU(pid int) (cpuSample, error) {
	s := cpuSample{at: time.Now()}
	var err error
	if s.machBusy, s.machAll, err = machineTicks(); err != nil {
		return s, err
	}
	if s.taskd, err = procTicks(pid); err != nil {
		return s, fmt.Errorf("reading taskd's CPU time: %w", err)
	}
	return s, nil
}

// machineTicks reads the machine's busy and total CPU time, all cores
// together, from /proc/stat in USER_HZ.
func machineTicks() (busy, all uint64, err error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("unexpected /proc/stat line %q", line)
	}
	for i, f := range fields[1:] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("unexpected /proc/stat line %q", line)
		}
		if i >= 8 { // guest and guest_nice are already in user and nice
			break
		}
		all += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, all, nil
}

// cpuSpan measures the CPU an end-to-end run costs: the whole machine's
// busy time (taskd, PostgreSQL, the harness's submitters and, for bare
// River, the harness's own River client) and how it divides between
// taskd's process, PostgreSQL's processes and the harness's. On a machine
// the load saturates, CPU per task is what throughput is made of, and
// where it goes says what to work on. It is only meaningful with nothing
// else running, and like throughput it compares only within a pair: the
// speed of a shared machine varies.
type cpuSpan struct {
	pid                   int
	busy, taskd, pg, self uint64
	okBusy, okTaskd, okPG bool
}

// cpuPerTask is a span's CPU in µs per task; 0 for what could not be read.
type cpuPerTask struct {
	Machine, Taskd, Postgres, Harness float64
}

// startCPUSpan starts a span; pid is taskd's process, 0 for none.
func startCPUSpan(pid int) cpuSpan {
	s := cpuSpan{pid: pid}
	var err error
	s.busy, _, err = machineTicks()
	s.okBusy = err == nil
	if pid != 0 {
		s.taskd, err = procTicks(pid)
		s.okTaskd = err == nil
	}
	s.pg, err = postgresTicks()
	s.okPG = err == nil
	s.self, _ = procTicks(os.Getpid())
	return s
}

// perTask returns the CPU since the span started, per task of n.
func (s cpuSpan) perTask(n int) cpuPerTask {
	var c cpuPerTask
	if n <= 0 {
		return c
	}
	perTask := func(ticks uint64) float64 { return float64(ticks) / userHZ * 1e6 / float64(n) }
	// A counter that went backwards (taskd died and its pid was taken)
	// gives no figure rather than a wrapped one.
	if busy, _, err := machineTicks(); err == nil && s.okBusy && busy >= s.busy {
		c.Machine = perTask(busy - s.busy)
	}
	if s.okTaskd {
		if t, err := procTicks(s.pid); err == nil && t >= s.taskd {
			c.Taskd = perTask(t - s.taskd)
		}
	}
	if s.okPG {
		if t, err := postgresTicks(); err == nil && t >= s.pg {
			c.Postgres = perTask(t - s.pg)
		}
	}
	if t, err := procTicks(os.Getpid()); err == nil && t >= s.self {
		c.Harness = perTask(t - s.self)
	}
	return c
}

// postgresTicks reads the CPU time of this machine's PostgreSQL servers:
// every process named postgres (utime + stime), and for a postmaster (one
// whose parent is not a postgres) also the time of its children that have
// exited (cutime + cstime), so that backends ending within a span still
// count. It fails where no postgres process can be seen (a server on
// another machine).
func postgresTicks() (uint64, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	procs := map[int]procStat{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readProcStat(pid)
		if err != nil || st.comm != "postgres" {
			continue // gone meanwhile, or another program
		}
		procs[pid] = st
	}
	if len(procs) == 0 {
		return 0, errors.New("no postgres process on this machine")
	}
	var sum uint64
	for _, p := range procs {
		sum += p.self
		if _, child := procs[p.ppid]; !child {
			sum += p.children
		}
	}
	return sum, nil
}

// procTicks reads the CPU time of process pid (utime + stime) from
// /proc/<pid>/stat in USER_HZ.
func procTicks(pid int) (uint64, error) {
	st, err := readProcStat(pid)
	return st.self, err
}

// procStat is what the harness reads of a process's /proc/<pid>/stat.
type procStat struct {
	comm string
	ppid int
	// self is the process's CPU time (utime + stime), children its
	// reaped children's (cutime + cstime), in USER_HZ.
	self, children uint64
}

func readProcStat(pid int) (procStat, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	bad := fmt.Errorf("unexpected /proc/%d/stat", pid)
	// The command name (field 2) is in parentheses and may hold spaces;
	// ppid is field 4, utime, stime, cutime and cstime fields 14 to 17.
	open, close := strings.IndexByte(string(data), '('), strings.LastIndex(string(data), ") ")
	if open < 0 || close < open {
		return procStat{}, bad
	}
	f := strings.Fields(string(data)[close+2:])
	if len(f) < 15 {
		return procStat{}, bad
	}
	st := procStat{comm: string(data[open+1 : close])}
	var n [4]uint64
	for i, field := range f[11:15] {
		if n[i], err = strconv.ParseUint(field, 10, 64); err != nil {
			return procStat{}, bad
		}
	}
	if st.ppid, err = strconv.Atoi(f[1]); err != nil {
		return procStat{}, bad
	}
	st.self, st.children = n[0]+n[1], n[2]+n[3]
	return st, nil
}

// measured runs load and reports it with the CPU use over it.
func measured(pid int, load func() (loadResult, error)) (cpuPhase, error) {
	s0, err := readCPU(pid)
	if err != nil {
		return cpuPhase{}, err
	}
	r, err := load()
	if err != nil {
		return cpuPhase{}, err
	}
	s1, err := readCPU(pid)
	if err != nil {
		return cpuPhase{}, err
	}
	p := cpuPhase{Get: r, TaskdCores: float64(s1.taskd-s0.taskd) / userHZ / s1.at.Sub(s0.at).Seconds()}
	if all := s1.machAll - s0.machAll; all > 0 {
		p.MachineBusy = float64(s1.machBusy-s0.machBusy) / float64(all)
	}
	return p, nil
}

// pacedLoad sends rate operations a second in all from conc goroutines
// for warmup+dur: goroutine w's i-th at start + (i·conc + w)/rate, or at
// once when its previous one finished late. Operations that start after
// the warmup and finish before the end are counted, and their latencies
// kept. Unlike timedLoad the load is fixed, so that latencies under two
// conditions compare. It stops at the first error.
func pacedLoad(ctx context.Context, conc, rate int, warmup, dur time.Duration, fn func(ctx context.Context) error) (loadResult, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	start := time.Now()
	measureStart := start.Add(warmup)
	end := measureStart.Add(dur)
	interval := time.Second / time.Duration(rate)
	lats := make([][]float64, conc)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Go(func() {
			for i := 0; ; i++ {
				at := start.Add(time.Duration(i*conc+w) * interval)
				if !at.Before(end) {
					return
				}
				sleep(ctx, time.Until(at))
				if ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				if err := fn(ctx); err != nil {
					cancel(err)
					return
				}
				if t1 := time.Now(); !t0.Before(measureStart) && !t1.After(end) {
					lats[w] = append(lats[w], ms(t1.Sub(t0)))
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return loadResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return loadResult{}, err
	}
	all := slices.Concat(lats...)
	slices.Sort(all)
	return loadResult{Count: len(all), Rate: float64(len(all)) / dur.Seconds(), P50: percentile(all, 50), P99: percentile(all, 99)}, nil
}

// cpuBatchBody is a POST /v1/batches body of count cpu tasks of n.
func cpuBatchBody(count, n int) []byte {
	item := `{"kind":"cpu","args":{"n":` + strconv.Itoa(n) + `}}`
	return []byte(`{"tasks":[` + strings.TrimSuffix(strings.Repeat(item+",", count), ",") + `]}`)
}

// saturator keeps at least workers cpu tasks waiting behind the running
// ones, so that every cpu worker stays busy: every cpuTopUpEvery it counts
// them on the watcher's connection (which nothing else uses meanwhile)
// and submits more when the backlog runs low.
type saturator struct {
	cancel    context.CancelFunc
	done      chan error
	running   atomic.Int64 // cpu tasks running at the last count
	submitted atomic.Int64
}

func startSaturator(ctx context.Context, w *watcher, base string, workers, n int) *saturator {
	ctx, cancel := context.WithCancel(ctx)
	s := &saturator{cancel: cancel, done: make(chan error, 1)}
	hc := newHTTPClient(1)
	body := cpuBatchBody(2*workers, n)
	go func() {
		s.done <- func() error {
			for {
				var running, available int64
				// Not cut by stop: pgx closes a connection whose query's
				// context ends under it, and the watcher's is read again
				// after the saturator stopped.
				qctx, qcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				err := w.conn.QueryRow(qctx, `SELECT count(*) FILTER (WHERE state = 'running'), count(*) FILTER (WHERE state = 'available')
					FROM river_job WHERE kind = 'cpu' AND state IN ('running', 'available')`).Scan(&running, &available)
				qcancel()
				if ctx.Err() != nil {
					return nil
				}
				if err != nil {
					return fmt.Errorf("counting cpu tasks: %w", err)
				}
				s.running.Store(running)
				if available < int64(workers) {
					if err := do(ctx, hc, http.MethodPost, base+"/v1/batches", body, http.StatusCreated); err != nil {
						if ctx.Err() != nil {
							return nil
						}
						return fmt.Errorf("submitting cpu tasks: %w", err)
					}
					s.submitted.Add(int64(2 * workers))
				}
				sleep(ctx, cpuTopUpEvery)
			}
		}()
	}()
	return s
}

// waitBusy waits until every cpu worker runs a task.
func (s *saturator) waitBusy(ctx context.Context, workers int) error {
	deadline := time.Now().Add(cpuBusyWithin)
	for s.running.Load() < int64(workers) {
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("the saturator stopped: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fewer than %d cpu tasks running after %s", workers, cpuBusyWithin)
		}
	}
	return nil
}

func (s *saturator) stop() error {
	s.cancel()
	return <-s.done
}

// cpuRun is one round of scenario 12 on a fresh database: `taskd serve`
// with workers cpu workers (and the default queue at its default), the
// paced GETs of random finished tasks once idle and once while cpu tasks
// keep every cpu worker busy.
func (b *bench) cpuRun(ctx context.Context, workers int) (cpuRound, error) {
	c := b.cfg
	var res cpuRound
	err := b.withDB(ctx, func(dbURL string) (err error) {
		if err := fill(ctx, dbURL, cpuReadRows); err != nil {
			return err
		}
		queues := fmt.Sprintf("TASKD_QUEUES=%s=%d,%s=%d", river.QueueDefault, jobs.QueueDefaultWorkers, builtin.QueueCPU, workers)
		p, err := startTaskd(ctx, b.taskd, dbURL, queues)
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
		hc := newHTTPClient(c.CPUConcurrency)
		get := func(ctx context.Context) error {
			return do(ctx, hc, http.MethodGet, p.base+"/v1/tasks/"+strconv.Itoa(1+rand.IntN(cpuReadRows)), nil, http.StatusOK)
		}
		load := func() (loadResult, error) {
			return pacedLoad(ctx, c.CPUConcurrency, c.CPURate, c.Warmup, c.CPUDuration, get)
		}
		sleep(ctx, c.Settle)
		if res.Idle, err = measured(p.pid(), load); err != nil {
			return fmt.Errorf("idle: %w", err)
		}
		sat := startSaturator(ctx, w, p.base, workers, c.CPUN)
		err = sat.waitBusy(ctx, workers)
		if err == nil {
			res.Busy, err = measured(p.pid(), load)
		}
		if err := errors.Join(err, sat.stop()); err != nil {
			return fmt.Errorf("saturated: %w", err)
		}
		res.Submitted = int(sat.submitted.Load())
		// The attempts that finished meanwhile (those still running when
		// taskd stops are not counted), not fill's made-up ones.
		var p50 *float64
		if err := w.conn.QueryRow(ctx, `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY a.duration_ms)
			FROM task_attempts a JOIN river_job j ON j.id = a.task_id WHERE j.kind = 'cpu' AND j.id > $1`, cpuReadRows).Scan(&p50); err != nil {
			return fmt.Errorf("measuring cpu attempts: %w", err)
		}
		res.Attempt = math.NaN()
		if p50 != nil {
			res.Attempt = *p50
		}
		return nil
	})
	return res, err
}

// scenario12: GET /v1/tasks/{id} latency at a fixed rate with the cpu
// queue idle and with cpu tasks keeping every cpu worker busy, for each
// number of cpu workers in CPUWorkers (rounds alternate between them).
func (b *bench) scenario12(ctx context.Context) error {
	c := b.cfg
	b.logf("scenario 12: CPU saturation: GET /v1/tasks/{id} of %d finished tasks at %d/s from %d clients for %s (after %s), idle and with cpu tasks (n=%d) keeping every cpu worker busy, cpu workers %v (%d cores), %d rounds",
		cpuReadRows, c.CPURate, c.CPUConcurrency, c.CPUDuration, c.Warmup, c.CPUN, c.CPUWorkers, runtime.NumCPU(), c.Pairs)
	// variant, metric (p50, p99, rate, machine busy %, taskd cores), idle/busy, rounds
	res := make([][5][2][]float64, len(c.CPUWorkers))
	attempt := make([][]float64, len(c.CPUWorkers))
	for i := 1; i <= c.Pairs; i++ {
		for v, workers := range c.CPUWorkers {
			r, err := b.cpuRun(ctx, workers)
			if err != nil {
				return fmt.Errorf("%d cpu workers: %w", workers, err)
			}
			b.logf("  round %d, %d cpu workers: idle: %s", i, workers, r.Idle)
			b.logf("  round %d, %d cpu workers: busy: %s; cpu attempt p50 %s ms, %d cpu tasks submitted", i, workers, r.Busy, num(r.Attempt), r.Submitted)
			for pi, ph := range []cpuPhase{r.Idle, r.Busy} {
				for mi, x := range []float64{ph.Get.P50, ph.Get.P99, ph.Get.Rate, 100 * ph.MachineBusy, ph.TaskdCores} {
					res[v][mi][pi] = append(res[v][mi][pi], x)
				}
			}
			if !math.IsNaN(r.Attempt) {
				attempt[v] = append(attempt[v], r.Attempt)
			}
		}
	}
	for v, workers := range c.CPUWorkers {
		name := fmt.Sprintf("12 cpu W=%d", workers)
		if workers == jobs.CPUWorkersDefault() {
			name += " (default)"
		}
		for mi, metric := range []string{"GET p50 ms", "GET p99 ms", "GET/s", "machine CPU busy %", "taskd CPU cores"} {
			b.compare(row{Scenario: name, Metric: metric, A: res[v][mi][1], B: res[v][mi][0], Baseline: "idle cpu queue, same taskd"})
		}
		b.compare(row{Scenario: name, Metric: "cpu attempt p50 ms", A: attempt[v], Baseline: "(taskd only)"})
	}
	return nil
}

// String names Taskd "server": the process measured, taskd's or a
// baseline's own.
func (c cpuPerTask) String() string {
	var parts []string
	for _, p := range []struct {
		name string
		v    float64
	}{{"machine", c.Machine}, {"server", c.Taskd}, {"PostgreSQL", c.Postgres}, {"harness", c.Harness}} {
		if p.v > 0 {
			parts = append(parts, fmt.Sprintf("%s %.1f", p.name, p.v))
		}
	}
	if parts == nil {
		return "CPU not read"
	}
	return "CPU µs/op: " + strings.Join(parts, ", ")
}
