package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// submitAll hands out n tasks in chunks of batch to clients goroutines,
// each calling fn(first, count) for one chunk at a time. It stops at the
// first error.
func submitAll(ctx context.Context, n, batch, clients int, fn func(ctx context.Context, first, count int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for {
				first := int(next.Add(int64(batch))) - batch
				if first >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, first, min(batch, n-first)); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// loadResult is what a timed load measured.
type loadResult struct {
	Count    int
	Rate     float64 // operations a second
	P50, P99 float64 // latency, ms
}

func (r loadResult) String() string {
	return fmt.Sprintf("%.0f/s, p50 %s ms, p99 %s ms (%d ops)", r.Rate, num(r.P50), num(r.P99), r.Count)
}

// timedLoad runs conc goroutines calling fn back to back for warmup+dur.
// Operations that start after the warmup and finish before the end are
// counted, and their latencies kept. It stops at the first error.
func timedLoad(ctx context.Context, conc int, warmup, dur time.Duration, fn func(ctx context.Context, worker, i int) error) (loadResult, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	measureStart := time.Now().Add(warmup)
	end := measureStart.Add(dur)
	lats := make([][]float64, conc)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Go(func() {
			for i := 0; ; i++ {
				t0 := time.Now()
				if !t0.Before(end) || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, w, i); err != nil {
					cancel(err)
					return
				}
				if t1 := time.Now(); !t0.Before(measureStart) && !t1.After(end) {
					lats[w] = append(lats[w], ms(t1.Sub(t0)))
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return loadResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return loadResult{}, err
	}
	all := slices.Concat(lats...)
	slices.Sort(all)
	return loadResult{
		Count: len(all),
		Rate:  float64(len(all)) / dur.Seconds(),
		P50:   percentile(all, 50),
		P99:   percentile(all, 99),
	}, nil
}

// paced calls fn n times one at a time, the i-th call at start + i/rate
// (at once when behind).
func paced(ctx context.Context, n, rate int, fn func(ctx context.Context, i int) error) error {
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		if err := fn(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

// watcher watches a database's river_job table from a connection of its
// own.
type watcher struct{ conn *pgx.Conn }

func newWatcher(ctx context.Context, dbURL string) (*watcher, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	return &watcher{conn: conn}, nil
}

func (w *watcher) close(ctx context.Context) { _ = w.conn.Close(context.WithoutCancel(ctx)) }

// waitDone waits until no job is left unfinished, polling every 20 ms with
// a query the (state, id) index answers cheaply, then checks that n jobs
// completed. Call it once every job has been inserted.
func (w *watcher) waitDone(ctx context.Context, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var pending bool
		err := w.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM river_job
			WHERE state IN ('available', 'running', 'retryable', 'scheduled', 'pending'))`).Scan(&pending)
		if err != nil {
			return fmt.Errorf("watching river_job: %w", err)
		}
		if !pending {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("jobs still unfinished after %s", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	var completed int
	if err := w.conn.QueryRow(ctx, "SELECT count(*) FROM river_job WHERE state = 'completed'").Scan(&completed); err != nil {
		return fmt.Errorf("counting completed jobs: %w", err)
	}
	if completed != n {
		return fmt.Errorf("%d jobs completed, want %d", completed, n)
	}
	return nil
}

// pickup returns the p50, p95 and p99 of attempted_at − created_at of the
// jobs in the table, in ms: how long a job waited to be picked up.
func (w *watcher) pickup(ctx context.Context) (p50, p95, p99 float64, err error) {
	var ps []float64
	err = w.conn.QueryRow(ctx, `SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]::float8[])
		WITHIN GROUP (ORDER BY extract(epoch FROM attempted_at - created_at) * 1000)
		FROM river_job WHERE attempted_at IS NOT NULL`).Scan(&ps)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("measuring pickup latency: %w", err)
	}
	if len(ps) != 3 {
		return 0, 0, 0, errors.New("measuring pickup latency: no attempted jobs")
	}
	return ps[0], ps[1], ps[2], nil
}

// attemptDurations returns the p50 and p99 of task_attempts.duration_ms
// of kind's tasks: how long their attempts took inside the worker (for a
// pushed task, the HTTP request and its answer).
func (w *watcher) attemptDurations(ctx context.Context, kind string) (p50, p99 float64, err error) {
	var ps []float64
	err = w.conn.QueryRow(ctx, `SELECT percentile_cont(ARRAY[0.5, 0.99]::float8[]) WITHIN GROUP (ORDER BY a.duration_ms)
		FROM task_attempts a JOIN river_job j ON j.id = a.task_id WHERE j.kind = $1`, kind).Scan(&ps)
	if err != nil {
		return 0, 0, fmt.Errorf("measuring attempt durations: %w", err)
	}
	if len(ps) != 2 {
		return 0, 0, fmt.Errorf("measuring attempt durations: no attempts of %s recorded", kind)
	}
	return ps[0], ps[1], nil
}

// batchBody returns a POST /v1/batches body of count tasks of kind, with
// args {"value": i}.
func batchBody(kind string, count int) []byte {
	b := []byte(`{"tasks":[`)
	for i := range count {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"kind":`...)
		b = strconv.AppendQuote(b, kind)
		b = append(b, `,"args":{"value":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `}}`...)
	}
	return append(b, `]}`...)
}

var taskBody = []byte(`{"kind":"double","args":{"value":21}}`)
