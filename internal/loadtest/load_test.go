package loadtest

// TestChaosLoad: one `taskd serve` under a steady submit rate of steady
// work. Every acknowledged task must be seen final (0 lost), and what
// would grow without bound if taskd leaked (goroutines, memory,
// connections, the size of river_job and task_attempts) must level off:
// the last third of the run is compared with the middle third, the first
// third being warm-up. The samples go to a CSV and a plot.

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/chaos"
	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/taskdtest"
)

const (
	// loadDurationDefault is the submitting time when TASKD_LOAD_DURATION
	// is not set: short enough for CI's `make test`, long enough for
	// River's cleaner (every 30 s) to have deleted tasks once.
	loadDurationDefault = 45 * time.Second

	// The submit rate: a single POST /v1/tasks every loadTick (50/s) and
	// a batch of loadBatchSize every loadBatchEvery ticks (100/s): 150
	// tasks/s, about 2% of what PERFORMANCE.md measured batched, so that
	// the run measures a steady state rather than a saturated one.
	loadTick       = 20 * time.Millisecond
	loadBatchEvery = 5
	loadBatchSize  = 10

	// loadSenders requests are in flight at most; a tick that finds all
	// of them busy and loadBacklog tickets waiting is skipped (and
	// counted). A fixed number of senders keeps the number of HTTP
	// connections, each a goroutine in taskd, from following latency.
	loadSenders = 8
	loadBacklog = 256

	// Each task sleeps 20–100 ms (loadSleepMS).
	loadSleepMinMS, loadSleepSpanMS = 20, 81

	// loadWorkers works the default queue: 150 tasks/s of 60 ms on average
	// keep 9 busy, and 20 drain a backlog at twice the rate. Not River's
	// 100: a backlog after a stall would start up to 100 goroutines at
	// once, which the goroutine bound would take for a leak.
	loadWorkers = 20

	// The read load: a GET /v1/tasks/{id} of a recent task every
	// loadReadEvery, and a list (GET /v1/tasks) every loadListEvery reads.
	loadReadEvery = 100 * time.Millisecond
	loadListEvery = 10

	// loadDBMaxConns is taskd's pool (several test runs share one
	// PostgreSQL).
	loadDBMaxConns = 8

	// loadRetentionMin and loadRetentionMax bound the completed retention,
	// a tenth of the duration: 5 s at 45 s (the cleaner's run at about
	// 30 s deletes the tasks finished in the first 25 s), 1 minute at 10
	// minutes. A finished task then stays at most retention + 30 s (the
	// cleaner's interval), so river_job should stop growing after about
	// 90 s plus autovacuum's naptime (1 minute): inside the first third
	// of a 10-minute run. The minimum is 10 looks of the ledger.
	loadRetentionMin = 5 * time.Second
	loadRetentionMax = time.Minute

	// ledgerPollInterval is the pause between two looks of the ledger at
	// its pending tasks.
	ledgerPollInterval = 500 * time.Millisecond

	// loadTailTimeout bounds the wait, after the last submission, for
	// every acknowledged task to be seen final. It fails the test only if
	// something is stuck: 20 workers drain a full backlog of the senders
	// in seconds.
	loadTailTimeout = 2 * time.Minute

	// loadHTTPTimeout bounds every request of the test.
	loadHTTPTimeout = 60 * time.Second
)

