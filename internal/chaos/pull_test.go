package chaos_test

// The pull executor under dying workers (docs/RELIABILITY.md): three
// worker processes claim the tasks of an external kind from two taskd
// processes, heartbeat the ones that outlast their 5 s lease, and complete
// them, recording every execution in chaos_executions; a random worker is
// killed with SIGKILL every few seconds, mid-task, and a new one started.
// The killed worker's leases expire and its tasks are claimed again. Every
// acknowledged task must complete, every execution must be one of taskd's
// attempt rows with the outcome its end calls for (a killed worker's claim
// a timeout, "lease expired"), and every execution a kill cut off must be
// claimed again.
//
// The workers are this test binary run again (pullWorkerEnv), in Go with
// the public client: the Python client has the same protocol and its own
// tests (clients/python), and cannot record executions in PostgreSQL
// without a driver the machine lacks.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/chaos"
)

const (
	// pullWorkerEnv names the worker in a process started as a worker;
	// pullURLsEnv are the taskd base URLs it claims from, comma-separated.
	pullWorkerEnv = "TASKD_CHAOS_PULL_WORKER"
	pullURLsEnv   = "TASKD_CHAOS_PULL_URLS"
	// pullConcurrency is how many tasks one worker works at once.
	pullConcurrency = 8
	pullLease       = 5 * time.Second
	pullAttempts    = 50
	pullKind        = "chaos_pull"
)

// Outcomes a worker records for an execution (chaos_executions.outcome);
// an execution its worker was killed under keeps none (ended_at null).
const (
	pullWorkDone  = "work done"  // the work finished; the completion is being sent
	pullCompleted = "completed"  // the completion was answered 200
	pullConflict  = "conflict"   // the completion was answered 409: the lease had gone
	pullLeaseLost = "lease lost" // a heartbeat was answered 409; the work was dropped
	pullNoReport  = "no report"  // the completion never got an answer
)

// pullUnrecorded is the error of a worker's fail when it could not record
// its execution: the harness's trouble, not taskd's, counted apart.
const pullUnrecorded = "chaos: cannot record the execution"

// The test binary, started with pullWorkerEnv set, is a worker instead.
func init() {
	if name := os.Getenv(pullWorkerEnv); name != "" {
		os.Exit(pullWorkerMain(name))
	}
}

// pullWorkerMain claims and works tasks until SIGTERM, then finishes the
// tasks it holds and exits.
func pullWorkerMain(name string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	cfg, err := pgxpool.ParseConfig(os.Getenv("TASKD_CHAOS_DATABASE_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg.MaxConns = 3
	cfg.ConnConfig.RuntimeParams["application_name"] = "taskd-chaos-worker"
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer pool.Close()
	var clients []*client.Client
	for _, u := range strings.Split(os.Getenv(pullURLsEnv), ",") {
		c, err := client.New(u, client.Config{HTTPClient: &http.Client{Timeout: 15 * time.Second}})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		clients = append(clients, c)
	}
	w := &pullWorker{name: name, pool: pool, clients: clients}
	var wg sync.WaitGroup
	for i := range pullConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(ctx, i)
		}()
	}
	wg.Wait()
	return 0
}

type pullWorker struct {
	name    string
	pool    *pgxpool.Pool
	clients []*client.Client
}

func (w *pullWorker) loop(ctx context.Context, i int) {
	one, wait := 1, "2s"
	for turn := i; ctx.Err() == nil; turn++ {
		c := w.clients[turn%len(w.clients)]
		tasks, err := c.Claim(ctx, client.ClaimRequest{Kinds: []string{pullKind}, Max: &one, Wait: &wait, Worker: &w.name})
		if err != nil {
			if ctx.Err() == nil {
				fmt.Fprintf(os.Stderr, "%s: claim: %v\n", w.name, err)
				time.Sleep(200 * time.Millisecond)
			}
			continue
		}
		for _, task := range tasks {
			w.work(turn, task)
		}
	}
}

