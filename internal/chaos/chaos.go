// Package chaos is the fault suite's harness (docs/RELIABILITY.md): the
// oracles every fault test applies, shared by the tests of internal/chaos
// and of the packages whose faults they inject.
//
// A test submits through the public client with a [Submitter], which keeps
// a [Ledger] of every task acknowledged with a 2xx; it runs taskd built with
// the "chaos" tag (taskdtest.Options.BuildTags), whose "chaos_work" kind
// writes each execution (task, attempt, execution UUID, PID, start, end) to
// the table [Setup] creates. After the fault, [Check] waits until every
// acknowledged task is final and reports the figures: lost (acknowledged
// but missing or never final), duplicates (executions − distinct tasks).
// [Publish] logs a report and, with TASKD_CHAOS_REPORT set, appends it to
// that file as a JSON line, from which docs/RELIABILITY.md's figures come.
//
// The suite has two sizes: the short one runs in `make test` (CI); with
// TASKD_CHAOS=full ([Full]) `make chaos` runs the sizes the issue names.
package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskd/taskd/client"
)

// Full reports whether the full suite was asked for (TASKD_CHAOS=full).
func Full() bool { return os.Getenv("TASKD_CHAOS") == "full" }

// Size returns full under TASKD_CHAOS=full and short otherwise.
func Size[T any](short, full T) T {
	if Full() {
		return full
	}
	return short
}

// BuildTags are the tags of the taskd binary the suite runs.
var BuildTags = []string{"chaos"}

// executionsDDL is the side table chaos_work writes to
// (internal/kinds/builtin/chaos.go).
const executionsDDL = `CREATE TABLE IF NOT EXISTS chaos_executions (
	execution  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	task_id    bigint NOT NULL,
	attempt    int NOT NULL,
	pid        int NOT NULL,
	started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	ended_at   timestamptz,
	outcome    text
);
CREATE INDEX IF NOT EXISTS chaos_executions_task ON chaos_executions (task_id);`

// Setup creates the table of executions in the test's database.
func Setup(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), executionsDDL); err != nil {
		t.Fatalf("chaos: creating chaos_executions: %v", err)
	}
}

// Ledger is the set of tasks taskd acknowledged (2xx), in order.
type Ledger struct {
	mu  sync.Mutex
	ids []int64
}

// Add records acknowledged task IDs.
func (l *Ledger) Add(ids ...int64) {
	l.mu.Lock()
	l.ids = append(l.ids, ids...)
	l.mu.Unlock()
}

// IDs returns a copy of the acknowledged IDs.
func (l *Ledger) IDs() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ids)
}

// Len is the number of acknowledged tasks.
func (l *Ledger) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ids)
}

// Submitter submits tasks through the public client until it has
// acknowledged Total (or is stopped), keeping the Ledger and how each
// request went: a fault test reads from it what the API answered during
// the fault.
type Submitter struct {
	// Clients are where tasks go, one request each in turn (several
	// processes: a request to a killed one fails, the next goes to
	// another). Required.
	Clients []*client.Client
	// Ledger receives every acknowledged task. Required.
	Ledger *Ledger
	// Kind and Args make the i-th task (Args(i) may return nil).
	Kind string
	Args func(i int) json.RawMessage
	// Prepare, if set, adjusts the i-th task's request after Kind and Args
	// are set (a delay, max_attempts).
	Prepare func(i int, r *client.TaskRequest)
	// Batch is how many tasks one request carries: 1 submits with POST
	// /v1/tasks, more with POST /v1/batches.
	Batch int
	// Workers is how many requests are in flight at once. Defaults to 1.
	Workers int
	// Total stops the submitter once that many tasks are acknowledged;
	// 0: until Stop.
	Total int
	// Pause is the pause between two requests of one worker.
	Pause time.Duration
	// Timeout bounds one request. Defaults to 30 s: a request that takes
	// longer counts as a hang.
	Timeout time.Duration

	mu      sync.Mutex
	stats   SubmitStats
	next    int
	turn    int
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started bool
}

