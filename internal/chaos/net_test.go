package chaos_test

// R4 (docs/RELIABILITY.md): network faults between taskd and PostgreSQL,
// through a TCP proxy per taskd process run in the test (toxiproxy as a
// library): a blackhole on one process past the rescue bound, 500 ms of
// latency on all, connections reset by the peer on all. chaos_work keeps
// its record of executions on a direct connection, so that executions are
// recorded through the fault.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/chaos"
	"github.com/taskd/taskd/internal/jobs"
)

// netCluster is a cluster whose processes each reach PostgreSQL through a
// proxy of their own.
type netCluster struct {
	*chaos.Cluster
	proxies []*chaos.NetProxy
	clients []*client.Client
}

func newNetCluster(t *testing.T, processes int, opts chaos.ClusterOptions) *netCluster {
	t.Helper()
	nc := &netCluster{}
	opts.Processes = processes
	opts.DatabaseURLs = func(i int, direct string) string {
		p := chaos.NewNetProxy(t, fmt.Sprintf("taskd-%d", i), chaos.Upstream(t, direct))
		nc.proxies = append(nc.proxies, p)
		return p.URL(t, direct)
	}
	nc.Cluster = chaos.NewCluster(t, opts)
	nc.clients = nc.Clients(t)
	return nc
}

// apiBound is how long one request may take during a fault before it
// counts as a hang: taskd must answer by then (503 while the database is
// unreachable) rather than wait for a database that does not answer. It
// is taskd's --db-timeout (10 s by default) with a margin.
const apiBound = 15 * time.Second

