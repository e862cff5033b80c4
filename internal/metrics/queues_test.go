package metrics

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/taskd/taskd/internal/store"
)

// TestQueueStatsReadOnScrape: the queue gauges are read from the database
// only for a scrape: one read for many scrapes at once, none again within
// the refresh interval, one after it; a failed read keeps the last values
// and is not tried again within the interval either. The collector's
// clock is the test's.
func TestQueueStatsReadOnScrape(t *testing.T) {
	var reads atomic.Int64
	var fail atomic.Bool
	release := make(chan struct{})
	read := func(ctx context.Context) (map[string]*store.QueueStats, error) {
		n := reads.Add(1)
		if n == 1 {
			<-release // the first read waits until the test lets it go
		}
		if fail.Load() {
			return nil, errors.New("database away")
		}
		return map[string]*store.QueueStats{"default": {Counts: map[string]int64{"available": n}}}, nil
	}
	const maxAge = 5 * time.Second
	c := newQueueCollector([]string{"default"}, read, maxAge, slog.New(slog.DiscardHandler))
	var mu sync.Mutex
	now := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	c.now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	advance := func(d time.Duration) {
		mu.Lock()
		now = now.Add(d)
		mu.Unlock()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	available := func() float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if mf.GetName() == "taskd_queue_tasks" && m.GetLabel()[1].GetValue() == "available" {
					return m.GetGauge().GetValue()
				}
			}
		}
		return -1
	}

	if n := reads.Load(); n != 0 {
		t.Fatalf("%d reads before any scrape", n)
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { _ = testutil.CollectAndCount(c) })
	}
	deadline := time.Now().Add(5 * time.Second)
	for reads.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling until the read began
	}
	// Scrapes that reach the collector after the read find its values
	// fresh (the clock has not moved) and read nothing either.
	close(release)
	wg.Wait()
	if n := reads.Load(); n != 1 {
		t.Fatalf("%d reads for 10 scrapes at once, want 1", n)
	}
	advance(maxAge - time.Millisecond)
	if v := available(); v != 1 || reads.Load() != 1 {
		t.Fatalf("a scrape within the interval: available %v, %d reads; want the first read's 1, and no new read", v, reads.Load())
	}

	advance(time.Millisecond)
	if v := available(); v != 2 || reads.Load() != 2 {
		t.Fatalf("a scrape after the interval: available %v, %d reads; want a new read's 2", v, reads.Load())
	}

	fail.Store(true)
	advance(maxAge)
	if v := available(); v != 2 || reads.Load() != 3 {
		t.Fatalf("a scrape whose read failed: available %v, %d reads; want the last value 2 after a third read", v, reads.Load())
	}
	advance(maxAge / 2)
	if v := available(); v != 2 || reads.Load() != 3 {
		t.Fatalf("a scrape soon after a failed read: available %v, %d reads; want 2 and no new read", v, reads.Load())
	}
}
