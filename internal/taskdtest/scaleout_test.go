package taskdtest_test

// Scale-out under crashes, as real processes: one `taskd api` takes 10,000
// sleep tasks, three `taskd worker` processes run them, and two of the
// workers are killed with SIGKILL mid-run, a follower first and then River's
// leader. Every acknowledged task must complete. taskd promises
// at-least-once, so the test counts the executions beyond one per task and
// reports them (docs/OPERATIONS.md, "Crashes under scale-out, measured") rather than asserting a number.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/store"
	"github.com/taskd/taskd/internal/taskdtest"
)

const (
	// scaleTasks tasks are submitted in batches of scaleBatch, the i-th
	// sleeping scaleSleepMS(i) ms.
	scaleTasks = 10_000
	scaleBatch = 1_000

	// scaleWorkerQueues is each worker's share: 3 × 50 sleeps at a time.
	scaleWorkerQueues = "default=50"

	// A dead worker's tasks are run again once it has been silent for
	// scaleRescueAfter (the default, 15 s, would leave a third of the run
	// waiting); live workers beat every scaleHeartbeat, five times within
	// it, so that a loaded but live worker is not taken for dead.
	scaleHeartbeat   = "1s"
	scaleRescueAfter = "5s"

	// scalePhaseTimeout bounds each wait: for a third of the tasks, for
	// the second third, for the rest and for a new leader. They fail the
	// test only if something is stuck; nothing asserts how fast it went.
	scalePhaseTimeout = 90 * time.Second

	// scalePollInterval is the pause between two looks at the database.
	scalePollInterval = 100 * time.Millisecond
)

// scaleSleepMS spreads the sleeps evenly over 0–200 ms, in an order that
// mixes short and long ones (37 and 201 are coprime).
func scaleSleepMS(i int) int { return i * 37 % 201 }

// scaleKill is one SIGKILL of a worker and what followed it.
type scaleKill struct {
	name      string // "follower", "leader"
	at        time.Time
	completed int     // tasks completed when it was killed
	running   []int64 // its running tasks, read just after the kill
	// rerun is when every one of running was completed again, zero until
	// then; finished when all the tasks were.
	rerun, finished time.Duration
}

// scaleRun is the state of TestScaleOut that its waits update.
type scaleRun struct {
	t     *testing.T
	pool  *pgxpool.Pool
	ids   []int64
	kills []*scaleKill
}

