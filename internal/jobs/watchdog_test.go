package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/rs/zerolog"

	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/store"
)

// netProxy is a TCP proxy between a test's pools and PostgreSQL that the
// test can cut (toxiproxy, as a library).
type netProxy struct {
	t     *testing.T
	proxy *toxiproxy.Proxy
}

func newNetProxy(t *testing.T) *netProxy {
	t.Helper()
	u, err := url.Parse(pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(server, "postgres", "127.0.0.1:0", u.Host)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return &netProxy{t: t, proxy: p}
}

// pool opens a pool to the database at dbURL through the proxy.
func (n *netProxy) pool(dbURL string) *pgxpool.Pool {
	n.t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		n.t.Fatal(err)
	}
	u.Host = n.proxy.Listen
	return pgtest.Pool(n.t, u.String(), 0)
}

var blackholeStreams = []string{"upstream", "downstream"}

// blackhole makes the proxy drop everything both ways and close nothing,
// as a network cut without resets does.
func (n *netProxy) blackhole() {
	n.t.Helper()
	for _, stream := range blackholeStreams {
		toxic := `{"name":"blackhole_` + stream + `","type":"timeout","stream":"` + stream + `","attributes":{"timeout":0}}`
		if _, err := n.proxy.Toxics.AddToxicJson(strings.NewReader(toxic)); err != nil {
			n.t.Fatalf("adding blackhole: %v", err)
		}
	}
}

// heal removes the blackhole, if any.
func (n *netProxy) heal() {
	for _, stream := range blackholeStreams {
		_ = n.proxy.Toxics.RemoveToxic(context.Background(), "blackhole_"+stream)
	}
}

// blockArgs are the args of "block", whose first attempt of a task blocks
// until its context ends or release is closed; later attempts complete at
// once.
type blockArgs struct{}

func (blockArgs) Kind() string { return "block" }

type blockWorker struct {
	river.WorkerDefaults[blockArgs]
	release chan struct{}
	events  chan attemptEvent
}

// attemptEvent is a start or end of an attempt, seen by its worker (or
// endpoint).
type attemptEvent struct {
	attempt int
	end     bool
	at      time.Time
	cause   error
}

func (w *blockWorker) Work(ctx context.Context, job *river.Job[blockArgs]) error {
	w.events <- attemptEvent{attempt: job.Attempt, at: time.Now()}
	if job.Attempt > 1 {
		return nil
	}
	select {
	case <-ctx.Done():
	case <-w.release:
	}
	w.events <- attemptEvent{attempt: job.Attempt, end: true, at: time.Now(), cause: context.Cause(ctx)}
	return ctx.Err()
}

func newBlockKind() (kinds.Kind, *blockWorker) {
	w := &blockWorker{release: make(chan struct{}), events: make(chan attemptEvent, 100)}
	return kinds.Kind{
		Name: "block", Queue: river.QueueDefault, Run: kinds.RunGo,
		AddWorker: func(ws *river.Workers, timeout kinds.TimeoutFunc) { kinds.AddWorker(ws, w, timeout) },
		Decode:    func(json.RawMessage, *kinds.Errors) river.JobArgs { return blockArgs{} },
	}, w
}

// blockingEndpoint is a push endpoint whose first attempt of a task hangs
// until taskd gives up the request; later attempts succeed.
func blockingEndpoint(t *testing.T) (*httptest.Server, chan attemptEvent) {
	events := make(chan attemptEvent, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read to the end: only then does the server notice the client
		// hanging up (r.Context()).
		_, _ = io.Copy(io.Discard, r.Body)
		attempt, _ := strconv.Atoi(r.Header.Get("Taskd-Attempt"))
		events <- attemptEvent{attempt: attempt, at: time.Now()}
		if attempt > 1 {
			_, _ = w.Write([]byte(`{}`))
			return
		}
		<-r.Context().Done()
		events <- attemptEvent{attempt: attempt, end: true, at: time.Now()}
	}))
	t.Cleanup(srv.Close)
	return srv, events
}