// SubmitStats is how the submit requests went.
type SubmitStats struct {
	Requests int
	// Acknowledged is the number of tasks acknowledged.
	Acknowledged int
	// ByStatus counts answers by HTTP status (2xx included).
	ByStatus map[int]int
	// Transport counts requests that got no HTTP answer (refused, reset,
	// timed out).
	Transport int
	// Hangs counts requests that ran into Timeout.
	Hangs int
	// NonProblem counts error answers that were not problem+json.
	NonProblem int
	// Latencies of every request, in order.
	Latencies []time.Duration
	// FailLatencies are those of the requests that failed (an error
	// answer or none), in order: how long a client waited to learn it
	// must retry.
	FailLatencies []time.Duration
	// Failures holds a few error messages, for the log.
	Failures []string
}

// Start begins submitting in the background.
func (s *Submitter) Start(ctx context.Context) {
	if s.Workers == 0 {
		s.Workers = 1
	}
	if s.Batch == 0 {
		s.Batch = 1
	}
	if s.Timeout == 0 {
		s.Timeout = 30 * time.Second
	}
	s.stats.ByStatus = map[int]int{}
	ctx, s.cancel = context.WithCancel(ctx)
	s.started = true
	for range s.Workers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for ctx.Err() == nil {
				if !s.submitOnce(ctx) {
					return
				}
				if s.Pause > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(s.Pause):
					}
				}
			}
		}()
	}
}

// Wait waits until Total tasks are acknowledged or timeout passes, and
// returns whether they were.
func (s *Submitter) Wait(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return s.Total == 0 || s.Stats().Acknowledged >= s.Total
	case <-time.After(timeout):
		return false
	}
}

// Stop stops submitting, waits for requests in flight and returns the
// stats.
func (s *Submitter) Stop() SubmitStats {
	if s.started {
		s.cancel()
		s.wg.Wait()
	}
	return s.Stats()
}

// Stats returns a copy of the stats so far.
func (s *Submitter) Stats() SubmitStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.ByStatus = map[int]int{}
	for k, v := range s.stats.ByStatus {
		st.ByStatus[k] = v
	}
	st.Latencies = slices.Clone(s.stats.Latencies)
	st.FailLatencies = slices.Clone(s.stats.FailLatencies)
	st.Failures = slices.Clone(s.stats.Failures)
	return st
}

// submitOnce sends one request; false once Total is reached.
func (s *Submitter) submitOnce(ctx context.Context) bool {
	s.mu.Lock()
	if s.Total > 0 && s.next >= s.Total {
		s.mu.Unlock()
		return false
	}
	n := s.Batch
	if s.Total > 0 {
		n = min(n, s.Total-s.next)
	}
	first := s.next
	s.next += n
	c := s.Clients[s.turn%len(s.Clients)]
	s.turn++
	s.mu.Unlock()

	reqs := make([]client.TaskRequest, n)
	for i := range reqs {
		kind := s.Kind
		reqs[i] = client.TaskRequest{Kind: &kind}
		if s.Args != nil {
			reqs[i].Args = s.Args(first + i)
		}
		if s.Prepare != nil {
			s.Prepare(first+i, &reqs[i])
		}
	}
	rctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	start := time.Now()
	var ids []int64
	var err error
	if n == 1 {
		var task *client.Task
		task, _, err = c.Submit(rctx, reqs[0], client.SubmitOptions{})
		if err == nil {
			ids = []int64{task.ID}
		}
	} else {
		var b *client.BatchCreated
		b, _, err = c.SubmitBatch(rctx, reqs, client.SubmitOptions{})
		if err == nil {
			ids = b.TaskIDs
		}
	}
	elapsed := time.Since(start)
	if ctx.Err() != nil && err != nil {
		// Stopped mid-request: neither acknowledged nor a failure; the
		// tasks are given back so that Total still means acknowledged.
		s.mu.Lock()
		s.next -= n
		s.mu.Unlock()
		return false
	}
	s.Ledger.Add(ids...)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Requests++
	s.stats.Latencies = append(s.stats.Latencies, elapsed)
	var cerr *client.Error
	switch {
	case err == nil:
		s.stats.Acknowledged += len(ids)
		s.stats.ByStatus[201]++
	case errors.As(err, &cerr):
		s.stats.ByStatus[cerr.Status]++
		if !IsProblem(cerr) {
			s.stats.NonProblem++
		}
	default:
		s.stats.Transport++
		if rctx.Err() != nil {
			s.stats.Hangs++
		}
	}
	if err != nil {
		// Not acknowledged: a later request submits as many again, as a
		// client would retry, so that Total still means acknowledged.
		s.next -= n
		s.stats.FailLatencies = append(s.stats.FailLatencies, elapsed)
		if len(s.stats.Failures) < 5 {
			s.stats.Failures = append(s.stats.Failures, err.Error())
		}
	}
	return true
}

