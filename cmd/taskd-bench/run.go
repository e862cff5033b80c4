package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/tasks"
)

// config is the benchmark's configuration, from flags.
type config struct {
	AdminURL        string
	N               int           // tasks in scenarios 1 and 7
	BatchSize       int           // tasks per POST /v1/batches and per InsertManyTx
	Clients         int           // concurrent submitters in scenarios 1 and 7
	Duration        time.Duration // length of each timed load in scenarios 2 and 5
	Warmup          time.Duration // untimed lead-in of scenarios 2 and 5
	Settle          time.Duration // idle time before scenario 3 and before memory is read
	Pairs           int           // A B rounds per comparison
	Concurrency     []int         // client counts of scenario 2
	PickupRate      int           // tasks a second in scenario 3
	PickupDuration  time.Duration // how long scenario 3 submits
	Rows            int           // finished tasks in the table in scenarios 5 and 6
	ReadConcurrency int           // clients of GET /v1/tasks/{id} in scenario 5
	PushN           int           // tasks of the http kind in scenario 8
	PushWorkers     int           // workers of scenario 8's push queue
	PullN           int           // tasks claimed in each throughput run of scenario 9
	PullConcurrency []int         // concurrent claiming workers in scenario 9
	PullMax         []int         // the claims' max in scenario 9
	PullInFlight    int           // completes one scenario 9 worker runs at once
	ReleaseClaimers int           // waiting claims in scenario 9's release delay
	ReleaseN        int           // tasks inserted one at a time for the release delay
	ReleaseInterval time.Duration // pause between two of those inserts
	Waiters         int           // concurrent waiters in scenario 4's release delay
	WaitN           int           // tasks waited for in each of its release runs
	IdleWaiters     int           // waiters held while scenario 4 counts transactions
	XactWindow      time.Duration // how long scenario 4 counts transactions
	XactSettle      time.Duration // idle time before each count starts
	LimitWaitN      int           // sleep tasks queued for scenario 11's one slot
	LimitSleep      time.Duration // how long each of them sleeps
	LimitProcesses  []int         // taskd processes on the database in scenario 11's variants
	CPUN            int           // the n of scenario 12's cpu tasks
	CPUWorkers      []int         // cpu workers per variant of scenario 12
	CPURate         int           // GET /v1/tasks/{id} a second in scenario 12
	CPUConcurrency  int           // clients sending them
	CPUDuration     time.Duration // how long each of scenario 12's loads is timed
	ScaleN          int           // tasks in each run of scenario 13
	ScaleWorkers    []int         // taskd worker processes in scenario 13's variants
	ScaleConns      int           // the pool of each of scenario 13's processes
	TunedWorkers    int           // the default queue's workers of scenario 1b's tuned taskd and bare River
	TunedConns      int           // their pools
	TunedCooldown   time.Duration // their FetchCooldown
	TunedPoll       time.Duration // their FetchPollInterval
	WALRelations    bool          // read each end-to-end run's WAL by relation (pg_walinspect)
	Scenarios       []string
	TaskdBin        string // a prebuilt taskd binary; built when empty
	CPUProfile      string // write CPU profiles of taskd during scenarios 1, 2, 5, 8, 9 and 10 here (2 to 10: profilePath)
	ProfileSeconds  int
}