// loadDuration is TASKD_LOAD_DURATION, or loadDurationDefault.
func loadDuration(t *testing.T) time.Duration {
	t.Helper()
	raw := os.Getenv("TASKD_LOAD_DURATION")
	if raw == "" {
		return loadDurationDefault
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d < 9*time.Second {
		t.Fatalf("TASKD_LOAD_DURATION=%q: want a Go duration of at least 9s (three thirds of three samples)", raw)
	}
	return d
}

// sampleInterval is a 120th of the run, at least a second: about 120
// samples whatever the duration, 40 per third compared.
func sampleInterval(d time.Duration) time.Duration {
	return max(d/120, time.Second).Truncate(time.Second)
}

func TestChaosLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test: runs taskd under load for TASKD_LOAD_DURATION (45 s by default)")
	}
	duration := loadDuration(t)
	retention := min(max(duration/10, loadRetentionMin), loadRetentionMax).Truncate(time.Second)
	interval := sampleInterval(duration)
	outDir := cmp.Or(os.Getenv("TASKD_LOAD_OUT"), t.TempDir())

	var server serverSettings
	// A private server of PostgreSQL's default settings: how big river_job
	// stays is autovacuum's doing, and a test server may well run without
	// it (the development one here does, for speed).
	if pg, whyNot := chaos.NewPG(t, chaos.PGOptions{MaxConnections: 100, SharedBuffers: "128MB"}); pg != nil {
		// pgtest makes its databases on the server of this variable.
		t.Setenv("TASKD_TEST_DATABASE_URL", pg.URL("postgres"))
		server.private = true
	} else {
		t.Logf("on the test server, not a private cluster: %s", whyNot)
	}
	dbURL := pgtest.NewDB(t)
	mon := monitorPool(t, dbURL)
	var autovacuum string
	if err := mon.QueryRow(context.Background(), `SELECT current_setting('server_version'), current_setting('autovacuum')`).
		Scan(&server.version, &autovacuum); err != nil {
		t.Fatal(err)
	}
	server.autovacuum = autovacuum == "on"
	p := taskdtest.Start(t, taskdtest.Options{DatabaseURL: dbURL,
		Args: []string{"--queues", "default=" + strconv.Itoa(loadWorkers), "--completed-retention", retention.String()},
		Env:  []string{"TASKD_DB_MAX_CONNS=" + strconv.Itoa(loadDBMaxConns), "TASKD_LOG_LEVEL=warn"}})
	t.Logf("taskd pid %d on %s: %s of load at %d tasks/s, completed retention %s, a sample every %s, output in %s",
		p.PID(), server, duration, loadRate(), retention, interval, outDir)

	httpClient := &http.Client{Timeout: loadHTTPTimeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: loadSenders + 4, IdleConnTimeout: 0}}
	defer httpClient.CloseIdleConnections()
	c, err := client.New(p.URL, client.Config{HTTPClient: httpClient})
	if err != nil {
		t.Fatal(err)
	}
	l := &load{t: t, c: c, ledger: newLedger()}
	s := &sampler{t: t, proc: p, pool: mon, httpClient: httpClient, load: l}

	// The ledger's looks and the samples run from the first submission to
	// the end of the tail.
	bg, stopBG := context.WithCancel(context.Background())
	var bgWG sync.WaitGroup
	bgWG.Go(func() { l.watch(bg, mon) })
	start := time.Now()
	s.start = start
	bgWG.Go(func() { s.run(bg, interval) })

	submitCtx, stopSubmit := context.WithTimeout(context.Background(), duration)
	l.run(submitCtx)
	stopSubmit()
	loadEnd := time.Since(start)
	before := l.ledger.counts()
	t.Logf("submitting stopped after %s: %d acknowledged, %d final, %d pending; %d submissions failed, %d ticks skipped",
		loadEnd.Round(time.Millisecond), before.acked, before.final, before.pending, l.submitErrs.Load(), l.skipped.Load())

	tailStart := time.Now()
	for l.ledger.counts().pending > 0 && time.Since(tailStart) < loadTailTimeout {
		time.Sleep(ledgerPollInterval)
	}
	// One more sample interval, so that the plot shows the drained state.
	time.Sleep(interval)
	stopBG()
	bgWG.Wait()
	// A last look of its own, after the watcher stopped.
	if err := l.ledger.look(context.Background(), mon); err != nil {
		t.Fatal(err)
	}
	after := l.ledger.counts()
	t.Logf("tail: %s; %d acknowledged, %d final %v, %d pending, %d lost",
		time.Since(tailStart).Round(time.Millisecond), after.acked, after.final, after.byState, after.pending, after.lost)

	samples := s.samples()
	r := newReport(samples, duration, loadEnd, loadDBMaxConns)
	// Without autovacuum nothing reclaims what the cleaner deletes: the
	// tables grow by design, and bounding them would test the server's
	// settings, not taskd.
	r.checkTables = server.autovacuum
	if err := writeCSV(outDir, samples); err != nil {
		t.Errorf("writing the samples: %v", err)
	}
	if err := writePlot(outDir, samples, r, loadPlotTitle(duration, retention, server)); err != nil {
		t.Errorf("writing the plot: %v", err)
	}
	r.log(t)
	t.Logf("reads: %d gets (%d not found), %d lists; submit latency over the run p50 %s p99 %s (single), p50 %s p99 %s (batch of %d)",
		l.gets.Load(), l.gets404.Load(), l.lists.Load(),
		l.all.quantile(0.5, false), l.all.quantile(0.99, false), l.all.quantile(0.5, true), l.all.quantile(0.99, true), loadBatchSize)

	// The oracle: nothing acknowledged is lost or left unfinished, and the
	// work, which cannot fail, completed.
	if after.acked == 0 {
		t.Fatal("no task was acknowledged")
	}
	if after.lost > 0 {
		t.Errorf("%d acknowledged tasks were deleted without being seen final, e.g. %v", after.lost, l.ledger.lostSample(10))
	}
	if after.pending > 0 {
		t.Errorf("%d acknowledged tasks not final %s after the last submission, e.g. %v",
			after.pending, loadTailTimeout, l.ledger.pendingSample(10))
	}
	if n := after.final - after.byState["completed"]; n > 0 {
		t.Errorf("%d tasks ended %v, not completed: a sleep neither fails nor is cancelled here", n, after.byState)
	}
	// A steady load this far under capacity must be served: a failed
	// submission or read is a finding, not noise.
	if n := l.submitErrs.Load(); n > 0 {
		t.Errorf("%d submissions failed, first: %v", n, l.firstErrs())
	}
	if n := l.readErrs.Load(); n > 0 {
		t.Errorf("%d reads failed, first: %v", n, l.firstErrs())
	}
	r.check(t)
}