// IsProblem reports whether an error answer was problem+json: taskd's
// problems always name a type ("about:blank" at least), whereas the client
// makes up a Problem with an empty Type (and the status text for a title)
// for an answer that was not one.
func IsProblem(e *client.Error) bool { return e.Type != "" }

// Report is one fault test's outcome.
type Report struct {
	Test string `json:"test"`
	// Full says it was the full suite's size.
	Full bool `json:"full"`
	// Acknowledged tasks; Missing of them are not in the database at all,
	// NotFinal never reached a final state within Check's timeout.
	Acknowledged int `json:"acknowledged"`
	Missing      int `json:"missing"`
	NotFinal     int `json:"not_final"`
	// States counts the acknowledged tasks by final state.
	States map[string]int `json:"states"`
	// Executions recorded in chaos_executions for the acknowledged tasks,
	// Executed the distinct tasks among them, Duplicates the difference.
	Executions int     `json:"executions"`
	Executed   int     `json:"executed"`
	Duplicates int     `json:"duplicates"`
	DupPct     float64 `json:"duplicates_pct"`
	// Unrecorded are tasks completed with no execution recorded (zero
	// unless something ran a chaos_work task without its worker).
	Unrecorded int `json:"unrecorded"`
	// Figures are the test's own figures (recovery times, counts).
	Figures map[string]string `json:"figures,omitempty"`
	At      time.Time         `json:"at"`
}

// Lost is the number of acknowledged tasks that are missing or not final.
func (r Report) Lost() int { return r.Missing + r.NotFinal }

// Figure sets one of the test's own figures.
func (r *Report) Figure(name string, format string, args ...any) {
	if r.Figures == nil {
		r.Figures = map[string]string{}
	}
	r.Figures[name] = fmt.Sprintf(format, args...)
}

// checkPoll is the pause between two looks at the tasks' states.
const checkPoll = 200 * time.Millisecond

