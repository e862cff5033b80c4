package limits_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/limits"
	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/taskdtest"
)

func TestMain(m *testing.M) { taskdtest.Main(m) }

// cluster starts n `taskd serve` processes on one new database with
// config, and returns a client of each and a pool on the database.
func cluster(t *testing.T, n int, config string) ([]*client.Client, *pgxpool.Pool) {
	t.Helper()
	db := pgtest.NewDB(t)
	var cs []*client.Client
	for range n {
		p := taskdtest.Start(t, taskdtest.Options{DatabaseURL: db, Config: config, Env: []string{"TASKD_DB_MAX_CONNS=6"}})
		c, err := client.New(p.URL, client.Config{})
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	pool, err := pgxpool.New(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return cs, pool
}

// submit submits tasks spread over the processes, one batch each, and
// returns the batch IDs.
func submit(t *testing.T, cs []*client.Client, tasks []client.TaskRequest) []int64 {
	t.Helper()
	var ids []int64
	per := (len(tasks) + len(cs) - 1) / len(cs)
	for i, c := range cs {
		lo, hi := i*per, min((i+1)*per, len(tasks))
		if lo >= hi {
			break
		}
		b, _, err := c.SubmitBatch(context.Background(), tasks[lo:hi], client.SubmitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, b.ID)
	}
	return ids
}

// waitDone waits until every batch is done and every task completed.
func waitDone(t *testing.T, c *client.Client, batches []int64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, id := range batches {
		for {
			b, err := c.WaitBatch(context.Background(), id, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if b.Done {
				if b.Counts["completed"] != b.Total {
					t.Fatalf("batch %d: %v, want all %d completed", id, b.Counts, b.Total)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("batch %d not done after %s: %v", id, within, b.Counts)
			}
		}
	}
}

// span is one attempt of a task.
type span struct {
	task       int64
	key        string
	start, end time.Time
}

// attempts reads every attempt of kind, with the args field key (if any),
// and checks that each task ran exactly once with attempt 1: waiting for
// a limit used no attempt.
func attempts(t *testing.T, pool *pgxpool.Pool, kind, key string) []span {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT a.task_id, coalesce(j.args ->> $2, ''), a.started_at, a.finished_at, a.outcome, j.attempt
		FROM task_attempts a JOIN river_job j ON j.id = a.task_id
		WHERE j.kind = $1 ORDER BY a.started_at`, kind, key)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []span
	seen := map[int64]bool{}
	for rows.Next() {
		var s span
		var outcome string
		var attempt int
		if err := rows.Scan(&s.task, &s.key, &s.start, &s.end, &outcome, &attempt); err != nil {
			t.Fatal(err)
		}
		if outcome != "completed" || attempt != 1 || seen[s.task] {
			t.Errorf("task %d: attempt row with outcome %s, task attempt %d, seen before %v: want one completed attempt, attempt 1",
				s.task, outcome, attempt, seen[s.task])
		}
		seen[s.task] = true
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// maxOverlap is the most spans running at one instant, per key.
func maxOverlap(spans []span) map[string]int {
	type edge struct {
		at    time.Time
		delta int
		key   string
	}
	var edges []edge
	for _, s := range spans {
		edges = append(edges, edge{s.start, 1, s.key}, edge{s.end, -1, s.key})
	}
	// Ends before starts at the same instant: back to back is no overlap.
	sort.Slice(edges, func(i, j int) bool {
		if !edges[i].at.Equal(edges[j].at) {
			return edges[i].at.Before(edges[j].at)
		}
		return edges[i].delta < edges[j].delta
	})
	cur, most := map[string]int{}, map[string]int{}
	for _, e := range edges {
		cur[e.key] += e.delta
		most[e.key] = max(most[e.key], cur[e.key])
	}
	return most
}

func TestConcurrencyAcrossProcesses(t *testing.T) {
	cs, pool := cluster(t, 3, `
queues: {default: 20}
limits:
  - kind: sleep
    concurrency: 2
`)
	var tasks []client.TaskRequest
	for range 12 {
		tasks = append(tasks, client.TaskRequest{Kind: new("sleep"), Args: json.RawMessage(`{"ms": 300}`)})
	}
	waitDone(t, cs[0], submit(t, cs, tasks), 2*time.Minute)
	spans := attempts(t, pool, "sleep", "")
	if len(spans) != len(tasks) {
		t.Fatalf("%d attempts, want %d", len(spans), len(tasks))
	}
	most := maxOverlap(spans)[""]
	t.Logf("most sleep attempts at once: %d (limit 2)", most)
	if most > 2 {
		t.Errorf("%d sleep attempts ran at once across the cluster; the limit is 2", most)
	}

	kinds, err := cs[1].Kinds(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kinds {
		want := k.Name == "sleep"
		if got := len(k.Limits) == 1 && k.Limits[0].Concurrency == 2; got != want {
			t.Errorf("GET /v1/kinds: kind %s shows limits %+v", k.Name, k.Limits)
		}
	}
}

// receiver is an endpoint of an http kind that takes its time and answers
// 200.
func receiver(t *testing.T, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok": true}`))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String() + "/work"
}

func TestPerKeyAcrossProcessesAndNoStarvation(t *testing.T) {
	url := receiver(t, 200*time.Millisecond)
	cs, pool := cluster(t, 3, fmt.Sprintf(`
queues: {default: 20}
allow_private: [127.0.0.1]
kinds:
  - name: resize
    run: http
    url: %s
limits:
  - kind: resize
    concurrency_key: args.customer_id
    concurrency_per_key: 1
`, url))
	var tasks []client.TaskRequest
	for i := range 15 {
		tasks = append(tasks, client.TaskRequest{Kind: new("resize"), Args: json.RawMessage(fmt.Sprintf(`{"customer_id": "c%d", "n": %d}`, i%3, i))})
	}
	batches := submit(t, cs, tasks)

	// Once every task of the batches runs or waits for a slot, one
	// customer's tasks keep arriving: those waiting must not starve behind
	// them. (Among tasks that arrive together in different processes, the
	// first to ask gets the slot.)
	deadline := time.Now().Add(time.Minute)
	for {
		var unasked int
		err := pool.QueryRow(context.Background(), `
			SELECT count(*) FROM river_job j
			WHERE j.kind = 'resize' AND j.state NOT IN ('running', 'completed')
				AND NOT EXISTS (SELECT 1 FROM task_limit_waits w WHERE w.task_id = j.id)`).Scan(&unasked)
		if err != nil {
			t.Fatal(err)
		}
		if unasked == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d tasks neither run nor wait for a slot after a minute", unasked)
		}
		time.Sleep(5 * time.Millisecond) // polling the database
	}
	var streamed []int64
	for i := range 10 {
		task, _, err := cs[i%3].Submit(context.Background(), client.TaskRequest{Kind: new("resize"), Args: json.RawMessage(`{"customer_id": "c0"}`)}, client.SubmitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		streamed = append(streamed, task.ID)
		time.Sleep(30 * time.Millisecond) // the arrival pace, not a wait for a result
	}
	waitDone(t, cs[0], batches, 2*time.Minute)
	for _, id := range streamed {
		task, err := cs[0].Wait(context.Background(), id, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if task.State != "completed" {
			t.Fatalf("task %d is %s after its wait", id, task.State)
		}
	}

	spans := attempts(t, pool, "resize", "customer_id")
	if len(spans) != len(tasks)+len(streamed) {
		t.Fatalf("%d attempts, want %d", len(spans), len(tasks)+len(streamed))
	}
	for key, most := range maxOverlap(spans) {
		if most > 1 {
			t.Errorf("customer %s: %d attempts at once; the limit is 1 per key", key, most)
		}
	}
	// A freed slot goes to the oldest waiting task: the tasks that arrived
	// later start after every task that waited already, in the order they
	// arrived.
	var lastEarly, lastStreamed int64
	for _, s := range spans { // by start time
		switch {
		case s.key != "c0":
		case slices.Contains(streamed, s.task):
			if s.task < lastStreamed {
				t.Errorf("task %d started after the newer task %d", s.task, lastStreamed)
			}
			lastStreamed = max(lastStreamed, s.task)
		default:
			if lastStreamed != 0 {
				t.Errorf("task %d, waiting since before task %d arrived, started after it", s.task, lastStreamed)
			}
			lastEarly = s.task
		}
	}
	t.Logf("customer c0: last early task %d, streamed %v", lastEarly, streamed)
}

func TestRateAcrossProcesses(t *testing.T) {
	const rate = 5
	cs, pool := cluster(t, 3, `
queues: {default: 20}
limits:
  - kind: double
    rate: 5/s
`)
	var tasks []client.TaskRequest
	for i := range 25 {
		tasks = append(tasks, client.TaskRequest{Kind: new("double"), Args: json.RawMessage(fmt.Sprintf(`{"value": %d}`, i))})
	}
	waitDone(t, cs[0], submit(t, cs, tasks), 2*time.Minute)
	spans := attempts(t, pool, "double", "")
	if len(spans) != len(tasks) {
		t.Fatalf("%d attempts, want %d", len(spans), len(tasks))
	}
	// In any one-second interval, at most one period's worth more than the
	// rate: fixed windows let a window's end and the next one's start
	// meet.
	for i, s := range spans {
		n := 0
		for _, o := range spans[i:] {
			if o.start.Sub(s.start) < time.Second {
				n++
			}
		}
		if n > 2*rate {
			t.Fatalf("%d starts within one second from %s; the rate is %d/s", n, s.start.Format(time.StampMicro), rate)
		}
	}
	first, last := spans[0].start, spans[len(spans)-1].start
	t.Logf("25 starts over %s at rate %d/s", last.Sub(first).Round(time.Millisecond), rate)
}

func TestClaimsHonourLimits(t *testing.T) {
	cs, pool := cluster(t, 1, `
kinds:
  - name: ocr
    run: external
limits:
  - kind: ocr
    concurrency: 1
`)
	c := cs[0]
	ctx := context.Background()
	var ids []int64
	for range 3 {
		task, _, err := c.Submit(ctx, client.TaskRequest{Kind: new("ocr"), Args: json.RawMessage(`{}`)}, client.SubmitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, task.ID)
	}
	claim := func(wait string) []client.ClaimedTask {
		t.Helper()
		got, err := c.Claim(ctx, client.ClaimRequest{Kinds: []string{"ocr"}, Max: new(5), Wait: new(wait)})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	first := claim("0s")
	if len(first) != 1 || first[0].ID != ids[0] || first[0].Attempt != 1 {
		t.Fatalf("first claim got %+v, want only task %d at attempt 1", first, ids[0])
	}
	if again := claim("0s"); len(again) != 0 {
		t.Fatalf("a second claim got %d tasks while the only slot is held", len(again))
	}
	// The refused tasks used no attempt.
	var attempt int
	if err := pool.QueryRow(ctx, `SELECT attempt FROM river_job WHERE id = $1`, ids[1]).Scan(&attempt); err != nil {
		t.Fatal(err)
	}
	if attempt != 0 {
		t.Errorf("a waiting task has attempt %d, want 0", attempt)
	}

	var wg sync.WaitGroup
	var next []client.ClaimedTask
	wg.Go(func() { next = claim("20s") }) // woken when the slot is handed on
	if _, err := c.Complete(ctx, first[0].ID, first[0].Lease, json.RawMessage(`{"text": "done"}`)); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if len(next) != 1 || next[0].ID != ids[1] || next[0].Attempt != 1 {
		t.Fatalf("after the slot was freed, the claim got %+v, want task %d (the oldest waiting) at attempt 1", next, ids[1])
	}
}

// A cap large enough that processes reserve spare slots ahead
// (limits.QuotaMinCap): 3 processes of 40 workers each compete for 64
// slots, and the cap still holds.
func TestLargeCapAcrossProcesses(t *testing.T) {
	cs, pool := cluster(t, 3, fmt.Sprintf(`
queues: {default: 40}
limits:
  - kind: sleep
    concurrency: %d
`, limits.QuotaMinCap))
	var tasks []client.TaskRequest
	for range 400 {
		tasks = append(tasks, client.TaskRequest{Kind: new("sleep"), Args: json.RawMessage(`{"ms": 100}`)})
	}
	waitDone(t, cs[0], submit(t, cs, tasks), 3*time.Minute)
	spans := attempts(t, pool, "sleep", "")
	if len(spans) != len(tasks) {
		t.Fatalf("%d attempts, want %d", len(spans), len(tasks))
	}
	most := maxOverlap(spans)[""]
	t.Logf("most sleep attempts at once: %d (limit %d, 120 workers)", most, limits.QuotaMinCap)
	if most > limits.QuotaMinCap {
		t.Errorf("%d sleep attempts ran at once across the cluster; the limit is %d", most, limits.QuotaMinCap)
	}
}
