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

// span is one run of a task's work.
type span struct {
	task       int64
	key        string
	start, end time.Time
}

// ranOnce checks that every task of kind ran exactly once, with attempt 1
// (waiting for a limit used no attempt), and returns how many ran.
func ranOnce(t *testing.T, pool *pgxpool.Pool, kind string) int {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT a.task_id, a.outcome, j.attempt
		FROM task_attempts a JOIN river_job j ON j.id = a.task_id
		WHERE j.kind = $1`, kind)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := map[int64]bool{}
	for rows.Next() {
		var id int64
		var outcome string
		var attempt int
		if err := rows.Scan(&id, &outcome, &attempt); err != nil {
			t.Fatal(err)
		}
		if outcome != "completed" || attempt != 1 || seen[id] {
			t.Errorf("task %d: attempt row with outcome %s, task attempt %d, seen before %v: want one completed attempt, attempt 1",
				id, outcome, attempt, seen[id])
		}
		seen[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return len(seen)
}

// meter is the endpoint of an http kind: it takes delay over each task,
// answers 200, and records, by its own clock, when each task's work ran
// and under which value of the args field key ("" for none). Those spans
// are what a limit's cap is about. (A task's attempt row starts earlier:
// at River's fetch, before the limits are asked, which under load can be
// long enough to make attempts that never ran together look as if they
// had.)
type meter struct {
	URL   string
	mu    sync.Mutex
	spans []span // in the order the requests arrived
}

func newMeter(t *testing.T, delay time.Duration, key string) *meter {
	t.Helper()
	m := &meter{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var req struct {
			ID   int64                      `json:"id"`
			Args map[string]json.RawMessage `json:"args"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var value string
		if raw, ok := req.Args[key]; ok && key != "" {
			if err := json.Unmarshal(raw, &value); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
		time.Sleep(delay) // the work
		m.mu.Lock()
		m.spans = append(m.spans, span{task: req.ID, key: value, start: start, end: time.Now()})
		m.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok": true}`))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	m.URL = "http://" + ln.Addr().String() + "/work"
	return m
}

// ran returns the spans recorded, by start.
func (m *meter) ran() []span {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := slices.Clone(m.spans)
	slices.SortStableFunc(out, func(a, b span) int { return a.start.Compare(b.start) })
	return out
}

// workKind is the configuration of kind "work", pushed to m.
func workKind(m *meter) string {
	return fmt.Sprintf(`
allow_private: [127.0.0.1]
kinds:
  - name: work
    run: http
    url: %s
`, m.URL)
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
	m := newMeter(t, 300*time.Millisecond, "")
	cs, pool := cluster(t, 3, `
queues: {default: 20}
limits:
  - kind: work
    concurrency: 2
`+workKind(m))
	var tasks []client.TaskRequest
	for range 12 {
		tasks = append(tasks, client.TaskRequest{Kind: new("work"), Args: json.RawMessage(`{}`)})
	}
	waitDone(t, cs[0], submit(t, cs, tasks), 2*time.Minute)
	spans := m.ran()
	if n := ranOnce(t, pool, "work"); len(spans) != len(tasks) || n != len(tasks) {
		t.Fatalf("%d runs, %d tasks with attempts, want %d", len(spans), n, len(tasks))
	}
	most := maxOverlap(spans)[""]
	t.Logf("most tasks at work at once: %d (limit 2)", most)
	if most > 2 {
		t.Errorf("%d tasks were at work at once across the cluster; the limit is 2", most)
	}

	kinds, err := cs[1].Kinds(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kinds {
		want := k.Name == "work"
		if got := len(k.Limits) == 1 && k.Limits[0].Concurrency == 2; got != want {
			t.Errorf("GET /v1/kinds: kind %s shows limits %+v", k.Name, k.Limits)
		}
	}
}

func TestPerKeyAcrossProcessesAndNoStarvation(t *testing.T) {
	m := newMeter(t, 200*time.Millisecond, "customer_id")
	cs, pool := cluster(t, 3, `
queues: {default: 20}
limits:
  - kind: work
    concurrency_key: args.customer_id
    concurrency_per_key: 1
`+workKind(m))
	var tasks []client.TaskRequest
	for i := range 15 {
		tasks = append(tasks, client.TaskRequest{Kind: new("work"), Args: json.RawMessage(fmt.Sprintf(`{"customer_id": "c%d", "n": %d}`, i%3, i))})
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
			WHERE j.kind = 'work' AND j.state NOT IN ('running', 'completed')
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
		task, _, err := cs[i%3].Submit(context.Background(), client.TaskRequest{Kind: new("work"), Args: json.RawMessage(`{"customer_id": "c0"}`)}, client.SubmitOptions{})
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

	spans := m.ran()
	if n := ranOnce(t, pool, "work"); len(spans) != len(tasks)+len(streamed) || n != len(spans) {
		t.Fatalf("%d runs, %d tasks with attempts, want %d", len(spans), n, len(tasks)+len(streamed))
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
	m := newMeter(t, 0, "")
	cs, pool := cluster(t, 3, `
queues: {default: 20}
limits:
  - kind: work
    rate: 5/s
`+workKind(m))
	var tasks []client.TaskRequest
	for i := range 25 {
		tasks = append(tasks, client.TaskRequest{Kind: new("work"), Args: json.RawMessage(fmt.Sprintf(`{"value": %d}`, i))})
	}
	waitDone(t, cs[0], submit(t, cs, tasks), 2*time.Minute)
	spans := m.ran()
	if n := ranOnce(t, pool, "work"); len(spans) != len(tasks) || n != len(tasks) {
		t.Fatalf("%d runs, %d tasks with attempts, want %d", len(spans), n, len(tasks))
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
	m := newMeter(t, 100*time.Millisecond, "")
	cs, pool := cluster(t, 3, fmt.Sprintf(`
queues: {default: 40}
limits:
  - kind: work
    concurrency: %d
`, limits.QuotaMinCap)+workKind(m))
	var tasks []client.TaskRequest
	for range 400 {
		tasks = append(tasks, client.TaskRequest{Kind: new("work"), Args: json.RawMessage(`{}`)})
	}
	waitDone(t, cs[0], submit(t, cs, tasks), 3*time.Minute)
	spans := m.ran()
	if n := ranOnce(t, pool, "work"); len(spans) != len(tasks) || n != len(tasks) {
		t.Fatalf("%d runs, %d tasks with attempts, want %d", len(spans), n, len(tasks))
	}
	most := maxOverlap(spans)[""]
	t.Logf("most tasks at work at once: %d (limit %d, 120 workers)", most, limits.QuotaMinCap)
	if most > limits.QuotaMinCap {
		t.Errorf("%d tasks were at work at once across the cluster; the limit is %d", most, limits.QuotaMinCap)
	}
}