// Check waits up to timeout for every task of ledger to be final and
// returns the report (the test decides what fails it; see [RequireNoLoss]).
func Check(t testing.TB, pool *pgxpool.Pool, ledger *Ledger, timeout time.Duration) Report {
	t.Helper()
	ctx := context.Background()
	ids := ledger.IDs()
	r := Report{Test: t.Name(), Full: Full(), Acknowledged: len(ids), At: time.Now().UTC()}
	deadline := time.Now().Add(timeout)
	for {
		states, err := taskStates(ctx, pool, ids)
		if err != nil {
			t.Fatalf("chaos: reading task states: %v", err)
		}
		r.Missing, r.NotFinal, r.States = 0, 0, map[string]int{}
		for _, id := range ids {
			st, ok := states[id]
			switch {
			case !ok:
				r.Missing++
			case st != "completed" && st != "discarded" && st != "cancelled":
				r.NotFinal++
			default:
				r.States[st]++
			}
		}
		if r.Lost() == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(checkPoll)
	}
	err := pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT e.task_id),
			(SELECT count(*) FROM river_job j WHERE j.id = ANY($1) AND j.state = 'completed'
				AND j.kind = 'chaos_work'
				AND NOT EXISTS (SELECT 1 FROM chaos_executions x WHERE x.task_id = j.id))
		FROM chaos_executions e WHERE e.task_id = ANY($1)`, ids).
		Scan(&r.Executions, &r.Executed, &r.Unrecorded)
	if err != nil {
		t.Fatalf("chaos: counting executions: %v", err)
	}
	r.Duplicates = r.Executions - r.Executed
	if r.Executed > 0 {
		r.DupPct = 100 * float64(r.Duplicates) / float64(r.Executed)
	}
	return r
}

func taskStates(ctx context.Context, pool *pgxpool.Pool, ids []int64) (map[int64]string, error) {
	out := make(map[int64]string, len(ids))
	for chunk := range slices.Chunk(ids, 10_000) {
		rows, err := pool.Query(ctx, `SELECT id, state::text FROM river_job WHERE id = ANY($1)`, chunk)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id int64
			var st string
			if err := rows.Scan(&id, &st); err != nil {
				rows.Close()
				return nil, err
			}
			out[id] = st
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// RequireNoLoss fails t unless every acknowledged task exists and is final,
// and every completed chaos_work task has a recorded execution.
func RequireNoLoss(t testing.TB, r Report) {
	t.Helper()
	if r.Acknowledged == 0 {
		t.Fatal("chaos: no task was acknowledged: the test tested nothing")
	}
	if r.Missing > 0 || r.NotFinal > 0 {
		t.Errorf("chaos: %d of %d acknowledged tasks lost (%d missing, %d not final)", r.Lost(), r.Acknowledged, r.Missing, r.NotFinal)
	}
	if r.Unrecorded > 0 {
		t.Errorf("chaos: %d completed tasks have no recorded execution", r.Unrecorded)
	}
}

// Publish logs r and, with TASKD_CHAOS_REPORT set, appends it to that file
// as one JSON line.
func Publish(t testing.TB, r Report) {
	t.Helper()
	keys := make([]string, 0, len(r.Figures))
	for k := range r.Figures {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%s: acknowledged %d, lost %d (missing %d, not final %d), states %v, executions %d, duplicates %d (%.2f %%)",
		r.Test, r.Acknowledged, r.Lost(), r.Missing, r.NotFinal, r.States, r.Executions, r.Duplicates, r.DupPct)
	for _, k := range keys {
		fmt.Fprintf(&b, "; %s %s", k, r.Figures[k])
	}
	t.Log(b.String())
	path := os.Getenv("TASKD_CHAOS_REPORT")
	if path == "" {
		return
	}
	line, err := json.Marshal(r)
	if err != nil {
		t.Fatalf("chaos: encoding the report: %v", err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatalf("chaos: opening %s: %v", path, err)
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		t.Fatalf("chaos: writing %s: %v", path, err)
	}
}

// Percentile returns the p-th percentile (0–100) of ds, 0 for none.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

// FormatDurations formats ds for a figure, each rounded to round, with
// their maximum when there are several.
func FormatDurations(ds []time.Duration, round time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.Round(round).String()
	}
	out := strings.Join(s, ", ")
	if len(ds) > 1 {
		out += " (max " + slices.Max(ds).Round(round).String() + ")"
	}
	return out
}

// RerunDelays returns, for each execution that process pid left without an
// end (it was killed under it), the time from killedAt to the task's next
// execution's start; tasks not re-run (yet) are left out and counted in
// notRerun.
func RerunDelays(ctx context.Context, pool *pgxpool.Pool, pid int, killedAt time.Time) (delays []time.Duration, notRerun int, err error) {
	rows, err := pool.Query(ctx, `SELECT (SELECT min(n.started_at) FROM chaos_executions n
			WHERE n.task_id = e.task_id AND n.started_at > e.started_at)
		FROM chaos_executions e WHERE e.pid = $1 AND e.ended_at IS NULL AND e.started_at <= $2`, pid, killedAt)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var next *time.Time
		if err := rows.Scan(&next); err != nil {
			return nil, 0, err
		}
		if next == nil {
			notRerun++
			continue
		}
		delays = append(delays, next.Sub(killedAt))
	}
	return delays, notRerun, rows.Err()
}