// probeClient is a client whose requests give up after timeout.
func probeClient(t *testing.T, base string, timeout time.Duration) *client.Client {
	t.Helper()
	c, err := client.New(base, client.Config{HTTPClient: &http.Client{Timeout: timeout}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// untilSubmitted submits one chaos_work task to c every pause until one is
// acknowledged (added to ledger) and returns when, or the zero time at the
// deadline.
func untilSubmitted(c *client.Client, ledger *chaos.Ledger, pause, timeout time.Duration) time.Time {
	kind := "chaos_work"
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		task, _, err := c.Submit(context.Background(), client.TaskRequest{Kind: &kind, Args: json.RawMessage(`{"ms":10}`)}, client.SubmitOptions{})
		if err == nil {
			ledger.Add(task.ID)
			return time.Now()
		}
		time.Sleep(pause)
	}
	return time.Time{}
}

// firstStartAfter waits up to timeout for process pid to start an
// execution after at and returns its start, or the zero time.
func firstStartAfter(t *testing.T, c *chaos.Cluster, pid int, at time.Time, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var first *time.Time
		err := c.Pool.QueryRow(context.Background(), `SELECT min(started_at) FROM chaos_executions
			WHERE pid = $1 AND started_at > $2`, pid, at).Scan(&first)
		if err != nil {
			t.Fatal(err)
		}
		if first != nil {
			return *first
		}
		if time.Now().After(deadline) {
			return time.Time{}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// running counts the executions of pid that have not ended.
func running(t *testing.T, c *chaos.Cluster, pid int) int {
	t.Helper()
	var n int
	err := c.Pool.QueryRow(context.Background(), `SELECT count(*) FROM chaos_executions
		WHERE pid = $1 AND ended_at IS NULL`, pid).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// startedPerSecond is the rate of executions started in [from, to).
func startedPerSecond(t *testing.T, c *chaos.Cluster, from, to time.Time) float64 {
	t.Helper()
	var n int
	err := c.Pool.QueryRow(context.Background(), `SELECT count(*) FROM chaos_executions
		WHERE started_at >= $1 AND started_at < $2`, from, to).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return float64(n) / to.Sub(from).Seconds()
}

// countLines counts the lines of every process's output that contain s.
func countLines(c *chaos.Cluster, s string) int {
	n := 0
	for _, p := range c.Procs {
		n += strings.Count(p.Output(), s)
	}
	return n
}

// Log messages of internal/jobs the tests count.
const (
	logRescued   = "rescued tasks of a dead process"
	logCancelled = "heartbeat lost; cancelling running tasks"
)

// requireAPI fails t for requests that hung, answered other than 2xx or
// 503, or answered an error that is not problem+json.
func requireAPI(t *testing.T, st chaos.SubmitStats) {
	t.Helper()
	if st.Hangs > 0 {
		t.Errorf("%d requests hung past the submitter's timeout: %v", st.Hangs, st.Failures)
	}
	if st.NonProblem > 0 {
		t.Errorf("%d error answers were not problem+json", st.NonProblem)
	}
	for status, n := range st.ByStatus {
		if status/100 != 2 && status != http.StatusServiceUnavailable {
			t.Errorf("%d requests answered %d (want 2xx, or 503 while the database is unreachable): %v", n, status, st.Failures)
		}
	}
}

// settle waits up to timeout for every execution to have ended (one may
// run on after its task is final, beside the execution that finished it:
// the overlap oracle must see its end) and returns them all. It fails t
// for those that never end: every process of R4 is alive, so an
// execution without an end ran on unseen.
func settle(t *testing.T, c *chaos.Cluster, timeout time.Duration) []chaos.Execution {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		all, err := chaos.Executions(context.Background(), c.Pool, 0)
		if err != nil {
			t.Fatal(err)
		}
		var open []chaos.Execution
		for _, e := range all {
			if e.Ended == nil {
				open = append(open, e)
			}
		}
		if len(open) == 0 {
			return all
		}
		if time.Now().After(deadline) {
			for _, e := range open {
				t.Errorf("task %d attempt %d on pid %d started %s never ended although its process is alive",
					e.TaskID, e.Attempt, e.PID, e.Started.Format(time.RFC3339Nano))
			}
			return all
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// settleTimeout is how long settle waits: longer than any chaos_work task
// of R4 (10 s).
const settleTimeout = 20 * time.Second

// longWorkArgs are chaos_work args of which one in six sleeps 3–10 s (so
// that some run across a fault) and the others 0–200 ms.
func longWorkArgs(i int) json.RawMessage {
	if i%6 == 0 {
		return json.RawMessage(`{"ms":` + strconv.Itoa(3000+i*7919%7001) + `}`)
	}
	return chaos.WorkArgs(i)
}

// statuses formats the answers by status for a figure.
func statuses(st chaos.SubmitStats) string {
	return fmt.Sprintf("%v, no answer %d, hangs %d, max latency %s", st.ByStatus, st.Transport, st.Hangs,
		chaos.Percentile(st.Latencies, 100).Round(time.Millisecond))
}

// probe connects through proxy p and runs one statement, with a deadline
// of timeout, and returns how long it took: the test's check that the
// fault it injected is in effect.
func probe(t *testing.T, c *chaos.Cluster, p *chaos.NetProxy, timeout time.Duration) (time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	conn, err := pgx.Connect(ctx, p.URL(t, c.DatabaseURL))
	if err != nil {
		return time.Since(start), err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, `SELECT pg_sleep(0.6)`)
	return time.Since(start), err
}

// isWatchdogCancel says whether an execution's outcome is the watchdog's
// cancellation: chaos_work writes "cancelled: " and its context's cause,
// jobs.ErrHeartbeatLost wrapped.
func isWatchdogCancel(outcome string) bool {
	return strings.HasPrefix(outcome, "cancelled: ") && strings.Contains(outcome, jobs.ErrHeartbeatLost.Error())
}

// overlapWindow is the longest two processes may run one task at once,
// the published window: the watchdog cancels a cut-off process's attempts
// half a heartbeat interval before another process may rescue them
// (internal/jobs, watchdog), so an attempt that returns within that margin
// overlaps nothing; the window is what is left for the record of its end,
// one statement on the direct connection.
const overlapWindow = time.Second

// overLong returns the overlaps longer than overlapWindow.
func overLong(overlaps []chaos.Overlap) []chaos.Overlap {
	var out []chaos.Overlap
	for _, o := range overlaps {
		if o.Duration > overlapWindow {
			out = append(out, o)
		}
	}
	return out
}

// requireOverlaps fails t for every pair of executions of one task that
// overlapped by more than overlapWindow, with their times from ref (the
// fault's start) and the task's every execution.
func requireOverlaps(t *testing.T, overlaps []chaos.Overlap, all []chaos.Execution, ref time.Time) {
	t.Helper()
	for _, o := range overLong(overlaps) {
		msg := fmt.Sprintf("task %d ran twice at once for %s (window %s): %s; %s", o.TaskID,
			o.Duration.Round(time.Millisecond), overlapWindow, describe(o.A, ref), describe(o.B, ref))
		for _, e := range all {
			if e.TaskID == o.TaskID {
				msg += "\n\t" + describe(e, ref)
			}
		}
		t.Error(msg)
	}
}

// describe says when and where an execution ran, from ref.
func describe(e chaos.Execution, ref time.Time) string {
	end := "never ended"
	if e.Ended != nil {
		end = e.Ended.Sub(ref).Round(time.Millisecond).String()
	}
	return fmt.Sprintf("pid %d attempt %d from %s to %s %q", e.PID, e.Attempt, e.Started.Sub(ref).Round(time.Millisecond), end, e.Outcome)
}

// logNotFinal logs the acknowledged tasks that are not final, with what
// River says of them and the processes, for the report of a loss.
func logNotFinal(t *testing.T, c *chaos.Cluster, ledger *chaos.Ledger) {
	t.Helper()
	rows, err := c.Pool.Query(context.Background(), `SELECT j.id, j.state::text, j.attempt, j.max_attempts,
			coalesce(array_to_string(j.attempted_by, ','), ''), j.scheduled_at, j.attempted_at,
			coalesce(cardinality(j.errors), 0),
			coalesce((SELECT p.heartbeat_at::text FROM taskd_processes p
				WHERE p.client_id = j.attempted_by[cardinality(j.attempted_by)]), 'no process row'),
			(SELECT count(*) FROM chaos_executions e WHERE e.task_id = j.id)
		FROM river_job j WHERE j.id = ANY($1) AND j.state NOT IN ('completed', 'discarded', 'cancelled')
		ORDER BY j.id LIMIT 20`, ledger.IDs())
	if err != nil {
		t.Errorf("reading tasks not final: %v", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id                 int64
			state, by, beat    string
			attempt, max, nerr int
			scheduled          time.Time
			attempted          *time.Time
			executions         int
		)
		if err := rows.Scan(&id, &state, &attempt, &max, &by, &scheduled, &attempted, &nerr, &beat, &executions); err != nil {
			t.Errorf("reading tasks not final: %v", err)
			return
		}
		t.Logf("not final: task %d %s attempt %d/%d by [%s] scheduled %s attempted %v errors %d, last worker's heartbeat %s, executions %d",
			id, state, attempt, max, by, scheduled.Format(time.RFC3339Nano), attempted, nerr, beat, executions)
	}
}

// orphaned counts the acknowledged tasks orphaned by a lost fetch: River's
// fetch committed (the task is running, attempted by a process) but its
// answer was lost with the connection, so that the process never ran the
// task (no execution). The heartbeat rescue does not take them from a live
// process; its own orphan rescue does, after --rescue-after.
func orphaned(t *testing.T, c *chaos.Cluster, ledger *chaos.Ledger) int {
	t.Helper()
	var n int
	err := c.Pool.QueryRow(context.Background(), `SELECT count(*) FROM river_job j
		WHERE j.id = ANY($1) AND j.state = 'running'
			AND NOT EXISTS (SELECT 1 FROM chaos_executions e WHERE e.task_id = j.id)
			AND EXISTS (SELECT 1 FROM taskd_processes p
				WHERE p.client_id = j.attempted_by[cardinality(j.attempted_by)]
					AND p.heartbeat_at > now() - make_interval(secs => $2))`,
		ledger.IDs(), float64(chaos.RescueBound/time.Second)).Scan(&n)
	if err != nil {
		t.Fatalf("counting orphaned tasks: %v", err)
	}
	return n
}

// outcome is what every network fault test reads once its fault has
// healed: the report on the acknowledged tasks, final within timeout
// (logging those not final when any were lost), every execution once they
// settled, and the pairs of executions of one task that overlapped.
func (nc *netCluster) outcome(t *testing.T, ledger *chaos.Ledger, timeout time.Duration) (chaos.Report, []chaos.Execution, []chaos.Overlap) {
	t.Helper()
	r := chaos.Check(t, nc.Pool, ledger, timeout)
	if r.Lost() > 0 {
		logNotFinal(t, nc.Cluster, ledger)
	}
	all := settle(t, nc.Cluster, settleTimeout)
	overlaps, err := chaos.Overlaps(context.Background(), nc.Pool)
	if err != nil {
		t.Fatal(err)
	}
	return r, all, overlaps
}

// publish adds to r how many of the tasks not final are orphans of a lost
// fetch (orphaned: each process takes its own back after --rescue-after,
// internal/jobs/orphans.go, so any left past Check's deadline is a failure
// like any task not final), publishes r, and requires what every network
// fault test does: no task lost, and the API answered throughout.
func (nc *netCluster) publish(t *testing.T, ledger *chaos.Ledger, r chaos.Report, st chaos.SubmitStats) {
	t.Helper()
	orphans := 0
	if r.NotFinal > 0 {
		orphans = orphaned(t, nc.Cluster, ledger)
		t.Logf("%d of the %d tasks not final are orphans of a lost fetch (running, attempted by a live process that never ran them)", orphans, r.NotFinal)
	}
	r.Figure("orphaned_by_lost_fetch", "%d", orphans)
	chaos.Publish(t, r)
	chaos.RequireNoLoss(t, r)
	requireAPI(t, st)
}
