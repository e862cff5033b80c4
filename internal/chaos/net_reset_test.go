package chaos_test

import (
	"context"
	"testing"
	"time"

	"github.com/taskd/taskd/internal/chaos"
)

// TestChaosNetResetPeer (R4): for a few seconds every connection between
// both taskd processes and PostgreSQL is reset 500 ms after its first
// bytes (new ones with an RST), so that connections break again and again
// under steady work. Pass: 0 lost, nothing hangs, no answer but 2xx or
// 503 problem+json (never a 500), no execution without an end; the time
// from healing until each process acknowledges a task and starts one is
// published.
func TestChaosNetResetPeer(t *testing.T) {
	resetAfter := 500 * time.Millisecond
	faultFor := chaos.Size(4*time.Second, 15*time.Second)

	nc := newNetCluster(t, 2, chaos.ClusterOptions{})
	ledger := &chaos.Ledger{}
	sub := &chaos.Submitter{Clients: nc.clients, Ledger: ledger, Kind: "chaos_work", Args: chaos.WorkArgs,
		Batch: 20, Workers: 4, Pause: 100 * time.Millisecond, Timeout: apiBound}
	start := time.Now()
	sub.Start(context.Background())

	time.Sleep(3 * time.Second) // the fault's pace, not a wait for state
	beforeSt := sub.Stats()
	faultAt := time.Now()
	for _, p := range nc.proxies {
		p.ResetPeer(t, resetAfter)
	}
	_, probeErr := probe(t, nc.Cluster, nc.proxies[0], apiBound)
	time.Sleep(faultFor - time.Since(faultAt))
	duringSt := sub.Stats()
	healAt := time.Now()
	for _, p := range nc.proxies {
		p.Heal(t)
	}
	var apiBack, runBack []time.Duration
	for _, p := range nc.Procs {
		at := untilSubmitted(probeClient(t, p.URL, apiBound), ledger, 50*time.Millisecond, time.Minute)
		if at.IsZero() {
			t.Errorf("pid %d acknowledged no task within a minute of healing", p.PID())
		} else {
			apiBack = append(apiBack, at.Sub(healAt))
		}
		first := firstStartAfter(t, nc.Cluster, p.PID(), healAt, time.Minute)
		if first.IsZero() {
			t.Errorf("pid %d started no task within a minute of healing", p.PID())
		} else {
			runBack = append(runBack, first.Sub(healAt))
		}
	}
	time.Sleep(2 * time.Second) // work after healing, at the submitter's pace
	st := sub.Stop()

	// Every task is final within the rescue bound of the end; a task
	// that is not by then is stuck.
	r, all, overlaps := nc.outcome(t, ledger, chaos.RescueBound+30*time.Second)
	during := answersBetween(beforeSt, duringSt)
	r.Figure("fault", "reset_peer after %s for %s, run %s", resetAfter, healAt.Sub(faultAt).Round(time.Second),
		time.Since(start).Round(time.Second))
	r.Figure("answers_during", "%v, no answer %d", during.ByStatus, during.Transport)
	r.Figure("submit_answers", "%s", statuses(st))
	r.Figure("heal_to_2xx", "max %s", chaos.Percentile(apiBack, 100).Round(time.Millisecond))
	r.Figure("heal_to_run", "max %s", chaos.Percentile(runBack, 100).Round(time.Millisecond))
	r.Figure("rescue_passes", "%d", countLines(nc.Cluster, logRescued))
	r.Figure("watchdog_cancels", "%d", countLines(nc.Cluster, logCancelled))
	r.Figure("max_overlap", "%s, %d pairs over the %s window", maxOverlap(overlaps), len(overLong(overlaps)), overlapWindow)
	nc.publish(t, ledger, r, st)
	requireOverlaps(t, overlaps, all, faultAt)
	if probeErr == nil {
		t.Error("a 0.6 s statement through the proxy succeeded under reset_peer: the fault was not in effect; the test tested nothing")
	}
}