var allScenarios = []string{"1", "1b", "1i", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13"}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("taskd-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		n           = fs.Int("n", 200_000, "tasks in scenarios 1 (batched end to end) and 7 (attempt recording)")
		batch       = fs.Int("batch", 1000, "tasks per batch request (and per River InsertManyTx)")
		clients     = fs.Int("clients", 4, "concurrent submitters in scenarios 1 and 7")
		duration    = fs.Duration("duration", 20*time.Second, "length of each timed load in scenarios 2 and 5")
		warmup      = fs.Duration("warmup", 2*time.Second, "untimed lead-in before each timed load of scenarios 2 and 5")
		settle      = fs.Duration("settle", 2*time.Second, "idle time before scenario 3 submits and before taskd's memory is read")
		pairs       = fs.Int("pairs", 3, "alternating taskd/River rounds per comparison")
		conc        = fs.String("concurrency", "16,64", "client counts of scenario 2 (single submit)")
		rate        = fs.Int("pickup-rate", 200, "tasks a second submitted one at a time in scenario 3")
		pickupDur   = fs.Duration("pickup-duration", 10*time.Second, "how long scenario 3 submits")
		rows        = fs.Int("rows", 1_000_000, "finished tasks in the table for scenarios 5 and 6")
		readConc    = fs.Int("read-concurrency", 64, "concurrent GET /v1/tasks/{id} clients in scenario 5")
		pushN       = fs.Int("push-n", 50_000, "tasks of the http kind in scenario 8 (push), and of double in its paired runs")
		pushWorkers = fs.Int("push-workers", 200, "workers of scenario 8's push queue")
		pullN       = fs.Int("pull-n", 20_000, "tasks claimed and completed in each throughput run of scenario 9 (pull)")
		pullConc    = fs.String("pull-concurrency", "4,16", "concurrent claiming workers in scenario 9")
		pullMax     = fs.String("pull-max", "1,100", "the max of scenario 9's claims (1 to 100)")
		pullFlight  = fs.Int("pull-inflight", 1, "how many of its claimed tasks a scenario 9 worker completes at once (1: one after another)")
		relClaimers = fs.Int("release-claimers", 20, "claims waiting at once while scenario 9 measures the release delay")
		relN        = fs.Int("release-n", 200, "tasks inserted one at a time for scenario 9's release delay")
		relInterval = fs.Duration("release-interval", 20*time.Millisecond, "pause between two of those inserts")
		waiters     = fs.Int("waiters", 20, "concurrent waiters in scenario 4's release delay, each submitting a sleep task of 50–100 ms and waiting for it")
		waitN       = fs.Int("wait-n", 300, "tasks waited for in each of scenario 4's release runs")
		idleWaiters = fs.Int("idle-waiters", 1000, "waiters held at once while scenario 4 counts transactions (against 1)")
		xactWindow  = fs.Duration("xact-window", 15*time.Second, "how long scenario 4 counts transactions with 1 and with -idle-waiters waiters")
		xactSettle  = fs.Duration("xact-settle", 11*time.Second, "idle time before each of scenario 4's counts: PostgreSQL reports an idle backend's transactions up to 10 s late")
		limitWaitN  = fs.Int("limit-wait-n", 200, "sleep tasks submitted at once in scenario 11 (limit wait delay), queuing for one slot")
		limitSleep  = fs.Duration("limit-sleep", 50*time.Millisecond, "how long each of scenario 11's sleep tasks sleeps (whole milliseconds)")
		limitProcs  = fs.String("limit-processes", "1,3", "taskd processes sharing the database in scenario 11's variants")
		cpuN        = fs.Int("cpu-n", 8_000_000, "the n of scenario 12's cpu tasks (about 1 s each on the reference machine)")
		cpuWorkers  = fs.String("cpu-workers", defaultCPUWorkers(), "cpu workers of taskd in scenario 12's variants (default: one per core, as taskd, and one fewer)")
		cpuRate     = fs.Int("cpu-read-rate", 200, "GET /v1/tasks/{id} a second in scenario 12, idle and saturated")
		cpuConc     = fs.Int("cpu-read-concurrency", 4, "clients sending scenario 12's GETs, each at its share of -cpu-read-rate")
		cpuDuration = fs.Duration("cpu-duration", 10*time.Second, "how long each of scenario 12's loads (idle, saturated) is timed, after -warmup")
		scaleN      = fs.Int("scale-n", 50_000, "double tasks in each run of scenario 13 (scale-out)")
		scaleWork   = fs.String("scale-workers", "1,2,4", "taskd worker processes behind the one taskd api in scenario 13's variants")
		scaleConns  = fs.Int("scale-conns", 10, "TASKD_DB_MAX_CONNS of each of scenario 13's processes")
		tunedWork   = fs.Int("tuned-workers", 1000, "workers of the default queue of scenario 1b's tuned taskd and tuned bare River")
		tunedConns  = fs.Int("tuned-conns", 40, "pool size of scenario 1b's tuned taskd (TASKD_DB_MAX_CONNS) and tuned bare River")
		tunedCool   = fs.Duration("tuned-cooldown", 2*time.Millisecond, "FetchCooldown of scenario 1b's tuned taskd and tuned bare River")
		tunedPoll   = fs.Duration("tuned-poll", 20*time.Millisecond, "FetchPollInterval of scenario 1b's tuned taskd and tuned bare River")
		walRels     = fs.Bool("wal-relations", false, "after each end-to-end run (scenarios 1, 1b, 1i …), read its database's WAL by relation with pg_walinspect (per index: its own writes, even on a server others use; the WAL must not have been recycled yet, and reading it takes a while; needs a superuser; on with -smoke)")
		scenarios   = fs.String("scenarios", strings.Join(allScenarios, ","), "scenarios to run")
		taskdBin    = fs.String("taskd-bin", "", "use this taskd binary instead of building ./cmd/taskd")
		cpuProfile  = fs.String("cpuprofile", getenv("TASKD_BENCH_CPUPROFILE"), "after scenario 1's pairs, run taskd once more (not counted) and write a CPU profile of it here (and bare River once more, with a profile of the harness that hosts it, into <file>-bare, the harness's binary beside it as <profile>.bin), and likewise after scenario 2's pairs at the highest concurrency, scenario 5's GET pairs (and the read baseline's own process, into <file>-s5-baseline, its binary beside it as <profile>.bin) and scenarios 8, 9 and 10 into <file>-s2, <file>-s5, <file>-s8, <file>-s9 and <file>-s10 (before the file's extension); the binary is copied beside each as <profile>.taskd (TASKD_BENCH_CPUPROFILE)")
		profSeconds = fs.Int("cpuprofile-seconds", 10, "length of the CPU profile")
		smoke       = fs.Bool("smoke", false, "tiny sizes and durations everywhere (a quick check that every scenario works; its numbers mean nothing)")
	)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: taskd-bench [flags]\n\nDATABASE_URL names the admin database of a local PostgreSQL server; taskd-bench\ncreates and drops its own databases there.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg := &config{
		AdminURL: getenv("DATABASE_URL"), N: *n, BatchSize: *batch, Clients: *clients,
		Duration: *duration, Warmup: *warmup, Settle: *settle, Pairs: *pairs, PickupRate: *rate, PickupDuration: *pickupDur,
		Rows: *rows, ReadConcurrency: *readConc, TaskdBin: *taskdBin, CPUProfile: *cpuProfile, ProfileSeconds: *profSeconds,
		PushN: *pushN, PushWorkers: *pushWorkers, PullN: *pullN, ReleaseClaimers: *relClaimers, ReleaseN: *relN, ReleaseInterval: *relInterval,
		Waiters: *waiters, WaitN: *waitN, IdleWaiters: *idleWaiters, XactWindow: *xactWindow, XactSettle: *xactSettle,
		LimitWaitN: *limitWaitN, LimitSleep: *limitSleep, CPUN: *cpuN, CPURate: *cpuRate, CPUConcurrency: *cpuConc, CPUDuration: *cpuDuration,
		ScaleN: *scaleN, ScaleConns: *scaleConns,
		WALRelations: *walRels,
		TunedWorkers: *tunedWork, TunedConns: *tunedConns, TunedCooldown: *tunedCool, TunedPoll: *tunedPoll,
	}
	if *smoke {
		// Explicit flags still win over the smoke sizes.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		small := func(name string, dst *int, v int) {
			if !set[name] {
				*dst = v
			}
		}
		smallD := func(name string, dst *time.Duration, v time.Duration) {
			if !set[name] {
				*dst = v
			}
		}
		small("n", &cfg.N, 2000)
		small("batch", &cfg.BatchSize, 100)
		small("clients", &cfg.Clients, 2)
		small("pairs", &cfg.Pairs, 1)
		small("pickup-rate", &cfg.PickupRate, 50)
		small("rows", &cfg.Rows, 5000)
		small("read-concurrency", &cfg.ReadConcurrency, 4)
		small("push-n", &cfg.PushN, 1000)
		small("pull-n", &cfg.PullN, 500)
		small("release-n", &cfg.ReleaseN, 10)
		small("waiters", &cfg.Waiters, 4)
		small("wait-n", &cfg.WaitN, 10)
		small("idle-waiters", &cfg.IdleWaiters, 50)
		small("limit-wait-n", &cfg.LimitWaitN, 10)
		small("cpu-n", &cfg.CPUN, 1_000_000)
		small("scale-n", &cfg.ScaleN, 1000)
		small("scale-conns", &cfg.ScaleConns, 5)
		small("tuned-conns", &cfg.TunedConns, 8)
		if !set["wal-relations"] {
			cfg.WALRelations = true
		}
		if !set["scale-workers"] {
			*scaleWork = "1,2"
		}
		small("cpu-read-rate", &cfg.CPURate, 50)
		small("cpu-read-concurrency", &cfg.CPUConcurrency, 2)
		smallD("cpu-duration", &cfg.CPUDuration, time.Second)
		smallD("duration", &cfg.Duration, time.Second)
		smallD("warmup", &cfg.Warmup, 0)
		smallD("settle", &cfg.Settle, 200*time.Millisecond)
		smallD("pickup-duration", &cfg.PickupDuration, time.Second)
		smallD("xact-window", &cfg.XactWindow, 2*time.Second)
		smallD("xact-settle", &cfg.XactSettle, 500*time.Millisecond)
		if !set["concurrency"] {
			*conc = "4"
		}
	}
	if cfg.AdminURL == "" {
		return nil, errors.New("DATABASE_URL (the admin URL of a local PostgreSQL server) is required")
	}
	var err error
	if cfg.Concurrency, err = parseInts(*conc); err != nil {
		return nil, fmt.Errorf("invalid -concurrency %q: %v", *conc, err)
	}
	if cfg.PullConcurrency, err = parseInts(*pullConc); err != nil {
		return nil, fmt.Errorf("invalid -pull-concurrency %q: %v", *pullConc, err)
	}
	if *pullFlight < 1 || *pullFlight > tasks.ClaimMaxTasks {
		return nil, fmt.Errorf("invalid -pull-inflight %d: want 1 to %d", *pullFlight, tasks.ClaimMaxTasks)
	}
	cfg.PullInFlight = *pullFlight
	if cfg.PullMax, err = parseInts(*pullMax); err != nil || slices.Max(cfg.PullMax) > tasks.ClaimMaxTasks {
		return nil, fmt.Errorf("invalid -pull-max %q: want numbers between 1 and %d", *pullMax, tasks.ClaimMaxTasks)
	}
	if cfg.LimitProcesses, err = parseInts(*limitProcs); err != nil {
		return nil, fmt.Errorf("invalid -limit-processes %q: %v", *limitProcs, err)
	}
	if cfg.CPUWorkers, err = parseInts(*cpuWorkers); err != nil {
		return nil, fmt.Errorf("invalid -cpu-workers %q: %v", *cpuWorkers, err)
	}
	if cfg.ScaleWorkers, err = parseInts(*scaleWork); err != nil {
		return nil, fmt.Errorf("invalid -scale-workers %q: %v", *scaleWork, err)
	}
	for item := range strings.SplitSeq(*scenarios, ",") {
		item = strings.TrimSpace(item)
		switch {
		case item == "" || slices.Contains(cfg.Scenarios, item):
		case !slices.Contains(allScenarios, item):
			return nil, fmt.Errorf("invalid -scenarios %q: no scenario %q (there are %s)", *scenarios, item, strings.Join(allScenarios, ", "))
		default:
			cfg.Scenarios = append(cfg.Scenarios, item)
		}
	}
	if len(cfg.Scenarios) == 0 {
		return nil, fmt.Errorf("invalid -scenarios %q: empty list", *scenarios)
	}
	switch {
	case cfg.N < 1, cfg.BatchSize < 1 || cfg.BatchSize > tasks.BatchMax, cfg.Clients < 1, cfg.Pairs < 1,
		cfg.PickupRate < 1, cfg.Rows < 1, cfg.ReadConcurrency < 1, cfg.ProfileSeconds < 1,
		cfg.PushN < 1, cfg.PushWorkers < 1, cfg.PullN < 1, cfg.ReleaseClaimers < 1, cfg.ReleaseN < 1:
		return nil, fmt.Errorf("-n, -clients, -pairs, -pickup-rate, -rows, -read-concurrency, -cpuprofile-seconds, -push-n, -push-workers, -pull-n, -release-claimers and -release-n must be positive, -batch between 1 and %d", tasks.BatchMax)
	case cfg.Duration <= 0 || cfg.PickupDuration <= 0 || cfg.Warmup < 0 || cfg.Settle < 0 || cfg.ReleaseInterval < 0:
		return nil, errors.New("-duration and -pickup-duration must be positive, -warmup, -settle and -release-interval not negative")
	case cfg.Waiters < 1 || cfg.WaitN < 1 || cfg.IdleWaiters < 1:
		return nil, errors.New("-waiters, -wait-n and -idle-waiters must be positive")
	case cfg.LimitWaitN < 2 || cfg.LimitSleep < time.Millisecond || cfg.LimitSleep%time.Millisecond != 0:
		return nil, errors.New("-limit-wait-n must be at least 2 and -limit-sleep whole milliseconds, at least 1ms")
	case slices.Max(cfg.LimitProcesses) > limitProcessesMax:
		return nil, fmt.Errorf("-limit-processes: at most %d processes (each has a pool of %d connections)", limitProcessesMax, limitProcessConns)
	case cfg.CPUN < 1 || cfg.CPUN > builtin.CPUMaxN || cfg.CPURate < 1 || cfg.CPUConcurrency < 1 || cfg.CPUDuration <= 0:
		return nil, fmt.Errorf("-cpu-n must be between 1 and %d, -cpu-read-rate, -cpu-read-concurrency and -cpu-duration positive", builtin.CPUMaxN)
	case cfg.TunedWorkers < 1 || cfg.TunedConns < 1 || cfg.TunedCooldown <= 0 || cfg.TunedPoll <= 0:
		return nil, errors.New("-tuned-workers, -tuned-conns, -tuned-cooldown and -tuned-poll must be positive")
	case cfg.ScaleN < 1 || cfg.ScaleConns < 1:
		return nil, errors.New("-scale-n and -scale-conns must be positive")
	case (slices.Max(cfg.ScaleWorkers)+1)*cfg.ScaleConns > scaleConnsBudget:
		return nil, fmt.Errorf("-scale-workers and -scale-conns: (%d workers + the api) × %d connections is more than %d of PostgreSQL's connections", slices.Max(cfg.ScaleWorkers), cfg.ScaleConns, scaleConnsBudget)
	case cfg.XactWindow <= 0 || cfg.XactSettle < 0 || cfg.XactSettle+cfg.XactWindow > heldWait-10*time.Second:
		// The held waits must outlast the settle and the window.
		return nil, fmt.Errorf("-xact-window must be positive, -xact-settle not negative, and the two together at most %s", heldWait-10*time.Second)
	}
	return cfg, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		v, err := strconv.Atoi(item)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", item)
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

