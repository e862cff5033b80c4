package chaos_test

// The push executor under a faulty endpoint (docs/RELIABILITY.md): two
// taskd processes push the tasks of an http kind to a receiver of the
// test's that, for each request, records the delivery in chaos_executions
// and then, at random, answers 200, answers 200 slowly, answers 500, hangs
// past the kind's timeout, or resets the connection; one taskd process is
// killed with SIGKILL (and started again) every few seconds meanwhile.
// Every acknowledged task must complete, and every delivery the receiver
// saw must be one of taskd's attempt rows with the outcome its answer
// calls for.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskd/taskd/internal/chaos"
)

// What the receiver does with a request.
const (
	answerOK    = "ok"    // 200 at once
	answerSlow  = "slow"  // 200 after 100–600 ms, well within the timeout
	answer500   = "500"   // 500 Internal Server Error
	answerHang  = "hang"  // no answer until taskd gives up (or pushHang)
	answerReset = "reset" // the connection reset (RST), no answer
)

// pushMix is the share of each answer. A request fails with probability
// 0.4, so a task needs 1.7 attempts on average and exhausts pushAttempts
// with probability 0.4^25 ≈ 1e-10: a discarded task means a fault, not
// bad luck.
var pushMix = []struct {
	answer string
	share  float64
}{{answerOK, 0.50}, {answerSlow, 0.10}, {answer500, 0.20}, {answerHang, 0.05}, {answerReset, 0.15}}

const (
	// pushTimeout is the kind's timeout; a hang outlasts it.
	pushTimeout  = 2 * time.Second
	pushHang     = 5 * time.Second
	pushAttempts = 25
)

// pushReceiver is the endpoint of the test's http kind.
type pushReceiver struct {
	pool     *pgxpool.Pool
	inFlight atomic.Int64
	mu       sync.Mutex
	// problems are requests that were not what taskd documents (headers
	// and body disagreeing) or could not be recorded.
	problems []string
}

func (rc *pushReceiver) problem(format string, args ...any) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.problems) < 20 {
		rc.problems = append(rc.problems, fmt.Sprintf(format, args...))
	}
}

func pickAnswer() string {
	x := rand.Float64()
	for _, m := range pushMix {
		if x < m.share {
			return m.answer
		}
		x -= m.share
	}
	return answerOK
}

// lateSuffix marks a request answered more than half the kind's timeout
// after it arrived (the machine was slow): taskd, whose clock started
// earlier, may have given up on it first, so timeout fits it too.
const lateSuffix = ": late"

