package chaos_test

// R1 (docs/RELIABILITY.md): three taskd processes under chaos_work tasks of
// 0–200 ms; a random one is killed with SIGKILL every few seconds and
// started again on its address, as systemd's Restart= would. Every
// acknowledged task must reach a final state; duplicates and the time from
// a kill to the re-run of the killed process's tasks are published.

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/taskd/taskd/internal/chaos"
)

func TestChaosKill(t *testing.T) {
	// Submits are paced so that the work spans the kills: about 330
	// tasks/s (short) and 1,000 (full), under the 150 workers' capacity.
	total := chaos.Size(3_000, 50_000)
	batch, pause := chaos.Size(100, 250), chaos.Size(300*time.Millisecond, 250*time.Millisecond)
	minKills := chaos.Size(3, 8)
	every := chaos.Size(2*time.Second, 5*time.Second)

	c := chaos.NewCluster(t, chaos.ClusterOptions{Processes: 3, Queues: "default=50"})
	ledger := &chaos.Ledger{}
	sub := &chaos.Submitter{Clients: c.Clients(t), Ledger: ledger, Kind: "chaos_work", Args: chaos.WorkArgs,
		Batch: batch, Workers: 1, Total: total, Pause: pause}
	start := time.Now()
	sub.Start(context.Background())

	done := killWhileSubmitting(c, sub, total, minKills, every, func(pid int) bool { return running(t, c, pid) > 0 })
	lastKill := time.Now()
	if !sub.Wait(5 * time.Minute) {
		t.Fatalf("submitting did not finish: %+v", sub.Stats().ByStatus)
	}
	st := sub.Stop()

	r := chaos.Check(t, c.Pool, ledger, 3*time.Minute)
	var delays []time.Duration
	notRerun := 0
	for _, k := range done {
		d, n, err := chaos.RerunDelays(context.Background(), c.Pool, k.pid, k.at)
		if err != nil {
			t.Fatal(err)
		}
		delays = append(delays, d...)
		notRerun += n
	}
	r.Figure("kills", "%d", len(done))
	r.Figure("run", "%s (last kill %s after the start)", time.Since(start).Round(time.Second), lastKill.Sub(start).Round(time.Second))
	r.Figure("cut_off_by_kills", "%d", len(delays)+notRerun)
	r.Figure("kill_to_rerun", "p50 %s, p99 %s, max %s", chaos.Percentile(delays, 50).Round(time.Millisecond),
		chaos.Percentile(delays, 99).Round(time.Millisecond), chaos.Percentile(delays, 100).Round(time.Millisecond))
	over := 0
	for _, d := range delays {
		if d > chaos.RescueBound {
			over++
		}
	}
	r.Figure("rerun_after_rescue_bound", "%d of %d (bound %s)", over, len(delays), chaos.RescueBound)
	r.Figure("submit_answers", "%v, no answer %d", st.ByStatus, st.Transport)
	chaos.Publish(t, r)
	chaos.RequireNoLoss(t, r)
	// A task cut off by a kill and not run again is lost work even when
	// its state says otherwise (a final state with no execution after the
	// kill means someone finished it unseen).
	if notRerun > 0 {
		t.Errorf("%d tasks cut off by a kill were never run again", notRerun)
	}
	if len(delays) == 0 {
		t.Errorf("no kill cut off a running task: the test tested nothing (%d kills)", len(done))
	}
}

// taskdKill is a taskd process killed at a time.
type taskdKill struct {
	pid int
	at  time.Time
}

// killWhileSubmitting SIGKILLs a random process of c every `every` and
// starts it again at once, as systemd's Restart= would, while sub has
// not had total tasks acknowledged, and at least minKills times. With
// busy set, a kill waits (up to 5 s) until busy says its process runs
// work.
//
// TestChaosKill waits so: its work comes in batches that the cluster
// finishes within 200 ms, a third of the short run's pause between them,
// so a kill at a random moment often found its process idle, and once
// all five of a run did (CI, 2026-12-04), which tested no rescue.
func killWhileSubmitting(c *chaos.Cluster, sub *chaos.Submitter, total, minKills int, every time.Duration, busy func(pid int) bool) []taskdKill {
	var kills []taskdKill
	for len(kills) < minKills || sub.Stats().Acknowledged < total {
		time.Sleep(every) // the fault's pace, not a wait for state
		p := c.Procs[rand.N(len(c.Procs))]
		for deadline := time.Now().Add(5 * time.Second); busy != nil && !busy(p.PID()) && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond) // polling
		}
		k := taskdKill{pid: p.PID(), at: time.Now()}
		p.Kill()
		kills = append(kills, k)
		p.Restart()
	}
	return kills
}