// bench holds what every scenario shares.
type bench struct {
	cfg    *config
	out    io.Writer
	dbs    *databases
	taskd  string // path of the taskd binary
	tmp    string // a directory of the run's own, removed at the end
	table  []row
	s1     []float64    // taskd's tasks/s in each scenario-1 run
	s1RSS  []float64    // peak RSS of taskd in each scenario-1 run, MiB
	s3RSS  float64      // idle RSS of taskd after scenario 3 (a near-empty table), MiB
	reads5 *readsResult // scenario 5's run, reused by scenario 6
}

// run is the whole program, with its environment passed in so that the
// smoke test can run it in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) (err error) {
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	b := &bench{cfg: cfg, out: stdout}

	tmp, err := os.MkdirTemp("", "taskd-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	b.tmp = tmp
	b.taskd = cfg.TaskdBin
	if b.taskd == "" {
		b.taskd = filepath.Join(tmp, "taskd")
		b.logf("building taskd into %s", b.taskd)
		if err := buildTaskd(ctx, b.taskd, stderr); err != nil {
			return err
		}
	}

	if b.dbs, err = openDatabases(ctx, cfg.AdminURL); err != nil {
		return err
	}
	defer func() {
		if cerr := b.dbs.close(context.WithoutCancel(ctx)); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()

	b.printMachine(ctx)
	has := func(s string) bool { return slices.Contains(cfg.Scenarios, s) }
	steps := []struct {
		scenario string
		run      func(context.Context) error
	}{
		{"1", b.scenario1},
		{"1b", b.scenario1b},
		{"1i", b.scenario1i},
		{"2", b.scenario2},
		{"3", b.scenario3},
		{"4", b.scenario4},
		{"5", b.scenario5},
		{"6", b.scenario6},
		{"7", b.scenario7},
		{"8", b.scenario8},
		{"9", b.scenario9},
		{"10", b.scenario10},
		{"11", b.scenario11},
		{"12", b.scenario12},
		{"13", b.scenario13},
	}
	for _, s := range steps {
		if !has(s.scenario) {
			continue
		}
		if err := s.run(ctx); err != nil {
			return fmt.Errorf("scenario %s: %w", s.scenario, err)
		}
	}
	b.printTable()
	return nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.out, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// printMachine prints what the numbers were measured on.
func (b *bench) printMachine(ctx context.Context) {
	fmt.Fprintf(b.out, "machine: %d CPUs (runtime.NumCPU), %s, %s/%s, %s\n", runtime.NumCPU(), memTotal(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	fmt.Fprintf(b.out, "postgres: %s\n", b.dbs.serverVersion(ctx))
	c := b.cfg
	fmt.Fprintf(b.out, "settings: n=%d batch=%d clients=%d duration=%s warmup=%s settle=%s pairs=%d concurrency=%v pickup=%d/s for %s rows=%d read-concurrency=%d push-n=%d push-workers=%d pull-n=%d pull-concurrency=%v pull-max=%v pull-inflight=%d release=%d claimers, %d inserts %s apart waiters=%d wait-n=%d idle-waiters=%d xact-window=%s xact-settle=%s limit-wait-n=%d limit-sleep=%s limit-processes=%v cpu-n=%d cpu-workers=%v cpu-read=%d/s from %d clients for %s scale-n=%d scale-workers=%v scale-conns=%d tuned=%d workers, %d conns, cooldown %s, poll %s scenarios=%v\n",
		c.N, c.BatchSize, c.Clients, c.Duration, c.Warmup, c.Settle, c.Pairs, c.Concurrency, c.PickupRate, c.PickupDuration, c.Rows, c.ReadConcurrency,
		c.PushN, c.PushWorkers, c.PullN, c.PullConcurrency, c.PullMax, c.PullInFlight, c.ReleaseClaimers, c.ReleaseN, c.ReleaseInterval,
		c.Waiters, c.WaitN, c.IdleWaiters, c.XactWindow, c.XactSettle,
		c.LimitWaitN, c.LimitSleep, c.LimitProcesses, c.CPUN, c.CPUWorkers, c.CPURate, c.CPUConcurrency, c.CPUDuration, c.ScaleN, c.ScaleWorkers, c.ScaleConns, c.TunedWorkers, c.TunedConns, c.TunedCooldown, c.TunedPoll, c.Scenarios)
	fmt.Fprintf(b.out, "bare River: default queue %d workers, FetchCooldown %s, FetchPollInterval %s (taskd's defaults); River's own defaults are %s / %s\n",
		jobs.QueueDefaultWorkers, jobs.FetchCooldownDefault, jobs.FetchPollIntervalDefault, river.FetchCooldownDefault, river.FetchPollIntervalDefault)
}

func memTotal() string {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "memory unknown"
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return fmt.Sprintf("%.1f GiB RAM", kb/1024/1024)
		}
	}
	return "memory unknown"
}