func (rc *pushReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	began := time.Now()
	rc.inFlight.Add(1)
	defer rc.inFlight.Add(-1)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		// taskd went away while sending (a kill): no delivery.
		return
	}
	var req struct {
		ID      int64 `json:"id"`
		Attempt int   `json:"attempt"`
	}
	id, _ := strconv.ParseInt(r.Header.Get("Taskd-Task-Id"), 10, 64)
	attempt, _ := strconv.Atoi(r.Header.Get("Taskd-Attempt"))
	if err := json.Unmarshal(body, &req); err != nil || req.ID != id || req.Attempt != attempt || id == 0 || attempt == 0 ||
		r.Header.Get("Webhook-Id") != strconv.FormatInt(id, 10) {
		rc.problem("request with headers task %q attempt %q webhook-id %q and body %s", r.Header.Get("Taskd-Task-Id"),
			r.Header.Get("Taskd-Attempt"), r.Header.Get("Webhook-Id"), body)
	}
	answer := pickAnswer()
	// Recorded before anything is answered, on the receiver's own context,
	// so that no delivery taskd could act on goes unseen.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var execution string
	if err := rc.pool.QueryRow(ctx, `INSERT INTO chaos_executions (task_id, attempt, pid)
		VALUES ($1, $2, 0) RETURNING execution::text`, id, attempt).Scan(&execution); err != nil {
		rc.problem("recording task %d attempt %d: %v", id, attempt, err)
		http.Error(w, "cannot record", http.StatusServiceUnavailable)
		return
	}
	end := func(outcome string) {
		if answer != answerHang && time.Since(began) > pushTimeout/2 {
			outcome += lateSuffix
		}
		if _, err := rc.pool.Exec(ctx, `UPDATE chaos_executions SET ended_at = clock_timestamp(), outcome = $2
			WHERE execution = $1`, execution, outcome); err != nil {
			rc.problem("recording the end of task %d attempt %d: %v", id, attempt, err)
		}
	}
	switch answer {
	case answerOK, answerSlow:
		if answer == answerSlow {
			select {
			case <-time.After(time.Duration(100+rand.N(500)) * time.Millisecond):
			case <-r.Context().Done():
			}
		}
		if r.Context().Err() != nil {
			// taskd died meanwhile: nobody will read the answer.
			end(answer + ": client gone")
			return
		}
		end(answer)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"execution":%q}`, execution)
	case answer500:
		end(answer)
		http.Error(w, `{"error":"chaos"}`, http.StatusInternalServerError)
	case answerHang:
		select {
		case <-r.Context().Done():
			end(answer)
		case <-time.After(pushHang):
			// taskd's timeout should have ended the request long ago.
			end(answer + ": not timed out")
			http.Error(w, "hung too long", http.StatusInternalServerError)
		}
	case answerReset:
		end(answer)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			rc.problem("hijacking: %v", err)
			return
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // close with RST
		}
		conn.Close()
	}
}

func TestChaosPushReceiver(t *testing.T) {
	// Submits are paced under what two processes push through this
	// receiver (about 300 tasks/s), so that a task a kill gives back waits
	// for the rescue, not behind a backlog.
	total := chaos.Size(3_000, 20_000)
	batch, pause := 100, chaos.Size(300*time.Millisecond, 500*time.Millisecond)
	minKills := chaos.Size(2, 6)
	every := chaos.Size(4*time.Second, 6*time.Second)

	rc := &pushReceiver{}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	config := fmt.Sprintf(`allow_private: ["127.0.0.1/32"]
kinds:
  - name: chaos_push
    run: http
    url: %s/push
    timeout: %s
    max_attempts: %d
    backoff: {initial: 100ms, max: 500ms, multiplier: 2, jitter: 0.1}
