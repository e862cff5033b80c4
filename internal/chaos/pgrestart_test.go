package chaos_test

// R3 (docs/RELIABILITY.md): two taskd processes on a private PostgreSQL
// server the test creates (never the shared one), under a steady load of
// chaos_work tasks; the server is restarted with `-m fast` and `-m
// immediate` (a crash: recovery from the WAL), in turn, as `pg_ctl
// restart` does (chaos.PG.Restart). During each restart a probe per
// process keeps submitting and reading a task; the Submitter's requests
// and the probes' must all be answered, 2xx or 503 problem+json, within
// the request timeout (never a hang, never a 500). Every acknowledged task
// must reach a final state (with fsync on a 201 is a committed row, which
// no crash loses), both processes must live through every restart, and
// work must flow again: the time from the restart until the API answers
// 2xx, until a task completes and until a leader leads again are
// published.

import (
	"context"
	"fmt"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/taskd/taskd/internal/chaos"
	"github.com/taskd/taskd/internal/taskdtest"
)

// migrateUp runs `taskd migrate up` on the database of url, as an operator
// would before starting taskd on a new database.
func migrateUp(t *testing.T, url string) {
	t.Helper()
	cmd := exec.Command(taskdtest.BuildTags(t, chaos.BuildTags...), "migrate", "up")
	cmd.Env = []string{"DATABASE_URL=" + url}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("taskd migrate up: %v\n%s", err, out)
	}
}

