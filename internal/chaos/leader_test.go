package chaos_test

// R5 (docs/RELIABILITY.md): three taskd processes with an every-second
// schedule of chaos_work tasks, a steady stream of chaos_work tasks and a
// stream of delayed ones; River's leader is killed with SIGKILL (it cannot
// resign, so its lease has to run out), and once another process leads it
// is started again as a follower (the full size then kills the next
// leader, three times in all). What the leader does and a follower does
// not, and so what has to move with leadership:
//
//   - taskd's schedules: only the leader enqueues their ticks, each once
//     (docs/CONFIGURATION.md, "Once per tick, across the cluster");
//   - River's maintenance, of which the delayed tasks need the scheduler:
//     a task submitted with a delay is `scheduled` until the leader's
//     JobScheduler makes it available, so a delayed task due while no one
//     leads runs only once a new leader does.
//
// The rescue of the dead leader's running tasks is every process's
// (internal/jobs, maintain), so it does not wait for the election; it is
// measured all the same.

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/chaos"
)

// leaderConfig is the processes' configuration: a chaos_work task every
// second.
const leaderConfig = `schedules:
  - {name: beat, every: 1s, kind: chaos_work, args: {ms: 20}}
`

func TestChaosLeaderKill(t *testing.T) {
	kills := chaos.Size(1, 3)
	// The pause after each failover, and before the first kill: ticks,
	// delayed tasks and the stream go on under the new leader.
	settle := chaos.Size(4*time.Second, 8*time.Second)

	c := chaos.NewCluster(t, chaos.ClusterOptions{Processes: 3, Queues: "default=30", Config: leaderConfig})
	clients := c.Clients(t)
	ctx := context.Background()
	if c.Leader(30*time.Second) == nil {
		t.Fatal("no process leads 30 s after the start")
	}
	ledger, delayed := &chaos.Ledger{}, &chaos.Ledger{}
	// About 100 tasks/s of 0–800 ms, some 40 running at any time (of the
	// 90 workers): the leader is running some when it is killed.
	work := &chaos.Submitter{Clients: clients, Ledger: ledger, Kind: "chaos_work",
		Args:  func(i int) json.RawMessage { return json.RawMessage(`{"ms":` + strconv.Itoa(i*37%801) + `}`) },
		Batch: 20, Pause: 200 * time.Millisecond}
	// 20 delayed tasks/s, each due 2 s after its submission: some fall due
	// in every leaderless window.
	const delay = 2 * time.Second
	later := &chaos.Submitter{Clients: clients, Ledger: delayed, Kind: "chaos_work",
		Args:  func(int) json.RawMessage { return json.RawMessage(`{"ms":10}`) },
		Batch: 5, Pause: 250 * time.Millisecond,
		Prepare: func(_ int, r *client.TaskRequest) {
			d := delay.String()
			r.Delay = &d
		}}
	start := time.Now()
	work.Start(ctx)
	later.Start(ctx)

	type failover struct {
		pid      int
		killedAt time.Time
		ledAt    time.Time // another process's /readyz said it leads
	}
	var done []failover
	for range kills {
		time.Sleep(settle) // the fault's pace, not a wait for state
		old := c.Leader(30 * time.Second)
		if old == nil {
			t.Fatal("no process leads")
		}
		// The rescue is tested only if the leader runs tasks as it dies;
		// it nearly always does (about a third of some 40), but once in
		// a while a stream's lull found it running none.
		for deadline := time.Now().Add(10 * time.Second); running(t, c, old.PID()) < 3 && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		f := failover{pid: old.PID(), killedAt: time.Now()}
		old.Kill()
		next := c.Leader(90 * time.Second)
		if next == nil {
			t.Fatalf("no process leads 90 s after the leader (pid %d) was killed", f.pid)
		}
		f.ledAt = time.Now()
		done = append(done, f)
		t.Logf("leader pid %d killed; pid %d leads %s later", f.pid, next.PID(), f.ledAt.Sub(f.killedAt).Round(100*time.Millisecond))
		old.Restart()
		if c.Leads(old) {
			t.Errorf("pid %d, restarted after the kill, leads while pid %d's term runs", old.PID(), next.PID())
		}
	}
	// The new leader enqueues ticks again: a tick after the last
	// failover is the schedule resuming.
	last := done[len(done)-1]
	var ticks []chaos.Tick
	for deadline := time.Now().Add(30 * time.Second); ; {
		var err error
		if ticks, err = chaos.ScheduleTicks(ctx, c.Pool, "beat"); err != nil {
			t.Fatal(err)
		}
		if len(ticks) > 0 && ticks[len(ticks)-1].At.After(last.ledAt.Add(time.Second)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no tick enqueued for after the last failover (%s) within 30 s", last.ledAt.Format(time.RFC3339))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(settle) // the stream goes on under the new leader
	st := work.Stop()
	later.Stop()
	ran := time.Since(start)

	r := chaos.Check(t, c.Pool, ledger, 2*time.Minute)
	rd := chaos.Check(t, c.Pool, delayed, 2*time.Minute)
	// The schedule's tasks are checked as the submitted ones are: each
	// tick's task runs to its end.
	ticks, err := chaos.ScheduleTicks(ctx, c.Pool, "beat")
	if err != nil {
		t.Fatal(err)
	}
	beats := &chaos.Ledger{}
	for _, tk := range ticks {
		beats.Add(tk.TaskID)
	}
	rb := chaos.Check(t, c.Pool, beats, 2*time.Minute)
	checkTicks(t, ticks)
	r.Figure("schedule_tasks", "%d ticks, states %v, executions %d, duplicates %d", rb.Acknowledged, rb.States, rb.Executions, rb.Duplicates)

	// Failover, the schedule's gap and the first tick after each kill.
	var failovers, firstTicks, gaps []time.Duration
	var rerun []time.Duration
	notRerun, dueLeaderless := 0, 0
	for _, f := range done {
		failovers = append(failovers, f.ledAt.Sub(f.killedAt))
		var before, after *chaos.Tick
		for i := range ticks {
			if ticks[i].Created.Before(f.killedAt) {
				before = &ticks[i]
			} else if after == nil {
				after = &ticks[i]
			}
		}
		if before == nil || after == nil {
			t.Errorf("kill at %s: no tick before or after it", f.killedAt.Format(time.RFC3339Nano))
			continue
		}
		gaps = append(gaps, after.At.Sub(before.At))
		firstTicks = append(firstTicks, after.Created.Sub(f.killedAt))

		d, n, err := chaos.RerunDelays(ctx, c.Pool, f.pid, f.killedAt)
		if err != nil {
			t.Fatal(err)
		}
		rerun = append(rerun, d...)
		notRerun += n

		if err := c.Pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE id = ANY($1) AND scheduled_at BETWEEN $2 AND $3`,
			delayed.IDs(), f.killedAt, f.ledAt).Scan(&n); err != nil {
			t.Fatal(err)
		}
		dueLeaderless += n
	}
	// How long after its due time each delayed task started: the
	// JobScheduler's interval (5 s) when a leader runs it, the rest of the
	// leaderless window for those due in one.
	var dueToStart []time.Duration
	rows, err := c.Pool.Query(ctx, `SELECT extract(epoch FROM min(e.started_at) - j.scheduled_at)
		FROM river_job j JOIN chaos_executions e ON e.task_id = j.id WHERE j.id = ANY($1) GROUP BY j.id`, delayed.IDs())
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var secs float64
		if err := rows.Scan(&secs); err != nil {
			t.Fatal(err)
		}
		dueToStart = append(dueToStart, time.Duration(secs*float64(time.Second)))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	r.Figure("kills", "%d", len(done))
	r.Figure("run", "%s", ran.Round(time.Second))
	r.Figure("failover", "%s (kill to another process's /readyz saying it leads)", chaos.FormatDurations(failovers, 100*time.Millisecond))
	r.Figure("kill_to_next_tick", "%s", chaos.FormatDurations(firstTicks, 100*time.Millisecond))
	r.Figure("schedule_gap", "%s (largest gap between consecutive ticks around each kill; 1 s without a kill)", chaos.FormatDurations(gaps, 100*time.Millisecond))
	r.Figure("cut_off_by_kills", "%d", len(rerun)+notRerun)
	r.Figure("kill_to_rerun", "p50 %s, max %s", chaos.Percentile(rerun, 50).Round(time.Millisecond), chaos.Percentile(rerun, 100).Round(time.Millisecond))
	r.Figure("delayed_tasks", "%d (%d due while no process led), states %v, lost %d", rd.Acknowledged, dueLeaderless, rd.States, rd.Lost())
	r.Figure("delayed_due_to_start", "p50 %s, max %s", chaos.Percentile(dueToStart, 50).Round(time.Millisecond), chaos.Percentile(dueToStart, 100).Round(time.Millisecond))
	r.Figure("submit_answers", "%v, no answer %d", st.ByStatus, st.Transport)
	chaos.Publish(t, r)
	if len(st.Failures) > 0 {
		t.Logf("some submit failures: %q", st.Failures)
	}
	chaos.RequireNoLoss(t, r)
	chaos.RequireNoLoss(t, rd)
	chaos.RequireNoLoss(t, rb)
	if notRerun > 0 {
		t.Errorf("%d tasks cut off by killing the leader were never run again", notRerun)
	}
	if len(rerun) == 0 {
		t.Errorf("no leader kill cut off a running task: the rescue was not tested (%d kills)", len(done))
	}
	if dueLeaderless == 0 {
		t.Errorf("no delayed task fell due while no process led: the scheduler's failover was not tested")
	}
}

// checkTicks fails the test unless the schedule's tasks have distinct ticks
// (each tick enqueued once), every tick a whole second.
func checkTicks(t *testing.T, ticks []chaos.Tick) {
	t.Helper()
	if len(ticks) == 0 {
		t.Fatal("the schedule enqueued nothing")
	}
	for i, tk := range ticks {
		if !tk.At.Equal(tk.At.Truncate(time.Second)) {
			t.Errorf("task %d: tick %s is not a whole second", tk.TaskID, tk.At.Format(time.RFC3339Nano))
		}
		if i > 0 && tk.At.Equal(ticks[i-1].At) {
			t.Errorf("tick %s enqueued twice: tasks %d and %d", tk.At.Format(time.RFC3339), ticks[i-1].TaskID, tk.TaskID)
		}
	}
}
