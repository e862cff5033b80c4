package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/store"
	"github.com/taskd/taskd/internal/tasks"
)

const (
	// The release runs' sleep tasks sleep waitSleepMinMS to
	// waitSleepMinMS+waitSleepSpreadMS-1 ms, so that they finish at
	// scattered moments rather than in step.
	waitSleepMinMS    = 50
	waitSleepSpreadMS = 51
	// waitPauseMax bounds the random pause of a release run's waiter
	// before each submission. Without it the waiters lock onto the period
	// of whatever releases them in steps (River's batch completer writes
	// the states of a lightly loaded process every 250 ms): each submits
	// as soon as it is released, so its next task finishes a fixed time
	// after the last step, and the delays measure that phase, not what a
	// task finishing at any moment sees. A pause uniform over a multiple of
	// 250 ms makes the phase uniform.
	waitPauseMax = 500 * time.Millisecond
	// releaseWait is the ?wait= of the release runs: far longer than any
	// of their tasks, so that an answer before the task finished is an
	// error, not a sample.
	releaseWait = 30 * time.Second
	// heldWait is the ?wait= of the waiters held while transactions are
	// counted: the longest the API allows, longer than the settle and the
	// window together (parseConfig checks), so that no wait ends, and no
	// request is re-sent, while they are counted.
	heldWait = tasks.WaitMax
	// heldDelay schedules the held waiters' tasks: none of them runs, or
	// finishes, during the measurement.
	heldDelay = "1h"
)

// waitSample is one waited-for task of a release run. finished is the
// task's finished_at, River's finalized_at, which River's executor takes
// from the clock of the process that ran the task (time.Now) when the work
// returns, before its completer writes the state; answered is the
// harness's clock when the waiting GET's answer was read. Both are the
// same machine's clock.
type waitSample struct {
	id       int64
	finished time.Time
	answered time.Time
}

// waitRelease is one release run of scenario 4, in ms: from a task's
// finished_at to the answer of the GET ?wait= waiting for it, and that
// delay in two parts, split where the announcement of the task (the NOTIFY
// that wakes waiters) reached the harness's own listener.
type waitRelease struct {
	P50, P95, P99, Min, Max float64
	// Announced is finished_at → announcement: River writing the final
	// state (its batch completer) and taskd's announcer (its 2 ms linger
	// and the NOTIFY).
	AnnouncedP50, AnnouncedP95 float64
	// Answered is announcement → answer: the waiter's wake-up, its read of
	// the task and the HTTP answer.
	AnsweredP50, AnsweredP95 float64
	N, Heard                 int // samples, and those whose announcement the harness heard
}

func (r waitRelease) String() string {
	return fmt.Sprintf("release p50 %s ms, p95 %s ms, p99 %s ms [min %s, max %s] (%d tasks); finished→announced p50 %s, p95 %s; announced→answer p50 %s, p95 %s (%d announcements heard)",
		num(r.P50), num(r.P95), num(r.P99), num(r.Min), num(r.Max), r.N,
		num(r.AnnouncedP50), num(r.AnnouncedP95), num(r.AnsweredP50), num(r.AnsweredP95), r.Heard)
}

// xactResult is one transactions run of scenario 4: transactions a second
// in the database (pg_stat_database, xact_commit + xact_rollback: every
// backend's, River's own included) with one waiter and with IdleWaiters
// waiters held.
type xactResult struct {
	One, Many float64
	Waiters   int // how many Many is with
	// PerWait is the transactions of starting the IdleWaiters waits,
	// beyond the one-waiter rate, per wait.
	PerWait float64
}

func (r xactResult) String() string {
	return fmt.Sprintf("%s xact/s with 1 waiter, %s with %d; %s xact per started wait", num(r.One), num(r.Many), r.Waiters, num(r.PerWait))
}

// finishHeard records when each task's announcement reached the harness,
// through the listener taskd itself uses (store.ListenFinished).
type finishHeard struct {
	mu     sync.Mutex
	at     map[int64]time.Time
	cancel context.CancelFunc
	done   chan error
}

