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
// only for a scrape: none without one, one for many scrapes at once, none
// again within the refresh interval, and one after it; a failed read keeps
// the last values.
func TestQueueStatsReadOnScrape(t *testing.T) {
	var reads atomic.Int64
	var fail atomic.Bool
	release := make(chan struct{})
	read := func(ctx context.Context) (map[string]*store.QueueStats, error) {
		n := reads.Add(1)
		if n == 1 {
			<-release // the first read waits until every scrape asked
		}
		if fail.Load() {
			return nil, errors.New("database away")
		}
		return map[string]*store.QueueStats{"default": {Counts: map[string]int64{"available": n}}}, nil
	}
	const maxAge = 300 * time.Millisecond
	c := newQueueCollector([]string{"default"}, read, maxAge, slog.New(slog.DiscardHandler))
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

	time.Sleep(2 * maxAge)
	if n := reads.Load(); n != 0 {
		t.Fatalf("%d reads before any scrape", n)
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { _ = testutil.CollectAndCount(c) })
	}
	deadline := time.Now().Add(5 * time.Second)
	for reads.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	// Scrapes that reach the collector only after the read find its
	// values fresh, and read nothing either.
	close(release)
	wg.Wait()
	if n := reads.Load(); n != 1 {
		t.Fatalf("%d reads for 10 scrapes at once, want 1", n)
	}
	start := time.Now()
	if v := available(); v != 1 || (reads.Load() != 1 && time.Since(start) < maxAge) {
		t.Fatalf("a scrape right after: available %v, %d reads; want the first read's 1, and no new read", v, reads.Load())
	}

	time.Sleep(maxAge)
	if v := available(); v != 2 || reads.Load() != 2 {
		t.Fatalf("a scrape after the interval: available %v, %d reads; want a new read's 2", v, reads.Load())
	}

	fail.Store(true)
	time.Sleep(maxAge)
	if v := available(); v != 2 || reads.Load() != 3 {
		t.Fatalf("a scrape whose read failed: available %v, %d reads; want the last value 2 after a third read", v, reads.Load())
	}
}
