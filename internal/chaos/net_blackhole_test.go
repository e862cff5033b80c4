package chaos_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/taskd/taskd/internal/chaos"
)

// TestChaosNetBlackhole (R4): one of two taskd processes is cut off from
// PostgreSQL by a blackhole (bytes vanish both ways, nothing is closed)
// for longer than the rescue bound, while it runs chaos_work tasks, some
// of which sleep 3–10 s. Pass: the cut-off process cancels its running
// attempts (their executions end "cancelled: heartbeat lost ...") before
// another may rescue them; the other process runs them again; no two
// executions of one task by different processes overlap by more than
// overlapWindow; every execution ends; 0 lost; the cut-off process's API
// answers within apiBound (503 problem+json while cut off), never hangs.
// The time from healing until it acknowledges and runs tasks again is
// published.
func TestChaosNetBlackhole(t *testing.T) {
	cut := chaos.Size(8*time.Second, 30*time.Second)
	rescueAfter, err := time.ParseDuration(chaos.RescueAfter)
	if err != nil {
		t.Fatal(err)
	}

	// taskd answers a request whose database keeps quiet 503 after
	// --db-timeout: the default (10 s) in the full size, shorter than
	// the cut in the short one.
	var env []string
	dbTimeout := 10 * time.Second
	if !chaos.Full() {
		dbTimeout = 3 * time.Second
		env = append(env, "TASKD_DB_TIMEOUT="+dbTimeout.String())
	}
	bound := dbTimeout + 5*time.Second
	nc := newNetCluster(t, 2, chaos.ClusterOptions{Env: env})
	victim := nc.Procs[0]
	ledger := &chaos.Ledger{}
	sub := &chaos.Submitter{Clients: nc.clients, Ledger: ledger, Kind: "chaos_work", Args: longWorkArgs,
		Batch: 10, Workers: 4, Pause: 250 * time.Millisecond, Timeout: bound}
	start := time.Now()
	sub.Start(context.Background())

	// Cut when the victim is running tasks, long ones among them.
	deadline := time.Now().Add(30 * time.Second)
	for running(t, nc.Cluster, victim.PID()) < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d was not running 5 tasks within 30 s", victim.PID())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // let long tasks pile up: the fault's pace
	beforeSt := sub.Stats()
	cutAt := time.Now()
	nc.proxies[0].Blackhole(t)
	_, probeErr := probe(t, nc.Cluster, nc.proxies[0], 2*time.Second)
	time.Sleep(cut - time.Since(cutAt)) // the fault's length
	duringSt := sub.Stats()
	healAt := time.Now()
	nc.proxies[0].Heal(t)

	apiAt := untilSubmitted(probeClient(t, victim.URL, bound), ledger, 50*time.Millisecond, time.Minute)
	runAt := firstStartAfter(t, nc.Cluster, victim.PID(), healAt, time.Minute)
	time.Sleep(3 * time.Second) // work after healing, at the submitter's pace
	st := sub.Stop()

	r, all, overlaps := nc.outcome(t, ledger, 2*time.Minute)
	// The victim's executions that ran into the cut, and what became of
	// them.
	var (
		acrossCut, cancelled, notCancelled, notRerun int
		cutToCancel, cancelToRerun                   []time.Duration
	)
	rescuable := cutAt.Add(rescueAfter)
	for i, e := range all {
		if e.PID != victim.PID() || e.Started.After(healAt) || (e.Ended != nil && e.Ended.Before(cutAt)) {
			continue
		}
		acrossCut++
		if e.Ended == nil {
			continue // settle reported it
		}
		if isWatchdogCancel(e.Outcome) {
			cancelled++
			cutToCancel = append(cutToCancel, e.Ended.Sub(cutAt))
			next := time.Time{}
			for _, n := range all[i+1:] {
				if n.TaskID == e.TaskID {
					next = n.Started
					break
				}
			}
			if next.IsZero() {
				notRerun++
			} else {
				cancelToRerun = append(cancelToRerun, next.Sub(*e.Ended))
			}
		} else if e.Ended.After(rescuable) {
			// Still running when another process could take the task.
			notCancelled++
			t.Errorf("task %d on the cut-off pid %d ran on until %s after the cut (%q), past RescueAfter (%s)",
				e.TaskID, e.PID, e.Ended.Sub(cutAt).Round(time.Millisecond), e.Outcome, rescueAfter)
		}
	}
	tooLong := overLong(overlaps)
	during := answersBetween(beforeSt, duringSt)

	r.Figure("cut", "%s on 1 of 2 processes, run %s", healAt.Sub(cutAt).Round(time.Second), time.Since(start).Round(time.Second))
	r.Figure("victim_executions_across_cut", "%d: %d cancelled by the watchdog, %d ran on past RescueAfter", acrossCut, cancelled, notCancelled)
	r.Figure("cut_to_cancel", "min %s, max %s (RescueAfter %s)", chaos.Percentile(cutToCancel, 0).Round(time.Millisecond),
		chaos.Percentile(cutToCancel, 100).Round(time.Millisecond), rescueAfter)
	r.Figure("cancel_to_rerun", "p50 %s, max %s, not re-run %d", chaos.Percentile(cancelToRerun, 50).Round(time.Millisecond),
		chaos.Percentile(cancelToRerun, 100).Round(time.Millisecond), notRerun)
	r.Figure("max_overlap", "%s, %d pairs over the %s window", maxOverlap(overlaps), len(tooLong), overlapWindow)
	r.Figure("answers_during_cut", "%v, no answer %d (db-timeout %s)", during.ByStatus, during.Transport, dbTimeout)
	r.Figure("submit_answers", "%s", statuses(st))
	if !apiAt.IsZero() {
		r.Figure("heal_to_2xx", "%s", apiAt.Sub(healAt).Round(time.Millisecond))
	}
	if !runAt.IsZero() {
		r.Figure("heal_to_run", "%s", runAt.Sub(healAt).Round(time.Millisecond))
	}
	r.Figure("rescue_passes", "%d", countLines(nc.Cluster, logRescued))
	nc.publish(t, ledger, r, st)
	requireOverlaps(t, overlaps, all, cutAt)
	if notRerun > 0 {
		t.Errorf("%d tasks the watchdog cancelled were never run again", notRerun)
	}
	if apiAt.IsZero() {
		t.Errorf("pid %d acknowledged no task within a minute of healing", victim.PID())
	}
	if runAt.IsZero() {
		t.Errorf("pid %d started no task within a minute of healing", victim.PID())
	}
	if cancelled == 0 {
		t.Errorf("none of the %d executions of the cut-off process was cancelled by its watchdog: the test tested nothing, or the watchdog is missing", acrossCut)
	}
	if during.ByStatus[http.StatusServiceUnavailable] == 0 {
		t.Errorf("no request was answered 503 during the cut (%v): the cut-off process's API was not tested", during.ByStatus)
	}
	if probeErr == nil {
		t.Error("a statement through the proxy succeeded during the blackhole: the fault was not in effect")
	}
}

// answersBetween is what the submitter recorded between two of its stats.
func answersBetween(a, b chaos.SubmitStats) chaos.SubmitStats {
	d := chaos.SubmitStats{Requests: b.Requests - a.Requests, Transport: b.Transport - a.Transport,
		Hangs: b.Hangs - a.Hangs, ByStatus: map[int]int{}}
	for s, n := range b.ByStatus {
		if n > a.ByStatus[s] {
			d.ByStatus[s] = n - a.ByStatus[s]
		}
	}
	return d
}