// nextEvent returns the next event, failing after timeout.
func nextEvent(t *testing.T, what string, ch chan attemptEvent, timeout time.Duration) attemptEvent {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(timeout):
		t.Fatalf("%s: nothing within %s", what, timeout)
		return attemptEvent{}
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *watchdog) isStale(id int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stale[id] != nil
}

func (w *watchdog) state() (beatAt time.Time, lost bool, running int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.beatAt, w.lost, len(w.running)
}

// countingHandler counts the records logged with each message, and passes
// them on.
type countingHandler struct {
	slog.Handler
	mu     *sync.Mutex
	counts map[string]int
}

func newCountingLogger(t *testing.T) (*slog.Logger, func(msg string) int) {
	h := &countingHandler{Handler: testLogger(t).Handler(), mu: &sync.Mutex{}, counts: map[string]int{}}
	return slog.New(h), func(msg string) int {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.counts[msg]
	}
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	h.counts[r.Message]++
	h.mu.Unlock()
	if h.Handler.Enabled(ctx, r.Level) {
		return h.Handler.Handle(ctx, r)
	}
	return nil
}

func (h *countingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &countingHandler{Handler: h.Handler.WithAttrs(attrs), mu: h.mu, counts: h.counts}
}

func (h *countingHandler) WithGroup(name string) slog.Handler {
	return &countingHandler{Handler: h.Handler.WithGroup(name), mu: h.mu, counts: h.counts}
}