// work records the execution, works the task (sleeping its ms), with a
// heartbeat every third of the lease, and completes it with the execution
// as its result. It runs on a context of its own: a worker told to stop
// finishes what it holds.
func (w *pullWorker) work(turn int, task client.ClaimedTask) {
	ctx := context.Background()
	var execution string
	// The shared PostgreSQL may be out of connections for a moment (other
	// tests run too): the record is tried for a while, within the lease.
	var err error
	for try := 0; try < 10; try++ {
		err = w.pool.QueryRow(ctx, `INSERT INTO chaos_executions (task_id, attempt, pid)
			VALUES ($1, $2, $3) RETURNING execution::text`, task.ID, task.Attempt, os.Getpid()).Scan(&execution)
		if err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		// Unrecorded work must not happen: the task is given back.
		fmt.Fprintf(os.Stderr, "%s: recording task %d: %v\n", w.name, task.ID, err)
		zero := "0s"
		_, _ = w.clients[0].Fail(ctx, task.ID, task.Lease, pullUnrecorded, client.FailRequest{RetryAfter: &zero})
		return
	}
	end := func(outcome string, finished bool) {
		q := `UPDATE chaos_executions SET outcome = $2 WHERE execution = $1`
		if finished {
			q = `UPDATE chaos_executions SET outcome = $2, ended_at = clock_timestamp() WHERE execution = $1`
		}
		if _, err := w.pool.Exec(ctx, q, execution, outcome); err != nil {
			fmt.Fprintf(os.Stderr, "%s: recording task %d's end: %v\n", w.name, task.ID, err)
		}
	}
	var args struct {
		MS int `json:"ms"`
	}
	_ = json.Unmarshal(task.Args, &args)
	lease := time.Until(task.LeaseExpiresAt)
	beat := time.NewTicker(max(lease/3, 100*time.Millisecond))
	defer beat.Stop()
	done := time.After(time.Duration(args.MS) * time.Millisecond)
	for working := true; working; {
		select {
		case <-done:
			working = false
		case <-beat.C:
			_, err := w.clients[rand.N(len(w.clients))].Heartbeat(ctx, task.ID, task.Lease, "")
			if cerr, ok := errors.AsType[*client.Error](err); ok && cerr.Status == http.StatusConflict {
				end(pullLeaseLost, true)
				return
			}
		}
	}
	end(pullWorkDone, true)
	result := json.RawMessage(fmt.Sprintf(`{"execution":%q}`, execution))
	for try := 0; try < 10; try++ {
		_, err := w.clients[(turn+try)%len(w.clients)].Complete(ctx, task.ID, task.Lease, result)
		if err == nil {
			end(pullCompleted, false)
			return
		}
		if cerr, ok := errors.AsType[*client.Error](err); ok && cerr.Status == http.StatusConflict {
			end(pullConflict, false)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	end(pullNoReport, false)
}

// workerProc is a worker process of the test's.
type workerProc struct {
	name string
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan struct{}
}

func startPullWorker(t *testing.T, name string, urls []string, db string) *workerProc {
	t.Helper()
	w := &workerProc{name: name, out: &bytes.Buffer{}, done: make(chan struct{})}
	w.cmd = exec.Command(os.Args[0], "-test.run=^$")
	w.cmd.Env = append(os.Environ(), pullWorkerEnv+"="+name, pullURLsEnv+"="+strings.Join(urls, ","),
		"TASKD_CHAOS_DATABASE_URL="+db)
	w.cmd.Stdout, w.cmd.Stderr = w.out, w.out
	if err := w.cmd.Start(); err != nil {
		t.Fatalf("starting worker %s: %v", name, err)
	}
	go func() { _ = w.cmd.Wait(); close(w.done) }()
	t.Cleanup(func() {
		_ = w.cmd.Process.Kill()
		<-w.done
		if t.Failed() && w.out.Len() > 0 {
			t.Logf("worker %s (pid %d) output:\n%s", w.name, w.cmd.Process.Pid, w.out.String())
		}
	})
	return w
}

func TestChaosPullWorkerKill(t *testing.T) {
	// Submits are paced under the workers' capacity (24 at once, 0.3 s a
	// task on average: about 70 tasks/s), so that a task a kill gives
	// back waits for its lease, not behind a backlog.
	total := chaos.Size(1_500, 20_000)
	batch, pause := 50, time.Second
	minKills := chaos.Size(4, 10)
	every := chaos.Size(3*time.Second, 5*time.Second)

	config := fmt.Sprintf(`kinds:
  - name: %s
    run: external
    queue: pull
    timeout: %s
    max_attempts: %d
    backoff: {initial: 100ms, max: 500ms, multiplier: 2, jitter: 0.1}
`, pullKind, pullLease, pullAttempts)
	c := chaos.NewCluster(t, chaos.ClusterOptions{Processes: 2, Queues: "default=5", Config: config})
	var urls []string
	for _, p := range c.Procs {
		urls = append(urls, p.URL)
	}

	seq := 0
	live := map[string]*workerProc{}
	names := map[int]string{} // by PID, every worker's
	spawn := func() {
		seq++
		w := startPullWorker(t, fmt.Sprintf("chaos-pull-%d", seq), urls, c.DatabaseURL)
		live[w.name] = w
		names[w.cmd.Process.Pid] = w.name
	}
	for range 3 {
		spawn()
	}

	ledger := &chaos.Ledger{}
	// Most tasks take 0–400 ms; one in 50 takes 6–7 s, past its lease,
	// and lives on heartbeats.
	args := func(i int) json.RawMessage {
		ms := i * 37 % 401
		if i%50 == 0 {
			ms = 6000 + i%1000
		}
		return json.RawMessage(`{"ms":` + strconv.Itoa(ms) + `}`)
	}
	sub := &chaos.Submitter{Clients: c.Clients(t), Ledger: ledger, Kind: pullKind, Args: args,
		Batch: batch, Workers: 1, Total: total, Pause: pause}
	start := time.Now()
	sub.Start(context.Background())

	type workerKill struct {
		name string
		pid  int
		at   time.Time
	}
	var kills []workerKill
	killedAt := map[string]time.Time{}
	// Kill while four fifths of the work is not yet done, and at least
	// minKills times.
	for len(kills) < minKills || sub.Stats().Acknowledged < total || finalCount(t, c.Pool) < total*4/5 {
		time.Sleep(every) // the fault's pace, not a wait for state
		alive := make([]string, 0, len(live))
		for n := range live {
			alive = append(alive, n)
		}
		w := live[alive[rand.N(len(alive))]]
		k := workerKill{name: w.name, pid: w.cmd.Process.Pid, at: time.Now()}
		_ = w.cmd.Process.Kill()
		<-w.done
		kills = append(kills, k)
		killedAt[w.name] = k.at
		delete(live, w.name)
		spawn()
		if time.Since(start) > 10*time.Minute {
			t.Fatalf("the work did not progress: %d of %d final after %d kills", finalCount(t, c.Pool), total, len(kills))
		}
	}
	lastKill := time.Now()
	if !sub.Wait(5 * time.Minute) {
		t.Fatalf("submitting did not finish: %+v", sub.Stats().ByStatus)
	}
	st := sub.Stop()

	r := chaos.Check(t, c.Pool, ledger, 3*time.Minute)
	// The workers finish what they hold (the record of their last
	// completions) and exit.
	for _, w := range live {
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, w := range live {
		select {
		case <-w.done:
		case <-time.After(30 * time.Second):
			t.Errorf("worker %s did not stop within 30 s of SIGTERM", w.name)
		}
	}

	var delays []time.Duration
	notRerun := 0
	for _, k := range kills {
		d, n, err := chaos.RerunDelays(context.Background(), c.Pool, k.pid, k.at)
		if err != nil {
			t.Fatal(err)
		}
		delays = append(delays, d...)
		notRerun += n
	}
	a := auditPull(t, c.Pool, ledger.IDs(), names, killedAt)
	rescued := riverRescues(t, c.Pool, ledger.IDs())

	r.Figure("kills", "%d", len(kills))
	r.Figure("run", "%s (last kill %s after the start)", time.Since(start).Round(time.Second), lastKill.Sub(start).Round(time.Second))
	r.Figure("executions_by_end", "%v", a.byEnd)
	r.Figure("attempt_rows", "%d %v", a.rows, a.byOutcome)
	r.Figure("work_done_twice", "%d tasks (work finished more than once)", a.doneTwice)
	r.Figure("unaccounted", "%d executions without a matching attempt row, %d with the wrong outcome, %d rows without an execution (%v)",
		a.unmatched, a.mismatched, a.rowsWithoutExec, a.rowsWithoutExecBy)
	r.Figure("unrecorded_by_workers", "%d attempts failed because the worker could not record them", a.unrecorded)
	r.Figure("cut_off_by_kills", "%d", len(delays)+notRerun)
	r.Figure("kill_to_reclaim", "p50 %s, p99 %s, max %s", chaos.Percentile(delays, 50).Round(time.Millisecond),
		chaos.Percentile(delays, 99).Round(time.Millisecond), chaos.Percentile(delays, 100).Round(time.Millisecond))
	r.Figure("kill_to_lease_expiry", "p50 %s, p99 %s, max %s", chaos.Percentile(a.expiry, 50).Round(time.Millisecond),
		chaos.Percentile(a.expiry, 99).Round(time.Millisecond), chaos.Percentile(a.expiry, 100).Round(time.Millisecond))
	r.Figure("river_rescues", "%d", rescued)
	r.Figure("heartbeated_tasks", "%d completed after a heartbeat-extended lease", a.heartbeated)
	r.Figure("submit_answers", "%v, no answer %d", st.ByStatus, st.Transport)
	chaos.Publish(t, r)
	chaos.RequireNoLoss(t, r)
	if r.States["completed"] != r.Acknowledged {
		// Discarded only when each of its 50 attempts was cut off, which
		// a kill every few seconds among three workers does not do.
		t.Errorf("%d of %d tasks not completed: %v", r.Acknowledged-r.States["completed"], r.Acknowledged, r.States)
	}
	if notRerun > 0 {
		t.Errorf("%d tasks cut off by a kill were never claimed again", notRerun)
	}
	if len(delays) == 0 {
		t.Errorf("no kill cut off a running task: the test tested nothing (%d kills)", len(kills))
	}
	if a.heartbeated == 0 {
		t.Errorf("no task outlived its lease on heartbeats: the test tested nothing of them")
	}
	if rescued > 0 {
		t.Errorf("River's own rescuer took %d tasks (its horizon is far beyond any lease)", rescued)
	}
	for _, p := range a.problems {
		t.Error(p)
	}
}

// finalCount is how many tasks of the pull kind are final.
func finalCount(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM river_job
		WHERE kind = $1 AND state IN ('completed', 'discarded', 'cancelled')`, pullKind).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// pullAudit is how the workers' executions and taskd's attempt rows
// compare.
type pullAudit struct {
	rows             int
	byEnd, byOutcome map[string]int
	doneTwice        int
	heartbeated      int
	// expiry is, for each attempt a kill cut off, the time from the kill
	// to the end of its lease (its attempt row's end).
	expiry                []time.Duration
	unmatched, mismatched int
	rowsWithoutExec       int
	rowsWithoutExecBy     map[string]int
	// unrecorded are attempts failed by workers that could not record
	// their execution.
	unrecorded int
	problems   []string
}

func (a *pullAudit) problem(format string, args ...any) {
	if len(a.problems) < 30 {
		a.problems = append(a.problems, fmt.Sprintf(format, args...))
	}
}

type pullExec struct {
	pid                int
	execution, outcome string
	started            time.Time
	ended              *time.Time
}

// auditPull compares, task by task, the executions with taskd's attempt
// rows:
//   - every execution is the attempt row of its task and attempt: completed
//     when its completion was answered 200; a timeout with "lease expired"
//     when its worker was killed under it, lost its lease or was answered
//     409; completed or such a timeout when its worker was killed while
//     completing;
//   - an attempt row without an execution is a lease that expired, of a
//     killed worker (killed between its claim and its record);
//   - each final task has as many attempt rows as River counted attempts,
//     each with an outcome, and a completed task exactly one completed row,
//     whose execution is the task's result.
func auditPull(t *testing.T, pool *pgxpool.Pool, ids []int64, workers map[int]string, killedAt map[string]time.Time) pullAudit {
	t.Helper()
	ctx := context.Background()
	a := pullAudit{byEnd: map[string]int{}, byOutcome: map[string]int{}, rowsWithoutExecBy: map[string]int{}}
	killed := map[string]bool{}
	for name := range killedAt {
		killed[name] = true
	}
	rows := attemptRows(t, pool, ids)
	for _, rs := range rows {
		for _, r := range rs {
			a.rows++
			a.byOutcome[r.outcome]++
		}
	}
	execs := map[attemptKey][]pullExec{}
	byTask := map[int64][]pullExec{}
	q, err := pool.Query(ctx, `SELECT task_id, attempt, pid, execution::text, coalesce(outcome, ''), started_at, ended_at
		FROM chaos_executions WHERE task_id = ANY($1) ORDER BY started_at`, ids)
	if err != nil {
		t.Fatal(err)
	}
	for q.Next() {
		var k attemptKey
		var e pullExec
		if err := q.Scan(&k.task, &k.attempt, &e.pid, &e.execution, &e.outcome, &e.started, &e.ended); err != nil {
			t.Fatal(err)
		}
		execs[k] = append(execs[k], e)
		byTask[k.task] = append(byTask[k.task], e)
		end := e.outcome
		if e.ended == nil {
			end = "cut off"
		}
		a.byEnd[end]++
	}
	if q.Err() != nil {
		t.Fatal(q.Err())
	}

	expired := func(r attemptRow) bool { return r.outcome == "timeout" && r.err == "lease expired" }
	// An attempt number is handed out again after an interrupted attempt
	// (a claim whose answer did not reach its worker, given back), so one
	// number may have several rows and executions: each execution goes
	// with its own worker's row.
	for k, es := range execs {
		rs := rows[k]
		used := make([]bool, len(rs))
		for _, e := range es {
			worker := workers[e.pid]
			i := -1
			for n, r := range rs {
				if !used[n] && r.worker == worker && r.outcome != "interrupted" {
					i = n
					break
				}
			}
			if i < 0 {
				a.unmatched++
				a.problem("task %d attempt %d: an execution by %s (ended %q) but no attempt row of its claim (rows %v)",
					k.task, k.attempt, worker, e.outcome, outcomes(rs))
				continue
			}
			used[i] = true
			r := rs[i]
			var ok bool
			switch {
			case e.ended == nil:
				ok = killed[worker] && expired(r)
				if ok {
					a.expiry = append(a.expiry, r.finished.Sub(killedAt[worker]))
				}
			case e.outcome == pullCompleted:
				ok = r.outcome == "completed"
			case e.outcome == pullConflict, e.outcome == pullLeaseLost:
				ok = expired(r)
			case e.outcome == pullWorkDone:
				ok = killed[worker] && (r.outcome == "completed" || expired(r))
			case e.outcome == pullNoReport:
				// Its completion may have been saved, its answer lost.
				ok = r.outcome == "completed" || expired(r)
			}
			if !ok {
				a.mismatched++
				a.problem("task %d attempt %d: execution by %s (killed %v) ended %q, attempt row %s: %s",
					k.task, k.attempt, worker, killed[worker], e.outcome, r.outcome, r.err)
			}
		}
		for i, r := range rs {
			if used[i] {
				continue
			}
			a.rowsWithoutExec++
			a.rowsWithoutExecBy[r.outcome]++
			switch {
			case r.outcome == "interrupted" && r.err == "the claim's answer did not reach its worker":
				// Given back: the worker must not have worked it.
				for _, e := range es {
					if workers[e.pid] == r.worker {
						a.problem("task %d attempt %d: the claim of %s was given back (interrupted), yet it worked the task (ended %q)",
							k.task, k.attempt, r.worker, e.outcome)
					}
				}
			case expired(r) && killed[r.worker]:
				// Killed between its claim and its record.
			case r.outcome == "failed" && r.err == pullUnrecorded:
				a.unrecorded++
			default:
				a.problem("task %d attempt %d: attempt row %s (worker %s) but no execution: %s", k.task, k.attempt, r.outcome, r.worker, r.err)
			}
		}
	}
	for k, rs := range rows {
		if len(execs[k]) > 0 {
			continue
		}
		for _, r := range rs {
			a.rowsWithoutExec++
			a.rowsWithoutExecBy[r.outcome]++
			switch {
			case r.outcome == "interrupted" && r.err == "the claim's answer did not reach its worker":
			case expired(r) && killed[r.worker]:
			case r.outcome == "failed" && r.err == pullUnrecorded:
				a.unrecorded++
			default:
				a.problem("task %d attempt %d: attempt row %s (worker %s) but no execution: %s", k.task, k.attempt, r.outcome, r.worker, r.err)
			}
		}
	}

	// Final tasks: attempts counted, recorded, and the result's execution.
	jobs := finalJobs(t, pool, ids)
	perTask := map[int64][]attemptRow{}
	completedBy := map[int64]attemptKey{}
	for k, rs := range rows {
		perTask[k.task] = append(perTask[k.task], rs...)
		for _, r := range rs {
			if r.outcome == "completed" {
				completedBy[k.task] = k
			}
		}
	}
	for _, j := range jobs {
		rs := perTask[j.id]
		counted := 0
		for _, r := range rs {
			// River does not count an interrupted attempt (LeaseFail).
			if r.outcome != "interrupted" {
				counted++
			}
		}
		if counted != j.attempt {
			a.problem("task %d (%s): River counted %d attempts, taskd recorded %d (and %d interrupted)", j.id, j.state, j.attempt,
				counted, len(rs)-counted)
		}
		completed := 0
		for _, r := range rs {
			if r.outcome == "" || r.outcome == "running" {
				a.problem("task %d: an attempt row without an outcome (%q)", j.id, r.outcome)
			}
			if r.outcome == "completed" {
				completed++
			}
		}
		if j.state == "completed" {
			i := slices.IndexFunc(execs[completedBy[j.id]], func(e pullExec) bool { return e.execution == j.out })
			switch {
			case completed != 1:
				a.problem("task %d: completed with %d completed attempt rows", j.id, completed)
			case i < 0:
				a.problem("task %d: its result names execution %q, not one of its completed attempt %d", j.id, j.out, completedBy[j.id].attempt)
			default:
				if e := execs[completedBy[j.id]][i]; e.ended != nil && e.ended.Sub(e.started) > pullLease {
					a.heartbeated++
				}
			}
		}
		done := 0
		for _, e := range byTask[j.id] {
			if e.ended != nil && e.outcome != pullLeaseLost {
				done++
			}
		}
		if done > 1 {
			a.doneTwice++
		}
	}
	return a
}

// outcomes lists rows as worker:outcome, for a problem's message.
func outcomes(rs []attemptRow) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.worker + ":" + r.outcome
	}
	return out
}
