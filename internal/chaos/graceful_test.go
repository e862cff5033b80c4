package chaos_test

// R7 (docs/RELIABILITY.md): SIGTERM under load. Two taskd processes with a
// shutdown grace of 2 s (--shutdown-grace) work chaos_work tasks, most of
// 0–200 ms and one in eight of 5 s; one process is sent SIGTERM mid-run
// and started again once it exited (the full size does it three times,
// alternately, starting with River's leader, whose resignation hands
// leadership over at once). During the grace, running attempts go on and those that
// finish are saved; after it, taskd cancels the rest (internal/jobs,
// Client.Stop), River puts them back to available at once
// (JobSetStateInterrupted) and the attempt middleware records them as
// interrupted. Nothing of a graceful stop is left to the rescue: no task
// stays running under the stopped process, no execution lacks an end, no
// attempt lacks its row, and none is recorded as lost.

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/taskd/taskd/internal/chaos"
)

func TestChaosGraceful(t *testing.T) {
	const grace = 2 * time.Second
	stops := chaos.Size(1, 3)
	settle := 3 * time.Second

	c := chaos.NewCluster(t, chaos.ClusterOptions{Processes: 2, Queues: "default=30",
		Args: []string{"--shutdown-grace", grace.String()}})
	ctx := context.Background()
	ledger := &chaos.Ledger{}
	// About 50 tasks/s, some 35 running at a time; the 5 s ones outlast
	// the grace unless they started more than 3 s before the SIGTERM.
	work := &chaos.Submitter{Clients: c.Clients(t), Ledger: ledger, Kind: "chaos_work",
		Args: func(i int) json.RawMessage {
			if i%8 == 0 {
				return json.RawMessage(`{"ms":5000}`)
			}
			return chaos.WorkArgs(i)
		},
		Batch: 10, Pause: 200 * time.Millisecond}
	start := time.Now()
	work.Start(ctx)

	type stop struct {
		pid    int
		at     time.Time
		took   time.Duration
		exited error
		// running is how many tasks River still had running under the
		// process once it exited.
		running int
	}
	var done []stop
	// The first SIGTERM goes to River's leader, which resigns: how soon
	// the other process leads is published too.
	first := c.Leader(30 * time.Second)
	if first == nil {
		t.Fatal("no process leads 30 s after the start")
	}
	var handover time.Duration
	for i := range stops {
		time.Sleep(settle) // the fault's pace, not a wait for state
		p, other := c.Procs[0], c.Procs[1]
		if (first == c.Procs[1]) == (i%2 == 0) {
			p, other = other, p
		}
		s := stop{pid: p.PID(), at: time.Now()}
		led := make(chan time.Duration, 1)
		if i == 0 {
			at := s.at
			go func() {
				for time.Since(at) < 30*time.Second {
					if c.Leads(other) {
						led <- time.Since(at)
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
				led <- -1
			}()
		}
		s.exited = p.Stop()
		s.took = time.Since(s.at)
		if i == 0 {
			if handover = <-led; handover < 0 {
				t.Errorf("the leader was stopped (SIGTERM) and the other process did not lead within 30 s")
			}
		}
		if err := c.Pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state = 'running'
			AND split_part(attempted_by[cardinality(attempted_by)], '_', -2) = $1`, strconv.Itoa(s.pid)).Scan(&s.running); err != nil {
			t.Fatal(err)
		}
		done = append(done, s)
		p.Restart()
	}
	time.Sleep(settle) // the work goes on after the last stop
	st := work.Stop()
	r := chaos.Check(t, c.Pool, ledger, 2*time.Minute)

	var took, endToRerun, stopToRerun []time.Duration
	var cutOff, finishedInGrace, interrupted, unended, unrecorded, lost, notRerun, leftRunning int
	for _, s := range done {
		took = append(took, s.took)
		leftRunning += s.running
		if s.exited != nil {
			t.Errorf("process %d exited with %v after SIGTERM, want status 0", s.pid, s.exited)
		}
		pid := strconv.Itoa(s.pid)
		var n1, n2, n3, n4, n5 int
		err := c.Pool.QueryRow(ctx, `SELECT
				count(*) FILTER (WHERE ended_at IS NULL),
				count(*) FILTER (WHERE outcome LIKE 'cancelled%'),
				count(*) FILTER (WHERE outcome = 'slept' AND ended_at > $2),
				(SELECT count(*) FROM task_attempts WHERE split_part(worker, '_', -2) = $3 AND outcome = 'interrupted'),
				(SELECT count(*) FROM task_attempts WHERE split_part(worker, '_', -2) = $3 AND outcome = 'lost')
			FROM chaos_executions WHERE pid = $1`, s.pid, s.at, pid).Scan(&n1, &n2, &n3, &n4, &n5)
		if err != nil {
			t.Fatal(err)
		}
		unended += n1
		cutOff += n2
		finishedInGrace += n3
		interrupted += n4
		lost += n5
		// Every execution has its attempt row: per task, as many rows of
		// this process as executions.
		err = c.Pool.QueryRow(ctx, `WITH e AS (SELECT task_id, count(*) AS n FROM chaos_executions WHERE pid = $1 GROUP BY task_id),
				a AS (SELECT task_id, count(*) AS n FROM task_attempts WHERE split_part(worker, '_', -2) = $2 GROUP BY task_id)
			SELECT coalesce(sum(greatest(e.n - coalesce(a.n, 0), 0)), 0) FROM e LEFT JOIN a USING (task_id)`, s.pid, pid).Scan(&n1)
		if err != nil {
			t.Fatal(err)
		}
		unrecorded += n1
		// The cut-off executions run again: how long after their end (the
		// cancellation) and after the SIGTERM.
		rows, err := c.Pool.Query(ctx, `SELECT e.ended_at, (SELECT min(n.started_at) FROM chaos_executions n
				WHERE n.task_id = e.task_id AND n.started_at > e.started_at)
			FROM chaos_executions e WHERE e.pid = $1 AND e.outcome LIKE 'cancelled%'`, s.pid)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var ended time.Time
			var next *time.Time
			if err := rows.Scan(&ended, &next); err != nil {
				t.Fatal(err)
			}
			if next == nil {
				notRerun++
				continue
			}
			endToRerun = append(endToRerun, next.Sub(ended))
			stopToRerun = append(stopToRerun, next.Sub(s.at))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}

	r.Figure("sigterms", "%d (grace %s)", len(done), grace)
	r.Figure("sigterm_to_exit", "%s", chaos.FormatDurations(took, 100*time.Millisecond))
	r.Figure("leader_handover", "%s (SIGTERM to the leader → the other process's /readyz says it leads)", handover.Round(10*time.Millisecond))
	r.Figure("finished_in_grace", "%d", finishedInGrace)
	r.Figure("cut_off_after_grace", "%d (interrupted attempt rows %d)", cutOff, interrupted)
	r.Figure("end_to_rerun", "p50 %s, max %s (cancellation to the next execution's start)",
		chaos.Percentile(endToRerun, 50).Round(time.Millisecond), chaos.Percentile(endToRerun, 100).Round(time.Millisecond))
	r.Figure("sigterm_to_rerun", "p50 %s, max %s", chaos.Percentile(stopToRerun, 50).Round(time.Millisecond), chaos.Percentile(stopToRerun, 100).Round(time.Millisecond))
	r.Figure("left_for_rescue", "running %d, executions without an end %d, without an attempt row %d, lost attempts %d",
		leftRunning, unended, unrecorded, lost)
	r.Figure("run", "%s", time.Since(start).Round(time.Second))
	r.Figure("submit_answers", "%v, no answer %d", st.ByStatus, st.Transport)
	chaos.Publish(t, r)
	chaos.RequireNoLoss(t, r)
	if leftRunning > 0 {
		t.Errorf("%d tasks were still running under a process that had exited after SIGTERM", leftRunning)
	}
	if unended > 0 {
		t.Errorf("%d executions of a SIGTERMed process never ended (their worker never saw its context end)", unended)
	}
	if unrecorded > 0 {
		t.Errorf("%d executions of a SIGTERMed process have no attempt row", unrecorded)
	}
	if lost > 0 {
		t.Errorf("%d attempts of a SIGTERMed process were left to the rescue (lost)", lost)
	}
	if interrupted != cutOff {
		t.Errorf("%d executions were cut off after the grace but %d attempts are recorded as interrupted", cutOff, interrupted)
	}
	if notRerun > 0 {
		t.Errorf("%d tasks cut off after the grace were never run again", notRerun)
	}
	if cutOff+unended == 0 {
		t.Errorf("no task outlasted the grace: the cancellation was not tested (%d SIGTERMs)", len(done))
	}
}