// listenFinished starts listening to the announcements of finished tasks
// on dbURL; it returns once the LISTEN is in place.
func listenFinished(ctx context.Context, dbURL string) (*finishHeard, error) {
	pool, err := newPool(ctx, dbURL, 1)
	if err != nil {
		return nil, err
	}
	l, err := store.New(pool).ListenFinished(ctx)
	pool.Close() // the listener has a connection of its own
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancel(ctx)
	h := &finishHeard{at: map[int64]time.Time{}, cancel: cancel, done: make(chan error, 1)}
	go func() {
		defer func() { _ = l.Close(context.WithoutCancel(ctx)) }()
		for {
			ids, err := l.Next(lctx)
			now := time.Now()
			if err != nil {
				if lctx.Err() != nil {
					err = nil
				}
				h.done <- err
				return
			}
			h.mu.Lock()
			for _, id := range ids {
				if _, ok := h.at[id]; !ok {
					h.at[id] = now
				}
			}
			h.mu.Unlock()
		}
	}()
	return h, nil
}

func (h *finishHeard) heard(id int64) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.at[id]
	return t, ok
}

// close stops listening; it returns the listener's error, if it failed.
func (h *finishHeard) close() error {
	h.cancel()
	return <-h.done
}

// waitClient is an HTTP client for conc requests held up to wait at once.
func waitClient(baseURL string, conc int, wait time.Duration) (*client.Client, error) {
	hc := newHTTPClient(conc)
	hc.Timeout = wait + 30*time.Second
	return client.New(baseURL, client.Config{HTTPClient: hc})
}

// waitReleaseRun measures the release delay on a fresh database: Waiters
// goroutines, until WaitN tasks are done, each pause for a random time up
// to waitPauseMax, submit a sleep task through POST /v1/tasks, and wait
// for it at once with GET /v1/tasks/{id}?wait=30s. With otherProcess, the
// tasks are submitted to a `taskd serve` at its defaults, which runs them,
// and waited for through a second one that works only the cpu queue (sleep
// runs on default), so that no waiter is in the process that ran its task;
// otherwise one `taskd serve` does both.
func (b *bench) waitReleaseRun(ctx context.Context, otherProcess bool) (waitRelease, error) {
	c := b.cfg
	var res waitRelease
	err := b.withDB(ctx, func(dbURL string) (err error) {
		stop := func(p *taskdProcess) {
			if serr := p.stop(); serr != nil {
				err = errors.Join(err, serr)
			}
		}
		runner, err := startTaskd(ctx, b.taskd, dbURL)
		if err != nil {
			return err
		}
		defer stop(runner)
		waiter := runner
		if otherProcess {
			if waiter, err = startTaskd(ctx, b.taskd, dbURL, "TASKD_QUEUES="+builtin.QueueCPU+"=1"); err != nil {
				return err
			}
			defer stop(waiter)
		}
		w, err := newWatcher(ctx, dbURL)
		if err != nil {
			return err
		}
		defer w.close(ctx)
		heard, err := listenFinished(ctx, dbURL)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, heard.close()) }()
		submitter, err := waitClient(runner.base, c.Waiters, releaseWait)
		if err != nil {
			return err
		}
		waits, err := waitClient(waiter.base, c.Waiters, releaseWait)
		if err != nil {
			return err
		}

		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		var (
			next    atomic.Int64
			wg      sync.WaitGroup
			samples = make([][]waitSample, c.Waiters)
			kind    = "sleep"
		)
		for wi := range c.Waiters {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= c.WaitN || ctx.Err() != nil {
						return
					}
					sleep(ctx, rand.N(waitPauseMax))
					args := json.RawMessage(`{"ms":` + strconv.Itoa(waitSleepMinMS+i*37%waitSleepSpreadMS) + `}`)
					t, _, err := submitter.Submit(ctx, client.TaskRequest{Kind: &kind, Args: args}, client.SubmitOptions{})
					if err != nil {
						cancel(fmt.Errorf("submit: %w", err))
						return
					}
					got, err := waits.Wait(ctx, t.ID, releaseWait)
					answered := time.Now()
					if err != nil {
						cancel(fmt.Errorf("wait for task %d: %w", t.ID, err))
						return
					}
					if got.State != "completed" || got.FinishedAt == nil {
						cancel(fmt.Errorf("the wait for task %d answered with state %s, before the task finished", t.ID, got.State))
						return
					}
					samples[wi] = append(samples[wi], waitSample{id: t.ID, finished: *got.FinishedAt, answered: answered})
				}
			})
		}
		wg.Wait()
		if err := context.Cause(ctx); err != nil {
			return err
		}
		all := slices.Concat(samples...)
		var release, announced, answered []float64
		for _, s := range all {
			release = append(release, ms(s.answered.Sub(s.finished)))
			if at, ok := heard.heard(s.id); ok {
				announced = append(announced, ms(at.Sub(s.finished)))
				answered = append(answered, ms(s.answered.Sub(at)))
			}
		}
		slices.Sort(release)
		slices.Sort(announced)
		slices.Sort(answered)
		res = waitRelease{
			P50: percentile(release, 50), P95: percentile(release, 95), P99: percentile(release, 99),
			Min: release[0], Max: release[len(release)-1],
			AnnouncedP50: percentile(announced, 50), AnnouncedP95: percentile(announced, 95),
			AnsweredP50: percentile(answered, 50), AnsweredP95: percentile(answered, 95),
			N: len(release), Heard: len(announced),
		}
		return w.waitDone(ctx, c.WaitN, runLimit)
	})
	return res, err
}

