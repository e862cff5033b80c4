package chaos_test

// R6 (docs/RELIABILITY.md): a poison task, one whose work kills the
// process that runs it (chaos_exit: os.Exit(3), a kind only the chaos
// build has), among a steady flow of chaos_work tasks on three processes,
// each restarted as soon as it dies, as systemd's Restart= would. Each
// death is one attempt of the poison: the rescue (internal/jobs, maintain)
// finds it running on a process that no longer heartbeats, records the
// attempt as lost and makes the task available again, until its attempts
// are spent and it is discarded. The tasks that were running beside it on
// the dead process (its neighbours) are cut off too and run again; there
// are at most the process's workers of them per death.

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/chaos"
)

func TestChaosPoison(t *testing.T) {
	const (
		workers = 10
		// exitCode is chaos_exit's (internal/kinds/builtin/chaos.go).
		exitCode = 3
	)
	maxAttempts := chaos.Size(3, 5)
	// The flow's tasks after the poison is discarded: work goes on with
	// no more deaths.
	after := chaos.Size(3*time.Second, 10*time.Second)

	c := chaos.NewCluster(t, chaos.ClusterOptions{Processes: 3, Queues: "default=" + strconv.Itoa(workers)})
	clients := c.Clients(t)
	ctx := context.Background()
	ledger := &chaos.Ledger{}
	// About 100 tasks/s of 0–200 ms, some ten running at a time: the
	// poison has neighbours when it strikes.
	work := &chaos.Submitter{Clients: clients, Ledger: ledger, Kind: "chaos_work", Args: chaos.WorkArgs,
		Batch: 20, Pause: 200 * time.Millisecond}
	start := time.Now()
	work.Start(ctx)

	time.Sleep(time.Second) // the flow is under way; pace, not a wait for state
	kind, attempts := "chaos_exit", maxAttempts
	// 300 ms: neighbours fetched with it are still running when it exits.
	poison, _, err := clients[0].Submit(ctx, client.TaskRequest{Kind: &kind, Args: json.RawMessage(`{"after_ms":300}`),
		MaxAttempts: &attempts}, client.SubmitOptions{})
	if err != nil {
		t.Fatalf("submitting the poison task: %v", err)
	}

	type death struct {
		pid int
		at  time.Time
	}
	var deaths []death
	// watch restarts every process that exited, recording its death; a
	// process that exited otherwise than chaos_exit makes it fails the test.
	watch := func() {
		for _, p := range c.Procs {
			if !p.Exited() {
				continue
			}
			d := death{pid: p.PID(), at: time.Now()}
			var exit *exec.ExitError
			if err := p.Wait(time.Second); !errors.As(err, &exit) || exit.ExitCode() != exitCode {
				t.Errorf("process %d exited with %v, not chaos_exit's status %d", d.pid, err, exitCode)
			}
			deaths = append(deaths, d)
			p.Restart()
		}
	}
	var discardedAt time.Time
	for deadline := time.Now().Add(2 * time.Minute); ; {
		watch()
		var state string
		if err := c.Pool.QueryRow(ctx, `SELECT state::text FROM river_job WHERE id = $1`, poison.ID).Scan(&state); err != nil {
			t.Fatal(err)
		}
		if state == "discarded" || state == "completed" || state == "cancelled" {
			discardedAt = time.Now()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the poison task is %s 2 min after its submission, after %d deaths", state, len(deaths))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for end := time.Now().Add(after); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		watch()
	}
	st := work.Stop()
	r := chaos.Check(t, c.Pool, ledger, 2*time.Minute)
	watch() // a death while checking counts too

	got, err := clients[1].Get(ctx, poison.ID)
	if err != nil {
		t.Fatal(err)
	}
	// The rescue's record of each death: an attempt of a neighbour is
	// lost when it had no row yet (its work was cut off, or had just
	// ended, the row unwritten), completed_unsaved when its work was done
	// and its row written but River's completer, which saves completions
	// in batches, had not saved its state yet. Both run again. Lost ones
	// held a worker each, so there are at most the process's other
	// workers of them; the executions cut off (no end) are among them.
	var lost, unsaved, cut []int
	var rerun []time.Duration
	notRerun := 0
	for _, d := range deaths {
		ds, n, err := chaos.RerunDelays(ctx, c.Pool, d.pid, d.at)
		if err != nil {
			t.Fatal(err)
		}
		cut = append(cut, len(ds)+n)
		rerun = append(rerun, ds...)
		notRerun += n
		var l, u int
		if err := c.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE outcome = 'lost'),
				count(*) FILTER (WHERE outcome = 'completed_unsaved')
			FROM task_attempts WHERE split_part(worker, '_', -2) = $1 AND task_id <> $2`,
			strconv.Itoa(d.pid), poison.ID).Scan(&l, &u); err != nil {
			t.Fatal(err)
		}
		lost, unsaved = append(lost, l), append(unsaved, u)
	}
	outcomes := make([]string, len(got.Attempts))
	for i, a := range got.Attempts {
		outcomes[i] = a.Outcome
	}
	var died []time.Duration
	for i := range deaths {
		from := start
		if i > 0 {
			from = deaths[i-1].at
		}
		died = append(died, deaths[i].at.Sub(from))
	}

	r.Figure("poison", "task %d %s after %d attempts (max_attempts %d), outcomes %v, %s after its submission",
		got.ID, got.State, got.Attempt, got.MaxAttempts, outcomes, discardedAt.Sub(poison.CreatedAt).Round(100*time.Millisecond))
	r.Figure("deaths", "%d", len(deaths))
	r.Figure("neighbours_rerun", "%d in all: lost %d, per death %v (bound: %d workers − the poison = %d); completed_unsaved %d, per death %v",
		sum(lost)+sum(unsaved), sum(lost), lost, workers, workers-1, sum(unsaved), unsaved)
	r.Figure("neighbours_cut_off", "%d in all, per death %v", len(rerun)+notRerun, cut)
	r.Figure("neighbour_rerun_delay", "p50 %s, max %s", chaos.Percentile(rerun, 50).Round(time.Millisecond), chaos.Percentile(rerun, 100).Round(time.Millisecond))
	r.Figure("between_deaths", "%s", chaos.FormatDurations(died, 100*time.Millisecond))
	r.Figure("run", "%s", time.Since(start).Round(time.Second))
	r.Figure("submit_answers", "%v, no answer %d", st.ByStatus, st.Transport)
	chaos.Publish(t, r)
	chaos.RequireNoLoss(t, r)

	if got.State != "discarded" || got.Attempt != maxAttempts {
		t.Errorf("poison task %s after %d attempts, want discarded after %d", got.State, got.Attempt, maxAttempts)
	}
	if len(deaths) != maxAttempts {
		t.Errorf("%d processes died, want one per attempt of the poison: %d", len(deaths), maxAttempts)
	}
	if len(got.Attempts) != maxAttempts {
		t.Errorf("the poison task has %d attempt rows, want %d: %+v", len(got.Attempts), maxAttempts, got.Attempts)
	}
	pids := make([]int, len(deaths))
	for i, d := range deaths {
		pids[i] = d.pid
	}
	for _, a := range got.Attempts {
		if a.Outcome != "lost" || !slices.Contains(pids, chaos.ClientPID(a.Worker)) {
			t.Errorf("poison attempt %d: outcome %s on %s, want lost on a process that died (%v)", a.Attempt, a.Outcome, a.Worker, pids)
		}
	}
	for i, n := range lost {
		if n > workers-1 || cut[i] > n {
			t.Errorf("death %d: %d neighbours lost, %d executions cut off; want at most the process's other %d workers, and every execution cut off among the lost",
				i+1, n, cut[i], workers-1)
		}
	}
	if notRerun > 0 {
		t.Errorf("%d neighbours cut off by the poison were never run again", notRerun)
	}
}

func sum(ns []int) int {
	s := 0
	for _, n := range ns {
		s += n
	}
	return s
}
