package tasks

import (
	"context"
	"encoding/json"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// insertCounter is an InsertedFunc that counts by "kind/queue".
type insertCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *insertCounter) inserted(kind, queue string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[kind+"/"+queue]++
}

func (c *insertCounter) counts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

// waitCounts polls until the counts are want, failing after timeout.
func (c *insertCounter) waitCounts(t *testing.T, want map[string]int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !maps.Equal(c.counts(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("inserted %v after %s, want %v", c.counts(), timeout, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestInsertedFunc: every task inserted is reported once, after its
// transaction: submissions (an idempotent repeat and a refused one count
// nothing), batches, a batch's callback, and schedules' ticks even when
// two processes race for them.
func TestInsertedFunc(t *testing.T) {
	t.Parallel()
	c := &insertCounter{}
	b := setupWith(t, nil, func(cfg *Config) { cfg.InsertedFunc = c.inserted })
	ctx := context.Background()

	p := task("double", `{"value":1}`)
	for range 2 {
		_, err := b.tasks.Submit(ctx, &p, &Idempotency{Key: "once", Hash: []byte("h")})
		require.NoError(t, err)
	}
	onCPU := task("double", `{"value":2}`)
	onCPU.Queue = ptr("cpu")
	b.submit(t, "double", map[string]int{"value": 3}, func(p *TaskParams) { p.Queue = ptr("cpu") })
	bad := task("double", `{"nope":1}`)
	_, err := b.tasks.Submit(ctx, &bad, nil)
	require.Error(t, err)
	require.Equal(t, map[string]int{"double/default": 1, "double/cpu": 1}, c.counts())

	then := task("fail", `{"times":0}`)
	sub := b.submitBatch(t, []TaskParams{task("double", `{"value":4}`), onCPU}, &then)
	require.Len(t, sub.TaskIDs, 2)
	require.Equal(t, map[string]int{"double/default": 2, "double/cpu": 2}, c.counts())

	b.start(t)
	b.waitThen(t, sub.BatchID, waitTimeout)
	c.waitCounts(t, map[string]int{"double/default": 2, "double/cpu": 2, "fail/default": 1}, waitTimeout)

	// Two services tick the same schedule: each tick's task counts once.
	sc := &insertCounter{}
	beat := Schedule{Name: "beat", Spec: every(t, time.Second), Task: TaskParams{Kind: ptr("double"), Args: json.RawMessage(`{"value": 5}`)}}
	clock := &fakeClock{}
	var leading atomic.Bool
	leading.Store(true)
	var svcs []*Service
	for range 2 {
		svc, err := New(Config{Store: b.store, Jobs: b.jobs, Schedules: []Schedule{beat}, InsertedFunc: sc.inserted})
		require.NoError(t, err)
		t.Cleanup(svc.Close)
		fake(svc, clock, &leading)
		svcs = append(svcs, svc)
	}
	base := mustTime("2026-03-04T10:00:00Z")
	const ticks = 5
	for i := range ticks + 1 { // the first is the schedule's first sight
		clock.set(base.Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano))
		var wg sync.WaitGroup
		for _, svc := range svcs {
			wg.Go(func() { svc.sched.step(ctx) })
		}
		wg.Wait()
	}
	require.Len(t, b.scheduledTasks(t), ticks)
	require.Equal(t, map[string]int{"double/default": ticks}, sc.counts())
}