// xactRun counts the database's transactions on a fresh database with
// `taskd serve` at its defaults and IdleWaiters tasks scheduled an hour
// ahead: over XactWindow with one GET /v1/tasks/{id}?wait=60s held, then,
// that one ended, over XactWindow with IdleWaiters held, one per task.
// Each count starts XactSettle after whatever came before it.
func (b *bench) xactRun(ctx context.Context) (xactResult, error) {
	c := b.cfg
	if err := fileLimit(c.IdleWaiters + 256); err != nil {
		return xactResult{}, err
	}
	res := xactResult{Waiters: c.IdleWaiters}
	err := b.withDB(ctx, func(dbURL string) (err error) {
		p, err := startTaskd(ctx, b.taskd, dbURL)
		if err != nil {
			return err
		}
		defer func() {
			if serr := p.stop(); serr != nil {
				err = errors.Join(err, serr)
			}
		}()
		cl, err := waitClient(p.base, c.IdleWaiters, heldWait)
		if err != nil {
			return err
		}
		ids, err := scheduleTasks(ctx, cl, c.IdleWaiters, c.BatchSize)
		if err != nil {
			return err
		}
		count := func() (int64, time.Time, error) {
			n, err := b.dbs.xacts(ctx, dbURL)
			return n, time.Now(), err
		}
		// window waits XactSettle, then counts over XactWindow; it returns
		// the rate and the count and time it started from.
		window := func() (rate float64, x0 int64, t0 time.Time, err error) {
			sleep(ctx, c.XactSettle)
			if x0, t0, err = count(); err != nil {
				return 0, 0, t0, err
			}
			sleep(ctx, c.XactWindow)
			x1, t1, err := count()
			if err != nil {
				return 0, 0, t0, err
			}
			return float64(x1-x0) / t1.Sub(t0).Seconds(), x0, t0, ctx.Err()
		}

		one := holdWaits(ctx, cl, ids[:1])
		res.One, _, _, err = window()
		if err := errors.Join(err, one.end()); err != nil {
			return fmt.Errorf("one waiter: %w", err)
		}
		xs, ts, err := count()
		if err != nil {
			return err
		}
		many := holdWaits(ctx, cl, ids)
		var xw int64
		var tw time.Time
		res.Many, xw, tw, err = window()
		if err := errors.Join(err, many.end()); err != nil {
			return fmt.Errorf("%d waiters: %w", len(ids), err)
		}
		// By the window's start every backend had reported the starts'
		// transactions (XactSettle), and none came after it.
		res.PerWait = (float64(xw-xs) - res.One*tw.Sub(ts).Seconds()) / float64(len(ids))
		return nil
	})
	return res, err
}

// scheduleTasks submits n double tasks scheduled heldDelay ahead, in
// batches of batch, and returns their IDs.
func scheduleTasks(ctx context.Context, cl *client.Client, n, batch int) ([]int64, error) {
	kind, delay := "double", heldDelay
	ids := make([]int64, 0, n)
	for len(ids) < n {
		reqs := make([]client.TaskRequest, min(batch, n-len(ids)))
		for i := range reqs {
			reqs[i] = client.TaskRequest{Kind: &kind, Args: json.RawMessage(`{"value":1}`), Delay: &delay}
		}
		created, _, err := cl.SubmitBatch(ctx, reqs, client.SubmitOptions{})
		if err != nil {
			return nil, fmt.Errorf("scheduling tasks: %w", err)
		}
		ids = append(ids, created.TaskIDs...)
	}
	return ids, nil
}