// startOnce starts a client and returns its stop, which the test's end
// calls too if the test did not.
func startOnce(t *testing.T, b *testBundle) (stop func()) {
	t.Helper()
	if err := b.client.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := b.client.Stop(ctx, 5*time.Second); err != nil {
				t.Errorf("stopping client: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestWatchdogStopsAttemptsBeforeRescue cuts a process (a) off from
// PostgreSQL while it runs a Go task and a pushed one, and checks that it
// stops both before another process (b) may rescue them: each first
// attempt has ended, with the watchdog's cause, before its re-run starts on
// b; and that a works again once the network is back.
func TestWatchdogStopsAttemptsBeforeRescue(t *testing.T) {
	t.Parallel()
	proxy := newNetProxy(t)
	dbURL := pgtest.NewDB(t)
	blockKind, block := newBlockKind()
	srv, pushed := blockingEndpoint(t)
	reg, err := kinds.NewRegistry(append(builtin.Kinds(), blockKind, pushKind(t, "hook", srv.URL, true))...)
	if err != nil {
		t.Fatal(err)
	}
	const heartbeat, rescueAfter = 500 * time.Millisecond, 2 * time.Second
	mod := func(c *Config) {
		c.Kinds = reg
		c.HeartbeatInterval, c.RescueAfter = heartbeat, rescueAfter
	}
	logger, logged := newCountingLogger(t)
	a := setupPool(t, proxy.pool(dbURL), func(c *Config) { mod(c); c.Logger = logger })
	b := setupPool(t, pgtest.Pool(t, dbURL, 0), mod)
	startOnce(t, a)
	t.Cleanup(proxy.heal) // before a stops
	blockID := a.submit(t, "block", map[string]any{}, nil)
	hookID := a.submit(t, "hook", map[string]any{}, nil)
	if ev := nextEvent(t, "block's first attempt", block.events, 10*time.Second); ev.attempt != 1 || ev.end {
		t.Fatalf("block: %+v, want the start of attempt 1", ev)
	}
	if ev := nextEvent(t, "hook's first attempt", pushed, 10*time.Second); ev.attempt != 1 || ev.end {
		t.Fatalf("hook: %+v, want the start of attempt 1", ev)
	}
	// Only now, so that a runs both first attempts.
	stopB := startOnce(t, b)

	proxy.blackhole()
	cutAt := time.Now()

	blockEnd := nextEvent(t, "block's first attempt ending", block.events, 10*time.Second)
	if blockEnd.attempt != 1 || !blockEnd.end {
		t.Fatalf("block: %+v, want the end of attempt 1", blockEnd)
	}
	if !errors.Is(blockEnd.cause, ErrHeartbeatLost) {
		t.Errorf("cause = %v, want ErrHeartbeatLost", blockEnd.cause)
	}
	hookEnd := nextEvent(t, "hook's first attempt ending", pushed, 10*time.Second)
	if hookEnd.attempt != 1 || !hookEnd.end {
		t.Fatalf("hook: %+v, want the end of attempt 1", hookEnd)
	}
	beatAt, lost, _ := a.client.watchdog.state()
	if !lost {
		t.Error("watchdog does not say the heartbeat is lost")
	}
	// By a's clock: before the earliest rescue the watchdog's reference
	// allows.
	if !blockEnd.at.Before(beatAt.Add(rescueAfter)) {
		t.Errorf("block's attempt stopped %s after the last good heartbeat's start, not before RescueAfter (%s)",
			blockEnd.at.Sub(beatAt), rescueAfter)
	}
	// By the rescuers' clock, the database's: the heartbeat a wrote was
	// still fresh when the attempt stopped. The query's now() comes after
	// queried, so age minus (queried - end) bounds the age at the end from
	// above.
	queried := time.Now()
	var age float64
	if err := b.pool.QueryRow(context.Background(),
		`SELECT extract(epoch FROM now() - heartbeat_at) FROM taskd_processes WHERE client_id = $1`, a.client.ID()).Scan(&age); err != nil {
		t.Fatal(err)
	}
	ageAtEnd := time.Duration(age*float64(time.Second)) - queried.Sub(blockEnd.at)
	if ageAtEnd >= rescueAfter {
		t.Errorf("block's attempt stopped when a's heartbeat was up to %s old in the database, not within RescueAfter (%s)", ageAtEnd, rescueAfter)
	}
	t.Logf("cut %s after the last good heartbeat's start; block stopped %s after it (database: at most %s), push %s; RescueAfter %s",
		cutAt.Sub(beatAt), blockEnd.at.Sub(beatAt), ageAtEnd, hookEnd.at.Sub(beatAt), rescueAfter)

	// b rescues both tasks and runs them again, only after a stopped.
	blockRerun := nextEvent(t, "block's second attempt", block.events, 15*time.Second)
	hookRerun := nextEvent(t, "hook's second attempt", pushed, 15*time.Second)
	for _, c := range []struct {
		name       string
		end, rerun attemptEvent
	}{{"block", blockEnd, blockRerun}, {"hook", hookEnd, hookRerun}} {
		if c.rerun.attempt != 2 || c.rerun.end {
			t.Errorf("%s: %+v, want the start of attempt 2", c.name, c.rerun)
			continue
		}
		if !c.end.at.Before(c.rerun.at) {
			t.Errorf("%s: attempt 2 started %s before attempt 1 ended", c.name, c.end.at.Sub(c.rerun.at))
		}
		t.Logf("%s: attempt 2 started %s after attempt 1 ended", c.name, c.rerun.at.Sub(c.end.at))
	}
	for _, id := range []int64{blockID, hookID} {
		task := b.waitTask(t, id, 15*time.Second, inState(store.StateCompleted))
		if task.Attempt != 2 {
			t.Errorf("task %d: attempt %d, want 2", id, task.Attempt)
		}
		atts := b.finishedAttempts(t, id, 2)
		if atts[0].Outcome != store.OutcomeLost || atts[1].Worker != b.client.ID() {
			t.Errorf("task %d: attempts %v by %s, %s", id, outcomes(atts), atts[0].Worker, atts[1].Worker)
		}
	}
	// a's attempts are over (the attempt middleware gives up writing its
	// rows after attemptWriteFor), even while a is still cut off.
	waitFor(t, "a's attempts returning", 2*attemptWriteFor, func() bool {
		_, _, running := a.client.watchdog.state()
		return running == 0
	})
	stopB()
	// A hung heartbeat gives up after its deadline, and the next one is
	// tried: a cut that heals without resetting connections would leave a
	// heartbeat without one hanging (toxiproxy resets them as it heals).
	waitFor(t, "failed heartbeats during the cut", 10*time.Second, func() bool { return logged("heartbeat failed") >= 3 })
	if n := logged("heartbeats recovered; working tasks again"); n != 0 {
		t.Errorf("recovered %d times during the cut", n)
	}

	proxy.heal()
	healedAt := time.Now()
	waitFor(t, "a heartbeating again", 30*time.Second, func() bool {
		beatAt, lost, _ := a.client.watchdog.state()
		return !lost && beatAt.After(healedAt)
	})
	id := a.submit(t, "double", map[string]any{"value": 2}, nil)
	a.waitTask(t, id, 30*time.Second, inState(store.StateCompleted))
	if atts := a.finishedAttempts(t, id, 1); atts[0].Worker != a.client.ID() {
		t.Errorf("new task: attempt by %s, want a", atts[0].Worker)
	}
	if n := logged("heartbeats recovered; working tasks again"); n != 1 {
		t.Errorf("recovered %d times, want once", n)
	}
	if n := logged("heartbeat lost; cancelling running tasks, which other processes will run again"); n != 1 {
		t.Errorf("lost %d times, want once", n)
	}
	t.Logf("a heartbeat again %s after the network came back", time.Since(healedAt))
}

// TestWatchdogShortCutCancelsNothing cuts a process off for less than the
// watchdog's bound: its attempt runs on and completes.
func TestWatchdogShortCutCancelsNothing(t *testing.T) {
	t.Parallel()
	proxy := newNetProxy(t)
	dbURL := pgtest.NewDB(t)
	blockKind, block := newBlockKind()
	reg, err := kinds.NewRegistry(append(builtin.Kinds(), blockKind)...)
	if err != nil {
		t.Fatal(err)
	}
	const heartbeat, rescueAfter, cut = 500 * time.Millisecond, 4 * time.Second, time.Second
	a := setupPool(t, proxy.pool(dbURL), func(c *Config) {
		c.Kinds = reg
		c.HeartbeatInterval, c.RescueAfter = heartbeat, rescueAfter
	})
	startOnce(t, a)
	t.Cleanup(proxy.heal)
	id := a.submit(t, "block", map[string]any{}, nil)
	nextEvent(t, "block's first attempt", block.events, 10*time.Second)

	proxy.blackhole()
	time.Sleep(cut) // the cut itself, not a wait for state
	proxy.heal()
	healedAt := time.Now()
	waitFor(t, "a heartbeating again", 30*time.Second, func() bool {
		beatAt, _, _ := a.client.watchdog.state()
		return beatAt.After(healedAt)
	})
	if _, lost, _ := a.client.watchdog.state(); lost {
		t.Error("watchdog lost the heartbeat over a cut shorter than its bound")
	}
	select {
	case ev := <-block.events:
		t.Fatalf("block: %+v during a short cut", ev)
	default:
	}
	close(block.release)
	ev := nextEvent(t, "block's attempt ending", block.events, 10*time.Second)
	if ev.cause != nil {
		t.Errorf("block's attempt was cancelled: %v", ev.cause)
	}
	a.waitTask(t, id, 30*time.Second, inState(store.StateCompleted))
	if atts := a.finishedAttempts(t, id, 1); atts[0].Outcome != store.OutcomeCompleted {
		t.Errorf("attempts %v", outcomes(atts))
	}
}

// An attempt that starts while the heartbeat is stale does not run: it
// snoozes for a HeartbeatInterval, which gives its attempt back, and its
// snooze is guarded like a cancelled attempt's completion. One that starts
// after the heartbeat came back runs.
func TestWatchdogSnoozesLateStarts(t *testing.T) {
	t.Parallel()
	w := newWatchdog(2*time.Second, 500*time.Millisecond, testLogger(t))
	mw := &watchdogMiddleware{watchdog: w}
	at := time.Now()
	job := &rivertype.JobRow{ID: 1, Attempt: 1, AttemptedAt: &at}
	w.beat(time.Now().Add(-time.Minute))
	ran := false
	err := mw.Work(context.Background(), job, func(ctx context.Context) error {
		ran = true
		return nil
	})
	var snooze *rivertype.JobSnoozeError
	if !errors.As(err, &snooze) || snooze.Duration != 500*time.Millisecond {
		t.Errorf("err = %v, want a snooze of one heartbeat interval", err)
	}
	if ran {
		t.Error("the attempt ran while the heartbeat was lost")
	}
	if !w.isStale(job.ID) {
		t.Error("the snoozed fetch is not guarded")
	}
	// River writes the snooze through the pilot, which then forgets it
	// (else the next attempt waits for it).
	w.forget(w.staleAmong([]int64{job.ID}))
	w.beat(time.Now())
	err = mw.Work(context.Background(), job, func(ctx context.Context) error { return ctx.Err() })
	if err != nil {
		t.Errorf("after a good heartbeat: %v", err)
	}
	if _, _, running := w.state(); running != 0 {
		t.Errorf("%d attempts still registered", running)
	}
}

// With River: a task of one attempt fetched while the heartbeat is lost is
// not used up (discarded, as a cancelled attempt would leave it) but put
// back with its attempt, and completes once the heartbeat is back.
func TestLateStartKeepsAttempt(t *testing.T) {
	t.Parallel()
	// Heartbeats far apart, so that only the test says when one succeeds.
	b := setup(t, func(c *Config) { c.HeartbeatInterval, c.RescueAfter = time.Minute, 2*time.Minute })
	b.start(t)
	w := b.client.watchdog
	w.mu.Lock()
	w.beatAt = time.Now().Add(-time.Hour)
	w.mu.Unlock()
	id := b.submit(t, "double", map[string]any{"value": 2}, func(o *river.InsertOpts) { o.MaxAttempts = 1 })
	ctx := context.Background()
	waitFor(t, "the snooze saved", 10*time.Second, func() bool {
		var snoozes int
		err := b.pool.QueryRow(ctx, "SELECT coalesce((metadata->>'snoozes')::int, 0) FROM river_job WHERE id = $1", id).Scan(&snoozes)
		return err == nil && snoozes > 0
	})
	task, err := b.store.Task(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if task.Attempt != 0 || store.IsFinal(task.State) {
		t.Fatalf("after the snooze: %s at attempt %d, want not final at attempt 0", task.State, task.Attempt)
	}
	w.beat(time.Now())
	// Not a minute: the snooze is a HeartbeatInterval.
	if _, err := b.pool.Exec(ctx, "UPDATE river_job SET state = 'available', scheduled_at = now() WHERE id = $1 AND state IN ('scheduled', 'available')", id); err != nil {
		t.Fatal(err)
	}
	task = b.waitTask(t, id, 10*time.Second, inState(store.StateCompleted))
	if compact(task.Result) != `{"result":4}` || task.Attempt != 1 {
		t.Errorf("result = %s at attempt %d, want 4 at attempt 1", task.Result, task.Attempt)
	}
	if got := outcomes(b.finishedAttempts(t, id, 1)); !slices.Equal(got, []string{store.OutcomeCompleted}) {
		t.Errorf("outcomes = %v, want the one completed attempt (a snooze has no row)", got)
	}
}

type holdArgs struct{}

func (holdArgs) Kind() string { return "hold" }

// holdWorker's every attempt blocks until its context ends.
type holdWorker struct {
	river.WorkerDefaults[holdArgs]
	events chan attemptEvent
}

func (w *holdWorker) Work(ctx context.Context, job *river.Job[holdArgs]) error {
	w.events <- attemptEvent{attempt: job.Attempt, at: time.Now()}
	<-ctx.Done()
	w.events <- attemptEvent{attempt: job.Attempt, end: true, at: time.Now(), cause: context.Cause(ctx)}
	return ctx.Err()
}

// TestLateCompletionAfterRescue: a process cut off while it ran a task
// stops it, another re-runs it, and the network comes back while the
// re-run goes on. The first process's River completer then saves the
// cancelled attempt's error, which must not touch the re-run's task:
// River's JobSetStateIfRunning checks only that the job is running, not
// whose attempt it is, so without the pilot's guard (completionPilot) the
// task would become available and run a third time beside the second
// (docs/ARCHITECTURE.md, "Crash recovery").
func TestLateCompletionAfterRescue(t *testing.T) {
	t.Parallel()
	proxy := newNetProxy(t)
	dbURL := pgtest.NewDB(t)
	w := &holdWorker{events: make(chan attemptEvent, 100)}
	reg, err := kinds.NewRegistry(append(builtin.Kinds(), kinds.Kind{
		Name: "hold", Queue: river.QueueDefault, Run: kinds.RunGo,
		AddWorker: func(ws *river.Workers, timeout kinds.TimeoutFunc) { kinds.AddWorker(ws, w, timeout) },
		Decode:    func(json.RawMessage, *kinds.Errors) river.JobArgs { return holdArgs{} },
	})...)
	if err != nil {
		t.Fatal(err)
	}
	mod := func(c *Config) {
		c.Kinds = reg
		c.HeartbeatInterval, c.RescueAfter = 500*time.Millisecond, 2*time.Second
	}
	a := setupPool(t, proxy.pool(dbURL), mod)
	b := setupPool(t, pgtest.Pool(t, dbURL, 0), mod)
	startOnce(t, a)
	t.Cleanup(proxy.heal)
	id := a.submit(t, "hold", map[string]any{}, nil)
	nextEvent(t, "attempt 1", w.events, 10*time.Second)
	startOnce(t, b)
	proxy.blackhole()
	if ev := nextEvent(t, "attempt 1 ending", w.events, 10*time.Second); !ev.end || !errors.Is(ev.cause, ErrHeartbeatLost) {
		t.Fatalf("%+v, want attempt 1 stopped by the watchdog", ev)
	}
	if ev := nextEvent(t, "attempt 2", w.events, 15*time.Second); ev.attempt != 2 || ev.end {
		t.Fatalf("%+v, want attempt 2 starting", ev)
	}
	if !a.client.watchdog.isStale(id) {
		t.Fatal("the watchdog does not remember the attempt it cancelled")
	}
	// a's completer is retrying meanwhile.
	time.Sleep(2 * time.Second) // the cut goes on, not a wait for state
	proxy.heal()
	healedAt := time.Now()
	waitFor(t, "a heartbeating again", 30*time.Second, func() bool {
		_, lost, _ := a.client.watchdog.state()
		return !lost
	})
	// River's completer retries within a few seconds (1 s, 2 s and 4 s
	// pauses, 10 s per try, then again); the task must stay b's running
	// attempt 2 throughout, until a's pilot has dealt with the cancelled
	// attempt's completion (and forgotten it), and after.
	check := func() {
		t.Helper()
		var state string
		var attempt int
		if err := b.pool.QueryRow(context.Background(), `SELECT state, attempt FROM river_job WHERE id = $1`, id).Scan(&state, &attempt); err != nil {
			t.Fatal(err)
		}
		if state != "running" || attempt != 2 {
			t.Fatalf("b's attempt 2 still runs, but the task is %s at attempt %d", state, attempt)
		}
		select {
		case ev := <-w.events:
			t.Fatalf("%+v while attempt 2 runs", ev)
		case <-time.After(100 * time.Millisecond):
		}
	}
	waitFor(t, "a's completer writing attempt 1's completion", 60*time.Second, func() bool {
		check()
		return !a.client.watchdog.isStale(id)
	})
	t.Logf("attempt 1's completion dropped %s after the network came back", time.Since(healedAt))
	for range 10 {
		check()
	}
}

// A heartbeat that succeeds after the watchdog fired, but had started
// before, sets a deadline earlier than the one the watchdog would check
// next by itself: the watchdog must keep it.
func TestWatchdogDeadlineAfterRecovery(t *testing.T) {
	t.Parallel()
	const rescueAfter, heartbeat = 2 * time.Second, time.Second
	w := newWatchdog(rescueAfter, heartbeat, testLogger(t))
	w.beat(time.Now().Add(-time.Minute))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitFor(t, "the watchdog firing", 10*time.Second, func() bool {
		_, lost, _ := w.state()
		return lost
	})
	// It started 1.4 s ago: others may rescue 0.6 s from now.
	beatStart := time.Now().Add(-1400 * time.Millisecond)
	w.beat(beatStart)
	stopped := make(chan time.Time, 1)
	err := (&watchdogMiddleware{watchdog: w}).Work(context.Background(), &rivertype.JobRow{ID: 1}, func(ctx context.Context) error {
		if ctx.Err() != nil {
			t.Errorf("attempt starts cancelled: %v", context.Cause(ctx))
		}
		select {
		case <-ctx.Done():
			stopped <- time.Now()
		case <-time.After(10 * time.Second):
		}
		return ctx.Err()
	})
	if !errors.Is(err, ErrHeartbeatLost) {
		t.Fatalf("err = %v, want ErrHeartbeatLost", err)
	}
	if at := <-stopped; !at.Before(beatStart.Add(rescueAfter)) {
		t.Errorf("attempt stopped %s after the heartbeat's start, not before RescueAfter (%s)", at.Sub(beatStart), rescueAfter)
	}
}

// An attempt of a task whose earlier attempt on this process the watchdog
// cancelled, and whose completion River has not written yet, starts only
// once the pilot dropped that completion; the next attempt's completion is
// then no longer guarded.
func TestWatchdogRerunWaitsForStaleCompletion(t *testing.T) {
	t.Parallel()
	w := newWatchdog(2*time.Second, 500*time.Millisecond, testLogger(t))
	w.beat(time.Now())
	mw := &watchdogMiddleware{watchdog: w}
	first := time.Now().Add(-time.Minute)
	w.mu.Lock()
	w.cancelLocked(&attemptCancel{id: 1, attempt: 1, attemptedAt: &first, cancel: func(error) {}}, ErrHeartbeatLost)
	w.mu.Unlock()

	started := make(chan struct{})
	done := make(chan error, 1)
	second := time.Now()
	go func() {
		done <- mw.Work(context.Background(), &rivertype.JobRow{ID: 1, Attempt: 2, AttemptedAt: &second}, func(ctx context.Context) error {
			close(started)
			return ctx.Err()
		})
	}()
	// The pilot, meanwhile, sees the stale completion and drops it.
	var stale map[int64]staleView
	waitFor(t, "the second attempt registering", 10*time.Second, func() bool {
		stale = w.staleAmong([]int64{1})
		return stale[1].rerun != nil
	})
	select {
	case <-started:
		t.Fatal("the second attempt started before the first one's completion was dealt with")
	default:
	}
	running := &rivertype.JobRow{ID: 1, State: rivertype.JobStateRunning, Attempt: 2, AttemptedAt: &second}
	if stale[1].owns(running) {
		t.Error("the pilot would write the first attempt's completion over the second attempt")
	}
	w.forget(stale)
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the second attempt did not start once the first one's completion was dropped")
	}
	if err := <-done; err != nil {
		t.Errorf("second attempt: %v", err)
	}
	if w.isStale(1) {
		t.Error("the second attempt's completion is guarded")
	}
}

// An attempt that returned just before the heartbeat was lost, whose
// completion River's completer still holds, is guarded like the attempts
// the watchdog cancels: after a cut longer than RescueAfter, another
// process runs the task again, and that completion must not land on it.
func TestWatchdogGuardsUnsavedCompletions(t *testing.T) {
	t.Parallel()
	w := newWatchdog(2*time.Second, 500*time.Millisecond, testLogger(t))
	w.held = newHeldSet()
	at := time.Now()
	w.held.release(w.held.hold(&rivertype.JobRow{ID: 7, Attempt: 1, AttemptedAt: &at}))
	w.held.release(w.held.hold(&rivertype.JobRow{ID: 8, Attempt: 1, AttemptedAt: &at}))
	w.held.settle([]int64{8}) // River saved this one
	w.beat(time.Now().Add(-time.Minute))
	w.check(time.Now())
	if !w.isStale(7) {
		t.Error("the returned attempt whose completion is unsaved is not guarded")
	}
	if w.isStale(8) {
		t.Error("the attempt whose completion River saved is guarded")
	}
	w.mu.Lock()
	s := w.stale[7]
	w.mu.Unlock()
	if s != nil && !s.sameFetch(1, &at) {
		t.Errorf("guard = attempt %d at %v, want attempt 1 at %v", s.attempt, s.attemptedAt, at)
	}
}

// The watchdog checks again every bound while the heartbeat is lost: an
// attempt it cancelled already keeps its entry (whose done the pilot
// closes, and whose rerun a re-run set), and a fetch that starts while the
// heartbeat is lost does not replace the entry of an earlier one.
func TestWatchdogKeepsStaleEntries(t *testing.T) {
	t.Parallel()
	w := newWatchdog(2*time.Second, 500*time.Millisecond, testLogger(t))
	mw := &watchdogMiddleware{watchdog: w}
	w.beat(time.Now())
	at1 := time.Now().Add(-time.Minute)
	started := make(chan struct{})
	release := make(chan struct{})
	go func() {
		_ = mw.Work(context.Background(), &rivertype.JobRow{ID: 3, Attempt: 1, AttemptedAt: &at1}, func(ctx context.Context) error {
			close(started)
			<-release
			return ctx.Err()
		})
	}()
	<-started
	defer close(release)
	w.mu.Lock()
	w.beatAt = time.Now().Add(-time.Minute)
	w.mu.Unlock()
	entry := func() *staleAttempt {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.stale[3]
	}
	w.check(time.Now())
	first := entry()
	if first == nil {
		t.Fatal("the cancelled attempt is not remembered")
	}
	w.check(time.Now())
	if entry() != first {
		t.Error("a second check replaced the cancelled attempt's entry")
	}
	at2 := time.Now()
	_ = mw.Work(context.Background(), &rivertype.JobRow{ID: 3, Attempt: 2, AttemptedAt: &at2}, func(context.Context) error { return nil })
	if e := entry(); e != first || !e.sameFetch(1, &at1) {
		t.Error("an attempt that started while the heartbeat was lost replaced an earlier fetch's entry")
	}
}

// overdue, which the attempt recorder asks before each unchecked write,
// turns true once the last good heartbeat is older than the watchdog's
// bound, and false again with the next.
func TestWatchdogOverdue(t *testing.T) {
	t.Parallel()
	w := newWatchdog(5*time.Second, time.Second, slog.New(slog.DiscardHandler))
	now := time.Now()
	w.beat(now)
	if w.overdue() {
		t.Error("overdue right after a heartbeat")
	}
	w = newWatchdog(5*time.Second, time.Second, slog.New(slog.DiscardHandler))
	w.beat(now.Add(-w.bound - time.Millisecond))
	if !w.overdue() {
		t.Errorf("not overdue %s after the last heartbeat (bound %s)", w.bound+time.Millisecond, w.bound)
	}
	w.beat(time.Now())
	if w.overdue() {
		t.Error("still overdue after the next heartbeat")
	}
}