`, srv.URL, pushTimeout, pushAttempts)
	c := chaos.NewCluster(t, chaos.ClusterOptions{Processes: 2, Queues: "default=50", Config: config})
	cfg, err := pgxpool.ParseConfig(c.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 6
	cfg.ConnConfig.RuntimeParams["application_name"] = "taskd-chaos-receiver"
	rc.pool, err = pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.pool.Close)

	ledger := &chaos.Ledger{}
	sub := &chaos.Submitter{Clients: c.Clients(t), Ledger: ledger, Kind: "chaos_push",
		Args:  func(i int) json.RawMessage { return json.RawMessage(`{"i":` + strconv.Itoa(i) + `}`) },
		Batch: batch, Workers: 1, Total: total, Pause: pause}
	start := time.Now()
	sub.Start(context.Background())

	kills := killWhileSubmitting(c, sub, total, minKills, every, nil)
	lastKill := time.Now()
	if !sub.Wait(5 * time.Minute) {
		t.Fatalf("submitting did not finish: %+v", sub.Stats().ByStatus)
	}
	st := sub.Stop()

	r := chaos.Check(t, c.Pool, ledger, 3*time.Minute)
	// A request taskd gave up on may still be in the receiver's handler
	// for a moment; its record ends with it.
	deadline := time.Now().Add(30 * time.Second)
	for rc.inFlight.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	a := auditPush(t, c.Pool, ledger.IDs(), kills)
	rescued := riverRescues(t, c.Pool, ledger.IDs())

	// The harness counts every request as an execution; for a push only a
	// 2xx is the endpoint doing the work, so the report's executions and
	// duplicates are those, and every request is in receiver_requests.
	r.Executions, r.Executed, r.Duplicates = a.delivered, a.deliveredTasks, a.delivered-a.deliveredTasks
	r.DupPct = 0
	if r.Executed > 0 {
		r.DupPct = 100 * float64(r.Duplicates) / float64(r.Executed)
	}
	r.Figure("kills", "%d", len(kills))
	r.Figure("run", "%s (last kill %s after the start)", time.Since(start).Round(time.Second), lastKill.Sub(start).Round(time.Second))
	r.Figure("receiver_requests", "%d %v", a.requests, a.byAnswer)
	r.Figure("attempt_rows", "%d %v", a.rows, a.byOutcome)
	r.Figure("duplicate_2xx_tasks", "%d (tasks answered 2xx more than once)", a.dupTasks)
	r.Figure("unaccounted", "%d requests without a matching attempt row, %d with the wrong outcome, %d rows without a request (%v)",
		a.unmatched, a.mismatched, a.rowsWithoutRequest, a.rowsWithoutRequestBy)
	r.Figure("kill_to_rescue", "p50 %s, p99 %s, max %s", chaos.Percentile(a.rescue, 50).Round(time.Millisecond),
		chaos.Percentile(a.rescue, 99).Round(time.Millisecond), chaos.Percentile(a.rescue, 100).Round(time.Millisecond))
	r.Figure("kill_to_repush", "p50 %s, p99 %s, max %s (%d attempts cut off)", chaos.Percentile(a.repush, 50).Round(time.Millisecond),
		chaos.Percentile(a.repush, 99).Round(time.Millisecond), chaos.Percentile(a.repush, 100).Round(time.Millisecond), len(a.repush))
	r.Figure("river_rescues", "%d", rescued)
	r.Figure("submit_answers", "%v, no answer %d", st.ByStatus, st.Transport)
	chaos.Publish(t, r)
	chaos.RequireNoLoss(t, r)
	if rescued > 0 {
		t.Errorf("River's own rescuer took %d tasks (its horizon is far beyond any attempt)", rescued)
	}
	if r.States["completed"] != r.Acknowledged {
		// Discarded only when every one of its attempts failed, which at
		// pushMix's odds does not happen (0.4^25): none may be.
		t.Errorf("%d of %d tasks not completed: %v", r.Acknowledged-r.States["completed"], r.Acknowledged, r.States)
	}
	for _, p := range rc.problems {
		t.Errorf("receiver: %s", p)
	}
	for _, p := range a.problems {
		t.Error(p)
	}
	if a.lostRows == 0 || a.byAnswer[answerHang] == 0 || a.byAnswer[answerReset] == 0 || a.byAnswer[answer500] == 0 {
		t.Errorf("a fault never happened: the test tested nothing (%d lost attempts, requests %v)", a.lostRows, a.byAnswer)
	}
}

// pushAudit is how the receiver's deliveries and taskd's attempt rows
// compare.
type pushAudit struct {
	requests, rows           int
	byAnswer, byOutcome      map[string]int
	delivered                int // 2xx answers
	deliveredTasks, dupTasks int
	unmatched, mismatched    int
	rowsWithoutRequest       int
	rowsWithoutRequestBy     map[string]int
	lostRows                 int
	// rescue is, for each attempt a kill cut off, the time from the kill
	// to its rescue (its attempt row's end); repush to its next delivery.
	rescue, repush []time.Duration
	problems       []string
}

func (a *pushAudit) problem(format string, args ...any) {
	if len(a.problems) < 30 {
		a.problems = append(a.problems, fmt.Sprintf(format, args...))
	}
}

type attemptKey struct {
	task    int64
	attempt int
}

type attemptRow struct {
	outcome, worker, err string
	status               *int
	started, finished    time.Time
}

type delivery struct {
	execution, outcome string
	started            time.Time
	ended              *time.Time
}

// auditPush compares, task by task, the receiver's deliveries with taskd's
// attempt rows:
//   - every delivery is the attempt row of its task and attempt, with the
//     outcome its answer calls for: 2xx completed, 500 failed with status
//     500, a hang timeout, a reset failed without a status; or lost (or
//     completed_unsaved after a 2xx) when the process that pushed it was
//     killed;
//   - an attempt row without a delivery is lost (killed before it sent);
//   - each final task has as many attempt rows as River counted attempts,
//     each with an outcome, and a completed task exactly one completed row,
//     whose delivery's execution is the task's result.
func auditPush(t *testing.T, pool *pgxpool.Pool, ids []int64, kills []taskdKill) pushAudit {
	t.Helper()
	ctx := context.Background()
	a := pushAudit{byAnswer: map[string]int{}, byOutcome: map[string]int{}, rowsWithoutRequestBy: map[string]int{}}
	killedAt := map[string]time.Time{} // by PID
	for _, k := range kills {
		killedAt[strconv.Itoa(k.pid)] = k.at
	}
	// killTime is when the process of River client ID worker
	// (HOSTNAME_PID_RANDOM) was killed; zero if it was not.
	killTime := func(worker string) time.Time {
		parts := strings.Split(worker, "_")
		if len(parts) < 3 {
			return time.Time{}
		}
		return killedAt[parts[len(parts)-2]]
	}
	killedWorker := func(worker string) bool { return !killTime(worker).IsZero() }

	rows := map[attemptKey][]attemptRow{}
	for k, rs := range attemptRows(t, pool, ids) {
		rows[k] = rs
		for _, r := range rs {
			a.rows++
			a.byOutcome[r.outcome]++
			if r.outcome == "lost" {
				a.lostRows++
			}
		}
	}
	deliveries := map[attemptKey][]delivery{}
	byTask := map[int64][]delivery{}
	q, err := pool.Query(ctx, `SELECT task_id, attempt, execution::text, coalesce(outcome, ''), started_at, ended_at
		FROM chaos_executions WHERE task_id = ANY($1) ORDER BY started_at`, ids)
	if err != nil {
		t.Fatal(err)
	}
	for q.Next() {
		var k attemptKey
		var d delivery
		if err := q.Scan(&k.task, &k.attempt, &d.execution, &d.outcome, &d.started, &d.ended); err != nil {
			t.Fatal(err)
		}
		deliveries[k] = append(deliveries[k], d)
		byTask[k.task] = append(byTask[k.task], d)
		a.requests++
		a.byAnswer[d.outcome]++
	}
	if q.Err() != nil {
		t.Fatal(q.Err())
	}

	for k, ds := range deliveries {
		rs := rows[k]
		if len(rs) == 0 {
			a.unmatched += len(ds)
			a.problem("task %d attempt %d: %d deliveries (%s) but no attempt row", k.task, k.attempt, len(ds), ds[0].outcome)
			continue
		}
		if len(ds) > 1 || len(rs) > 1 {
			a.problem("task %d attempt %d: %d deliveries and %d attempt rows for one attempt number", k.task, k.attempt, len(ds), len(rs))
		}
		d, r := ds[0], rs[0]
		if d.ended == nil {
			a.problem("task %d attempt %d: the receiver never finished the request", k.task, k.attempt)
		}
		if !pushOutcomeMatches(d.outcome, r, killedWorker(r.worker)) {
			a.mismatched++
			status := "null"
			if r.status != nil {
				status = strconv.Itoa(*r.status)
			}
			a.problem("task %d attempt %d: answered %q, attempt row %s (status %s, worker %s): %s", k.task, k.attempt,
				d.outcome, r.outcome, status, r.worker, r.err)
		}
	}
	for k, rs := range rows {
		if len(deliveries[k]) > 0 {
			continue
		}
		for _, r := range rs {
			a.rowsWithoutRequest++
			a.rowsWithoutRequestBy[r.outcome]++
			if r.outcome != "lost" || !killedWorker(r.worker) {
				a.problem("task %d attempt %d: attempt row %s (worker %s) but the receiver saw no request: %s",
					k.task, k.attempt, r.outcome, r.worker, r.err)
			}
		}
	}

	// Final tasks: attempts counted, recorded, and the result's execution.
	jobs := finalJobs(t, pool, ids)
	perTask := map[int64][]attemptRow{}
	completedAt := map[int64]int{}
	for k, rs := range rows {
		perTask[k.task] = append(perTask[k.task], rs...)
		for _, r := range rs {
			if r.outcome == "completed" {
				completedAt[k.task] = k.attempt
			}
		}
	}
	for _, j := range jobs {
		rs := perTask[j.id]
		if len(rs) != j.attempt {
			a.problem("task %d (%s): River counted %d attempts, taskd recorded %d", j.id, j.state, j.attempt, len(rs))
		}
		completed := 0
		for _, r := range rs {
			if r.outcome == "" || r.outcome == "running" {
				a.problem("task %d: an attempt row without an outcome (%q)", j.id, r.outcome)
			}
			if r.outcome == "completed" {
				completed++
			}
		}
		if j.state == "completed" {
			ds := deliveries[attemptKey{j.id, completedAt[j.id]}]
			switch {
			case completed != 1:
				a.problem("task %d: completed with %d completed attempt rows", j.id, completed)
			case len(ds) == 0 || ds[0].execution != j.out:
				a.problem("task %d: its result names execution %q, not the delivery of its completed attempt %d", j.id, j.out, completedAt[j.id])
			}
		}
		ok := 0
		for _, d := range byTask[j.id] {
			if answer, _ := strings.CutSuffix(d.outcome, lateSuffix); answer == answerOK || answer == answerSlow {
				ok++
			}
		}
		a.delivered += ok
		if ok > 0 {
			a.deliveredTasks++
		}
		if ok > 1 {
			a.dupTasks++
		}
	}

	// From each kill to the next delivery of each attempt it cut off.
	for k, rs := range rows {
		r := rs[0]
		if r.outcome != "lost" && r.outcome != "completed_unsaved" {
			continue
		}
		at := killTime(r.worker)
		if at.IsZero() {
			continue
		}
		if r.outcome == "lost" {
			// A completed_unsaved row keeps the end its worker wrote.
			a.rescue = append(a.rescue, r.finished.Sub(at))
		}
		for _, d := range byTask[k.task] {
			if d.started.After(at) {
				a.repush = append(a.repush, d.started.Sub(at))
				break
			}
		}
	}
	return a
}

// pushOutcomeMatches says whether attempt row r is what taskd must record
// for a request the receiver answered with answer. A process killed under
// the attempt leaves lost (it never wrote the row) or, when the row said
// completed, completed_unsaved; any row it did write stays as written.
func pushOutcomeMatches(answer string, r attemptRow, killed bool) bool {
	if killed && r.outcome == "lost" {
		return true
	}
	answer, late := strings.CutSuffix(answer, lateSuffix)
	if late && r.outcome == "timeout" && r.status == nil {
		return true
	}
	switch answer {
	case answerOK, answerSlow:
		return (r.outcome == "completed" || killed && r.outcome == "completed_unsaved") && r.status != nil && *r.status == 200
	case answer500:
		return r.outcome == "failed" && r.status != nil && *r.status == 500
	case answerHang:
		return r.outcome == "timeout" && r.status == nil && strings.Contains(r.err, "timed out after "+pushTimeout.String())
	case answerReset:
		return r.outcome == "failed" && r.status == nil
	}
	// "ok: client gone" and the like: the process died under it, so only
	// lost (above) fits.
	return false
}

// attemptRows reads the attempt rows of the tasks ids, by task and attempt
// number, oldest first.
func attemptRows(t *testing.T, pool *pgxpool.Pool, ids []int64) map[attemptKey][]attemptRow {
	t.Helper()
	rows := map[attemptKey][]attemptRow{}
	q, err := pool.Query(context.Background(), `SELECT task_id, attempt, outcome, worker, coalesce(error, ''), http_status,
			started_at, finished_at
		FROM task_attempts WHERE task_id = ANY($1) ORDER BY id`, ids)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for q.Next() {
		var k attemptKey
		var r attemptRow
		if err := q.Scan(&k.task, &k.attempt, &r.outcome, &r.worker, &r.err, &r.status, &r.started, &r.finished); err != nil {
			t.Fatal(err)
		}
		rows[k] = append(rows[k], r)
	}
	if err := q.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// riverRescues counts the tasks of ids that River's own rescuer took
// (RescueStuckJobsAfter): none should be, since taskd sets it far beyond
// any attempt (jobs.LeaseLifeMax for external kinds) and rescues dead
// processes' tasks itself, and River discards the rescued tasks of kinds
// its leader has no worker for.
func riverRescues(t *testing.T, pool *pgxpool.Pool, ids []int64) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM river_job j WHERE j.id = ANY($1)
		AND EXISTS (SELECT 1 FROM unnest(j.errors) e WHERE e ->> 'error' LIKE 'Stuck job rescued%')`, ids).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