// loadRate is the tasks submitted per second.
func loadRate() int {
	perTick := 1.0 + float64(loadBatchSize)/loadBatchEvery
	return int(perTick * float64(time.Second/loadTick))
}

func loadPlotTitle(duration, retention time.Duration, server serverSettings) string {
	return fmt.Sprintf("taskd serve, %s at %d tasks/s (sleep 20-100 ms), completed retention %s, pool %d\n%s",
		duration, loadRate(), retention, loadDBMaxConns, server)
}

// monitorPool is the test's own pool on the database, under another
// application_name than taskd's so that it is not counted as taskd's.
func monitorPool(t *testing.T, dbURL string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 3
	cfg.ConnConfig.RuntimeParams["application_name"] = "taskd-loadtest"
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// load submits and reads at a steady rate.
type load struct {
	t      *testing.T
	c      *client.Client
	ledger *ledger

	skipped, submitErrs, readErrs atomic.Int64
	gets, gets404, lists          atomic.Int64

	// window are the submit latencies since the last sample, all those of
	// the whole run.
	window, all latencies

	errMu sync.Mutex
	errs  []string
}

// ticket is one submission to make: a single task, or a batch.
type ticket struct {
	n     int // the ticket's number, which picks its sleeps
	batch bool
}

// run submits at the steady rate until ctx is done and every submission
// in flight has been answered, reading meanwhile.
func (l *load) run(ctx context.Context) {
	tickets := make(chan ticket, loadBacklog)
	var wg sync.WaitGroup
	for range loadSenders {
		wg.Go(func() {
			for tk := range tickets {
				l.submit(tk)
			}
		})
	}
	wg.Go(func() { l.read(ctx) })

	tick := time.NewTicker(loadTick)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			close(tickets)
			wg.Wait()
			return
		case <-tick.C:
		}
		for _, tk := range []ticket{{n: n}, {n: n, batch: true}} {
			if tk.batch && n%loadBatchEvery != 0 {
				continue
			}
			select {
			case tickets <- tk:
			default:
				l.skipped.Add(1)
			}
		}
	}
}