// heldWaits are waiting requests that must not end before end is called.
type heldWaits struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error // the first wait that ended early
}

// holdWaits sends GET /v1/tasks/{id}?wait=60s for each of ids at once.
func holdWaits(ctx context.Context, cl *client.Client, ids []int64) *heldWaits {
	hctx, cancel := context.WithCancel(ctx)
	h := &heldWaits{cancel: cancel}
	for _, id := range ids {
		h.wg.Go(func() {
			t, err := cl.Wait(hctx, id, heldWait)
			if hctx.Err() != nil {
				return
			}
			if err == nil {
				err = fmt.Errorf("the wait for task %d answered (state %s) while it was to be held", id, t.State)
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.err == nil {
				h.err = err
			}
		})
	}
	return h
}

// end ends the waits (the client goes away, so taskd neither reads nor
// answers anything more for them) and returns the first that ended early.
func (h *heldWaits) end() error {
	h.cancel()
	h.wg.Wait()
	return h.err
}

// fileLimit makes sure the harness may have n files open: each held wait
// is a connection. (Go raises the soft limit to the hard one at start, and
// taskd, a Go program, does so for itself; this only names the problem
// when the hard limit is too low.)
func fileLimit(n int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("reading the open-files limit: %w", err)
	}
	if lim.Cur >= uint64(n) {
		return nil
	}
	if lim.Max < uint64(n) {
		return fmt.Errorf("-idle-waiters needs about %d open files, over the hard limit of %d (ulimit -Hn)", n, lim.Max)
	}
	lim.Cur = uint64(n)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raising the open-files limit to %d: %w", n, err)
	}
	return nil
}

// scenario4: waiters. The release delay of GET /v1/tasks/{id}?wait= in
// the process that ran the task and in another one, and the database's
// transactions with one waiter and with IdleWaiters.
func (b *bench) scenario4(ctx context.Context) error {
	c := b.cfg
	b.logf("scenario 4: waiters: %d waiters each pause up to %s, submit a sleep task of %d–%d ms and wait for it (?wait=%s), until %d are done, in the process that ran it and through another; then transactions/s over %s (after %s) with 1 and %d waiters held (?wait=%s) on tasks scheduled %s ahead; %d rounds",
		c.Waiters, waitPauseMax, waitSleepMinMS, waitSleepMinMS+waitSleepSpreadMS-1, releaseWait, c.WaitN, c.XactWindow, c.XactSettle, c.IdleWaiters, heldWait, heldDelay, c.Pairs)
	// variant (same process, other process), metric (p50, p95, p99,
	// finished→announced p95, announced→answer p95), rounds.
	var rel [2][5][]float64
	var one, many, perWait []float64
	for i := 1; i <= c.Pairs; i++ {
		for v, other := range []bool{false, true} {
			r, err := b.waitReleaseRun(ctx, other)
			if err != nil {
				return fmt.Errorf("release delay (other process %t): %w", other, err)
			}
			b.logf("  round %d %-14s %s", i, []string{"same process:", "other process:"}[v], r)
			for mi, x := range []float64{r.P50, r.P95, r.P99, r.AnnouncedP95, r.AnsweredP95} {
				rel[v][mi] = append(rel[v][mi], x)
			}
		}
		r, err := b.xactRun(ctx)
		if err != nil {
			return fmt.Errorf("transactions: %w", err)
		}
		b.logf("  round %d transactions: %s", i, r)
		one, many, perWait = append(one, r.One), append(many, r.Many), append(perWait, r.PerWait)
	}
	for v, prefix := range []string{"", "other process "} {
		for mi, metric := range []string{"release p50 ms", "release p95 ms", "release p99 ms", "finished→announced p95 ms", "announced→answer p95 ms"} {
			target := ""
			if mi == 1 {
				target = "p95 ≤ 50 ms"
			}
			b.compare(row{Scenario: "4 waiters", Metric: prefix + metric, A: rel[v][mi], Baseline: "(taskd only)", Target: target})
		}
	}
	b.compare(row{Scenario: "4 waiters", Metric: "xact/s " + strconv.Itoa(c.IdleWaiters) + " waiters", A: many, B: one,
		Baseline: "xact/s 1 waiter, same taskd", Target: "≤1.2× 1 waiter"})
	b.compare(row{Scenario: "4 waiters", Metric: "xact per started wait", A: perWait, Baseline: "(taskd only)"})
	return nil
}