// TestScaleOut kills a follower and then the leader among three workers
// under 10,000 tasks: every task completes; the duplicates are reported.
func TestScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("runs four taskd processes and 10,000 tasks")
	}
	// Not parallel: the figures it reports should not include the load
	// of this package's other tests.
	ctx := context.Background()
	dbURL := pgtest.NewDB(t)
	r := &scaleRun{t: t, pool: scalePool(t, dbURL)}

	// 3 × 6 + 5 connections: several test runs share one PostgreSQL.
	workerOpts := taskdtest.Options{DatabaseURL: dbURL, Role: "worker",
		Args: []string{"--queues", scaleWorkerQueues, "--heartbeat-interval", scaleHeartbeat, "--rescue-after", scaleRescueAfter},
		Env:  []string{"TASKD_DB_MAX_CONNS=6", "TASKD_LOG_LEVEL=warn"}}
	workers := make([]*taskdtest.Process, 3)
	for i := range workers {
		workers[i] = taskdtest.Start(t, workerOpts)
	}
	api := taskdtest.Start(t, taskdtest.Options{DatabaseURL: dbURL, Role: "api",
		Args: []string{"--queues", scaleWorkerQueues},
		Env:  []string{"TASKD_DB_MAX_CONNS=5", "TASKD_UI=false", "TASKD_LOG_LEVEL=warn"}})
	// Know the leader before the first kill, so that it hits a follower.
	leader := waitLeader(t, workers, 30*time.Second)

	c, err := client.New(api.URL, client.Config{HTTPClient: &http.Client{Timeout: 60 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	kind := "sleep"
	for len(r.ids) < scaleTasks {
		reqs := make([]client.TaskRequest, scaleBatch)
		for i := range reqs {
			reqs[i] = client.TaskRequest{Kind: &kind, Args: json.RawMessage(fmt.Sprintf(`{"ms":%d}`, scaleSleepMS(len(r.ids)+i)))}
		}
		b, _, err := c.SubmitBatch(ctx, reqs, client.SubmitOptions{})
		if err != nil {
			t.Fatalf("submitting batch %d: %v", len(r.ids)/scaleBatch+1, err)
		}
		if len(b.TaskIDs) != scaleBatch {
			t.Fatalf("batch %d acknowledged %d tasks, want %d", b.ID, len(b.TaskIDs), scaleBatch)
		}
		r.ids = append(r.ids, b.TaskIDs...)
	}
	t.Logf("%d tasks submitted through the api process in %s; %d completed meanwhile",
		scaleTasks, time.Since(start).Round(time.Millisecond), r.completed())

	// A follower dies a third of the way and comes back on its address
	// (as systemd's Restart= would bring it back) under a new client ID:
	// its old tasks are the dead client's, rescued by whichever live
	// process's heartbeat finds them first, the new one included.
	r.waitCompleted(scaleTasks/3, scalePhaseTimeout)
	follower := workers[0]
	if follower == leader {
		follower = workers[1]
	}
	r.kill("follower", follower)
	restartAt := time.Now()
	follower.Restart()
	t.Logf("follower restarted, ready %s later", time.Since(restartAt).Round(time.Millisecond))

	// The leader dies two thirds of the way and stays dead: two workers
	// finish, and one of them must take the leadership over.
	r.waitCompleted(2*scaleTasks/3, scalePhaseTimeout)
	leader = waitLeader(t, workers, 30*time.Second)
	var survivors []*taskdtest.Process
	for _, w := range workers {
		if w != leader {
			survivors = append(survivors, w)
		}
	}
	leaderKill := r.kill("leader", leader)
	r.waitCompleted(scaleTasks, scalePhaseTimeout)
	elapsed := time.Since(start)
	newLeader := waitLeader(t, survivors, scalePhaseTimeout)
	failover := time.Since(leaderKill.at)

	r.check()
	r.report(start, elapsed, failover, newLeader)
}

// kill kills w with SIGKILL and records which tasks it was running.
func (r *scaleRun) kill(name string, w *taskdtest.Process) *scaleKill {
	r.t.Helper()
	var clientID string
	err := r.pool.QueryRow(context.Background(),
		`SELECT client_id FROM taskd_processes WHERE pid = $1 ORDER BY started_at DESC LIMIT 1`, w.PID()).Scan(&clientID)
	if err != nil {
		r.t.Fatalf("finding the %s's client ID (pid %d): %v", name, w.PID(), err)
	}
	w.Kill()
	k := &scaleKill{name: name, at: time.Now(), completed: r.completed()}
	// A completion the dead process had sent may still commit: then that
	// task is simply re-run sooner (it is already done).
	rows, err := r.pool.Query(context.Background(), `SELECT id FROM river_job
		WHERE state = 'running' AND attempted_by[cardinality(attempted_by)] = $1`, clientID)
	if err == nil {
		for rows.Next() {
			var id int64
			if err = rows.Scan(&id); err != nil {
				break
			}
			k.running = append(k.running, id)
		}
		rows.Close()
		err = rows.Err()
	}
	if err != nil {
		r.t.Fatalf("reading the %s's running tasks: %v", name, err)
	}
	// Without tasks in flight the kill would prove nothing.
	if len(k.running) == 0 {
		r.t.Fatalf("the %s (%s) was running no task when killed", name, clientID)
	}
	r.t.Logf("%s killed (SIGKILL) at %d/%d completed, running %d tasks", name, k.completed, scaleTasks, len(k.running))
	r.kills = append(r.kills, k)
	return k
}

// waitCompleted polls until at least n tasks are completed, noting when
// the tasks of each kill were all completed again; it fails the test
// after timeout.
func (r *scaleRun) waitCompleted(n int, timeout time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done := r.completed()
		for _, k := range r.kills {
			if k.rerun == 0 && r.count(`SELECT count(*) FROM river_job WHERE id = ANY($1) AND state <> 'completed'`, k.running) == 0 {
				k.rerun = time.Since(k.at)
			}
			if k.finished == 0 && done == scaleTasks {
				k.finished = time.Since(k.at)
			}
		}
		if done >= n {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%d of %d tasks completed after %s, want %d; by state: %s", done, scaleTasks, timeout, n, r.states())
		}
		time.Sleep(scalePollInterval)
	}
}

// check is the test's oracle, once every task is completed: each
// acknowledged task completed, with one completed attempt (its work done
// and saved once) and every other attempt accounted for by an outcome.
func (r *scaleRun) check() {
	r.t.Helper()
	if got := r.count(`SELECT count(*) FROM river_job WHERE id = ANY($1) AND state = 'completed'`, r.ids); got != scaleTasks {
		r.t.Fatalf("%d of the %d acknowledged tasks completed; by state: %s", got, scaleTasks, r.states())
	}
	if bad := r.count(`SELECT count(*) FROM river_job j WHERE j.id = ANY($1)
		AND (SELECT count(*) FROM task_attempts a WHERE a.task_id = j.id AND a.outcome = $2) <> 1`,
		r.ids, store.OutcomeCompleted); bad != 0 {
		r.t.Errorf("%d tasks do not have exactly one completed attempt", bad)
	}
	if dup := r.count(`SELECT count(*) FROM (SELECT 1 FROM task_attempts
		GROUP BY task_id, attempt, started_at HAVING count(*) > 1) d`); dup != 0 {
		r.t.Errorf("%d attempts have more than one row", dup)
	}
	// A rescued task was rescued because its process died: every extra
	// attempt is one the rescue recorded.
	if other := r.count(`SELECT count(*) FROM task_attempts WHERE outcome NOT IN ($1, $2, $3)`,
		store.OutcomeCompleted, store.OutcomeCompletedUnsaved, store.OutcomeLost); other != 0 {
		r.t.Errorf("%d attempts ended otherwise than completed, completed_unsaved or lost; by outcome: %s", other, r.outcomes())
	}
}

// report logs the figures docs/OPERATIONS.md quotes ("Crashes under scale-out, measured").
// The rate before the first kill is the cluster's pace undisturbed; the
// whole run's includes the two waits for the rescue.
func (r *scaleRun) report(start time.Time, elapsed, failover time.Duration, newLeader *taskdtest.Process) {
	completed := r.count(`SELECT count(*) FROM river_job WHERE id = ANY($1) AND state = 'completed'`, r.ids)
	executions := r.count(`SELECT count(*) FROM task_attempts WHERE task_id = ANY($1)`, r.ids)
	duplicates := executions - scaleTasks
	for _, k := range r.kills {
		r.t.Logf("after the %s's kill: its %d tasks all completed again %s later, every task %s later",
			k.name, len(k.running), k.rerun.Round(100*time.Millisecond), k.finished.Round(100*time.Millisecond))
	}
	r.t.Logf("leader killed: pid %d leads %s later", newLeader.PID(), failover.Round(100*time.Millisecond))
	first := r.kills[0]
	r.t.Logf("tasks %d, completed %d, lost %d, executions %d, duplicates %d (%.2f%%); attempts by outcome: %s",
		scaleTasks, completed, scaleTasks-completed, executions, duplicates, 100*float64(duplicates)/scaleTasks, r.outcomes())
	r.t.Logf("all completed %s after the first submission (%.0f tasks/s); %.0f tasks/s before the first kill",
		elapsed.Round(100*time.Millisecond), scaleTasks/elapsed.Seconds(),
		float64(first.completed)/first.at.Sub(start).Seconds())
}

func (r *scaleRun) completed() int {
	return r.count(`SELECT count(*) FROM river_job WHERE state = 'completed'`)
}

// states is the tasks' count by River state, for a failure message.
func (r *scaleRun) states() string {
	return r.grouped(`SELECT state::text, count(*) FROM river_job GROUP BY 1 ORDER BY 1`)
}

// outcomes is the attempts' count by outcome.
func (r *scaleRun) outcomes() string {
	return r.grouped(`SELECT outcome, count(*) FROM task_attempts GROUP BY 1 ORDER BY 1`)
}

func (r *scaleRun) grouped(sql string) string {
	r.t.Helper()
	rows, err := r.pool.Query(context.Background(), sql)
	if err != nil {
		r.t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var parts []string
	for rows.Next() {
		var name string
		var n int
		if err := rows.Scan(&name, &n); err != nil {
			r.t.Fatalf("%s: %v", sql, err)
		}
		parts = append(parts, fmt.Sprintf("%s %d", name, n))
	}
	if err := rows.Err(); err != nil {
		r.t.Fatalf("%s: %v", sql, err)
	}
	return strings.Join(parts, ", ")
}

func (r *scaleRun) count(sql string, args ...any) int {
	r.t.Helper()
	var n int
	if err := r.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		r.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// scalePool is the test's own small pool on dbURL.
func scalePool(t *testing.T, dbURL string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}