// completedSince polls until some task completed after since and returns
// when it saw one, or false after timeout. The oracle's own connections
// were cut by the restart too: a failed query is tried again.
func completedSince(c *chaos.Cluster, since time.Time, timeout time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var ok bool
		err := c.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM river_job
			WHERE state = 'completed' AND finalized_at > $1)`, since).Scan(&ok)
		cancel()
		if err == nil && ok {
			return time.Now(), true
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	return time.Time{}, false
}

func TestChaosPostgresRestart(t *testing.T) {
	each := chaos.Size(1, 5)
	// Steady load between two restarts, so that each one cuts work in
	// flight of every kind (submits, fetches, completions).
	steady := chaos.Size(2*time.Second, 5*time.Second)
	// A request answered later than requestTimeout hangs; an API or a work
	// flow not back within recoverDeadline of the restart has not
	// recovered.
	const (
		requestTimeout  = 10 * time.Second
		recoverDeadline = time.Minute
	)

	pg := chaos.StartPG(t, chaos.PGOptions{MaxConnections: 60})
	url := pg.CreateDB("taskd")
	migrateUp(t, url)
	c := chaos.NewCluster(t, chaos.ClusterOptions{Processes: 2, Queues: "default=50", Database: url})
	clients := c.Clients(t)
	ledger := &chaos.Ledger{}
	ctx := context.Background()

	// About 250 tasks/s of 0–200 ms, in small batches from 4 clients at
	// once, so that many requests meet each outage.
	sub := &chaos.Submitter{Clients: clients, Ledger: ledger, Kind: "chaos_work", Args: chaos.WorkArgs,
		Batch: 5, Workers: 4, Pause: 20 * time.Millisecond, Timeout: requestTimeout}
	start := time.Now()
	sub.Start(ctx)

	type restart struct {
		mode              string
		took              time.Duration // the restart, until it accepts connections
		api, work, leader time.Duration // from the restart's start
	}
	var (
		restarts []restart
		probes   chaos.ProbeResult
	)
	modes := make([]string, 0, 2*each)
	for range each {
		modes = append(modes, "fast", "immediate")
	}
	for i, mode := range modes {
		time.Sleep(steady) // the fault's pace, not a wait for state
		rs := restart{mode: mode}
		at := time.Now()
		stop := make(chan struct{})
		watched := make(chan chaos.ProbeResult, len(clients))
		for _, cl := range clients {
			go func() {
				watched <- (&chaos.Probe{Client: cl, Ledger: ledger, Timeout: requestTimeout}).Watch(ctx, stop)
			}()
		}
		err := pg.Restart(mode)
		up := time.Now()
		rs.took = up.Sub(at)
		close(stop)
		if err != nil {
			t.Fatalf("restart %d: %v\n%s", i, err, pg.Log())
		}
		for range clients {
			probes.Add(<-watched)
		}

		// Back: the API answers 2xx, a task completes, a leader leads.
		results := make([]chaos.ProbeResult, len(clients))
		done := make(chan struct{})
		for j, cl := range clients {
			go func() {
				results[j] = (&chaos.Probe{Client: cl, Ledger: ledger, Timeout: requestTimeout}).Run(ctx, at, recoverDeadline)
				done <- struct{}{}
			}()
		}
		for range clients {
			<-done
		}
		for j, r := range results {
			probes.Add(r)
			if !r.OK {
				t.Errorf("restart %d (%s): process %d did not answer 2xx again within %s: %v, %d without answer; %v",
					i, mode, j, recoverDeadline, r.ByStatus, r.Transport, r.Failures)
				continue
			}
			rs.api = max(rs.api, r.Recovered)
		}
		if seen, ok := completedSince(c, up, recoverDeadline); ok {
			rs.work = seen.Sub(at)
		} else {
			t.Errorf("restart %d (%s): no task completed within %s of the server's return", i, mode, recoverDeadline)
		}
		if c.Leader(recoverDeadline) != nil {
			rs.leader = time.Since(at)
		} else {
			t.Errorf("restart %d (%s): no process leads within %s of the server's return", i, mode, recoverDeadline)
		}
		// Both processes live through it: taskd waits for its database
		// rather than exit.
		for j, p := range c.Procs {
			if err := p.Signal(syscall.Signal(0)); err != nil {
				t.Fatalf("restart %d (%s): process %d exited: %v\n%s", i, mode, j, err, p.Output())
			}
		}
		restarts = append(restarts, rs)
		t.Logf("restart %d (%s): server back after %s; API 2xx again after %s, a task completed after %s, a leader after %s",
			i, mode, rs.took.Round(time.Millisecond), rs.api.Round(time.Millisecond), rs.work.Round(time.Millisecond),
			rs.leader.Round(time.Millisecond))
	}
	time.Sleep(steady) // load after the last restart too
	st := sub.Stop()
	run := time.Since(start)

	r := chaos.Check(t, c.Pool, ledger, 2*time.Minute)
	figure := func(name string, f func(restart) time.Duration) {
		for _, mode := range []string{"fast", "immediate"} {
			var ds []time.Duration
			for _, rs := range restarts {
				if rs.mode == mode {
					ds = append(ds, f(rs))
				}
			}
			r.Figure(name+"_"+mode, "p50 %s, max %s", chaos.Percentile(ds, 50).Round(time.Millisecond),
				chaos.Percentile(ds, 100).Round(time.Millisecond))
		}
	}
	r.Figure("restarts", "%d fast, %d immediate, over %s", each, each, run.Round(time.Second))
	figure("server_back", func(rs restart) time.Duration { return rs.took })
	figure("api_2xx_again", func(rs restart) time.Duration { return rs.api })
	figure("tasks_complete_again", func(rs restart) time.Duration { return rs.work })
	figure("leader_again", func(rs restart) time.Duration { return rs.leader })
	fails := append(st.FailLatencies, probes.FailLatencies...)
	r.Figure("failed_request_latency", "p50 %s, p99 %s, max %s (%d failed requests)",
		chaos.Percentile(fails, 50).Round(time.Millisecond), chaos.Percentile(fails, 99).Round(time.Millisecond),
		chaos.Percentile(fails, 100).Round(time.Millisecond), len(fails))
	r.Figure("submit_answers", "%v, no answer %d, hangs %d, not problem+json %d", st.ByStatus, st.Transport, st.Hangs, st.NonProblem)
	r.Figure("probe_errors", "%v, no answer %d, hangs %d, not problem+json %d, 503 without Retry-After %d",
		probes.ByStatus, probes.Transport, probes.Hangs, probes.NonProblem, probes.NoRetryAfter)
	chaos.Publish(t, r)
	if r.Lost() > 0 {
		logNotFinal(t, c, ledger)
	}
	chaos.RequireNoLoss(t, r)

	requireOutageAnswers(t, st, probes)
	if probes.ByStatus[503]+st.ByStatus[503] == 0 {
		t.Errorf("no request met an outage: the test tested nothing (%s)", fmt.Sprint(restarts))
	}
}