func loadSleepMS(i int) int { return loadSleepMinMS + i*37%loadSleepSpanMS }

func (l *load) submit(tk ticket) {
	// Submissions are not cut off at the end of the run: an acknowledged
	// task must be in the ledger.
	ctx := context.Background()
	kind := "sleep"
	req := func(i int) client.TaskRequest {
		return client.TaskRequest{Kind: &kind, Args: json.RawMessage(fmt.Sprintf(`{"ms":%d}`, loadSleepMS(i)))}
	}
	begin := time.Now()
	if !tk.batch {
		// Each single carries an Idempotency-Key, so that idempotency_keys
		// takes rows (and must lose them with their tasks) too.
		task, _, err := l.c.Submit(ctx, req(tk.n), client.SubmitOptions{IdempotencyKey: "load-" + strconv.Itoa(tk.n)})
		if err != nil {
			l.fail(&l.submitErrs, fmt.Errorf("POST /v1/tasks: %w", err))
			return
		}
		l.ledger.ack(task.ID)
		l.window.add(time.Since(begin), false)
		l.all.add(time.Since(begin), false)
		return
	}
	reqs := make([]client.TaskRequest, loadBatchSize)
	for i := range reqs {
		reqs[i] = req(tk.n*loadBatchSize + i)
	}
	b, _, err := l.c.SubmitBatch(ctx, reqs, client.SubmitOptions{})
	if err != nil {
		l.fail(&l.submitErrs, fmt.Errorf("POST /v1/batches: %w", err))
		return
	}
	l.ledger.ack(b.TaskIDs...)
	l.window.add(time.Since(begin), true)
	l.all.add(time.Since(begin), true)
	if len(b.TaskIDs) != loadBatchSize {
		l.fail(&l.submitErrs, fmt.Errorf("batch %d acknowledged %d tasks, want %d", b.ID, len(b.TaskIDs), loadBatchSize))
	}
}

// read GETs a recent task every loadReadEvery and lists tasks every
// loadListEvery reads, until ctx is done.
func (l *load) read(ctx context.Context) {
	tick := time.NewTicker(loadReadEvery)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if n%loadListEvery == 0 {
			p := client.ListParams{Limit: 20}
			if n%(2*loadListEvery) == 0 {
				p.States = []string{"completed"}
			}
			if _, err := l.c.List(ctx, p); err != nil && ctx.Err() == nil {
				l.fail(&l.readErrs, fmt.Errorf("GET /v1/tasks: %w", err))
			}
			l.lists.Add(1)
			continue
		}
		id, ok := l.ledger.recent(n * 7 % 200)
		if !ok {
			continue
		}
		_, err := l.c.Get(ctx, id)
		l.gets.Add(1)
		switch {
		case err == nil || ctx.Err() != nil:
		case client.IsStatus(err, http.StatusNotFound):
			// Deleted by retention: possible for an old pick.
			l.gets404.Add(1)
		default:
			l.fail(&l.readErrs, fmt.Errorf("GET /v1/tasks/%d: %w", id, err))
		}
	}
}

// watch has the ledger look at its pending tasks every
// ledgerPollInterval until ctx is done.
func (l *load) watch(ctx context.Context, pool *pgxpool.Pool) {
	tick := time.NewTicker(ledgerPollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := l.ledger.look(ctx, pool); err != nil && ctx.Err() == nil {
			l.t.Errorf("ledger: %v", err)
		}
	}
}

// fail counts err on n and keeps the first few for the report.
func (l *load) fail(n *atomic.Int64, err error) {
	n.Add(1)
	l.errMu.Lock()
	defer l.errMu.Unlock()
	if len(l.errs) < 5 {
		l.errs = append(l.errs, err.Error())
	}
}

func (l *load) firstErrs() []string {
	l.errMu.Lock()
	defer l.errMu.Unlock()
	return append([]string(nil), l.errs...)
}
