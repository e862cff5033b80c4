package chaos_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/taskd/taskd/internal/chaos"
)

// TestChaosNetLatency (R4): 500 ms added to every chunk in each direction
// between both taskd processes and PostgreSQL (a round trip of at least a
// second, as long as the suite's heartbeat interval) for a while, under
// steady work. Pass: nothing hangs, 0 lost, no execution without an end,
// and no process is taken for dead: a process that heartbeats slowly but
// within the rescue bound must neither be rescued nor cancel its own
// tasks. The throughput before, during and after is published.
func TestChaosNetLatency(t *testing.T) {
	latency := 500 * time.Millisecond
	before, during, after := chaos.Size(5*time.Second, 10*time.Second), chaos.Size(8*time.Second, 20*time.Second),
		chaos.Size(5*time.Second, 10*time.Second)

	nc := newNetCluster(t, 2, chaos.ClusterOptions{})
	ledger := &chaos.Ledger{}
	// Slow statements are no hang: a request has the default 30 s.
	sub := &chaos.Submitter{Clients: nc.clients, Ledger: ledger, Kind: "chaos_work", Args: chaos.WorkArgs,
		Batch: 20, Workers: 4, Pause: 100 * time.Millisecond}
	start := time.Now()
	sub.Start(context.Background())

	time.Sleep(before) // the fault's pace, not a wait for state
	beforeSt := sub.Stats()
	faultAt := time.Now()
	for _, p := range nc.proxies {
		p.Latency(t, latency)
	}
	took, err := probe(t, nc.Cluster, nc.proxies[0], 30*time.Second)
	if err != nil {
		t.Fatalf("a statement through the proxy failed under latency: %v", err)
	}
	time.Sleep(during - time.Since(faultAt))
	duringSt := sub.Stats()
	healAt := time.Now()
	for _, p := range nc.proxies {
		p.Heal(t)
	}
	time.Sleep(after)
	endAt := time.Now()
	st := sub.Stop()

	r, all, overlaps := nc.outcome(t, ledger, 2*time.Minute)
	cancelled := 0
	for _, e := range all {
		if isWatchdogCancel(e.Outcome) {
			cancelled++
		}
	}
	rescues, cancels := countLines(nc.Cluster, logRescued), countLines(nc.Cluster, logCancelled)

	r.Figure("latency", "%s each way (probe: connect and a 0.6 s statement took %s)", latency, took.Round(time.Millisecond))
	r.Figure("fault", "%s, run %s", healAt.Sub(faultAt).Round(time.Second), time.Since(start).Round(time.Second))
	r.Figure("executions_per_s", "before %.0f, during %.0f, after %.0f",
		startedPerSecond(t, nc.Cluster, start, faultAt), startedPerSecond(t, nc.Cluster, faultAt, healAt),
		startedPerSecond(t, nc.Cluster, healAt, endAt))
	r.Figure("acknowledged_per_s", "before %.0f, during %.0f, after %.0f",
		float64(beforeSt.Acknowledged)/faultAt.Sub(start).Seconds(),
		float64(duringSt.Acknowledged-beforeSt.Acknowledged)/healAt.Sub(faultAt).Seconds(),
		float64(st.Acknowledged-duringSt.Acknowledged)/endAt.Sub(healAt).Seconds())
	r.Figure("submit_latency_during", "p50 %s, p99 %s",
		chaos.Percentile(duringSt.Latencies[beforeSt.Requests:], 50).Round(time.Millisecond),
		chaos.Percentile(duringSt.Latencies[beforeSt.Requests:], 99).Round(time.Millisecond))
	r.Figure("submit_answers", "%s", statuses(st))
	r.Figure("rescue_passes", "%d", rescues)
	r.Figure("watchdog_cancels", "%d passes, %d executions", cancels, cancelled)
	r.Figure("max_overlap", "%s", maxOverlap(overlaps))
	nc.publish(t, ledger, r, st)
	if rescues > 0 || cancels > 0 || cancelled > 0 {
		t.Errorf("slow but live processes were taken for dead: %d rescue passes rescued tasks, %d watchdog passes cancelled %d executions",
			rescues, cancels, cancelled)
	}
	// No process may be cut off here, so no overlap at all is allowed.
	for _, o := range overlaps {
		t.Errorf("task %d ran twice at once for %s: %s; %s", o.TaskID, o.Duration.Round(time.Millisecond),
			describe(o.A, faultAt), describe(o.B, faultAt))
	}
	if took < 2*latency {
		t.Errorf("a statement through the proxy took %s: the latency (%s each way) was not in effect; the test tested nothing", took, latency)
	}
	if startedPerSecond(t, nc.Cluster, faultAt, healAt) == 0 {
		t.Error("no task started during the latency: the test tested nothing")
	}
}

// maxOverlap formats the longest overlap.
func maxOverlap(overlaps []chaos.Overlap) string {
	if len(overlaps) == 0 {
		return "0s (none)"
	}
	o := overlaps[0]
	return fmt.Sprintf("%s (task %d, pid %d %q / pid %d %q)", o.Duration.Round(time.Millisecond), o.TaskID,
		o.A.PID, o.A.Outcome, o.B.PID, o.B.Outcome)
}
