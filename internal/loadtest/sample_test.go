package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskd/taskd/internal/taskdtest"
)

// loadTables are the tables whose bloat is sampled: River's, and taskd's
// that take rows per task or per submission (task_attempts one per
// attempt, batches one per batch, idempotency_keys one per single here).
var loadTables = []string{"river_job", "task_attempts", "batches", "idempotency_keys"}

// sample is what one look at taskd and its database saw.
type sample struct {
	At time.Duration // since the first submission

	RSS        int64   // taskd's resident memory, bytes (VmRSS)
	Goroutines float64 // go_goroutines of taskd's /metrics
	// PoolTotal and PoolAcquired are taskd's pool's open and acquired
	// connections (taskd_db_pool_total_conns, _acquired_conns).
	PoolTotal, PoolAcquired float64
	// Backends are PostgreSQL's backends of application_name 'taskd' on
	// the test's database: the pool's and the LISTEN connections outside
	// it.
	Backends int

	Tables map[string]tableSample

	Rows               int64 // river_job rows, every state
	Available, Running int64 // river_job rows in those states

	Acked, Final int // the ledger's counts so far

	// SingleP99 and BatchP99 are the p99 submit latencies of the window
	// since the last sample; SingleN and BatchN the requests in it.
	SingleP99, BatchP99 time.Duration
	SingleN, BatchN     int
}

// tableSample is one table's statistics (pg_stat_user_tables, sizes).
type tableSample struct {
	Live, Dead  int64 // n_live_tup, n_dead_tup
	Autovacuums int64 // autovacuum_count so far
	TotalBytes  int64 // pg_total_relation_size: heap, indexes, TOAST
	IndexBytes  int64 // pg_indexes_size
}

// sampler samples taskd every interval until its context is done.
type sampler struct {
	t          *testing.T
	proc       *taskdtest.Process
	pool       *pgxpool.Pool
	httpClient *http.Client
	load       *load
	start      time.Time

	mu  sync.Mutex
	got []sample
}

func (s *sampler) run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		// The first sample at once: the state before the load.
		smp, err := s.sample(ctx)
		switch {
		case err == nil:
			s.mu.Lock()
			s.got = append(s.got, smp)
			s.mu.Unlock()
		case ctx.Err() == nil:
			s.t.Errorf("sample at %s: %v", time.Since(s.start).Round(time.Second), err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *sampler) samples() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

func (s *sampler) sample(ctx context.Context) (sample, error) {
	smp := sample{At: time.Since(s.start), Tables: map[string]tableSample{}}
	var err error
	if smp.RSS, err = readRSS(s.proc.PID()); err != nil {
		return smp, err
	}
	m, err := scrape(ctx, s.httpClient, s.proc.URL+"/metrics",
		"go_goroutines", "taskd_db_pool_total_conns", "taskd_db_pool_acquired_conns")
	if err != nil {
		return smp, err
	}
	smp.Goroutines, smp.PoolTotal, smp.PoolAcquired = m[0], m[1], m[2]

	err = s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE application_name = 'taskd' AND datname = current_database()`).Scan(&smp.Backends)
	if err != nil {
		return smp, fmt.Errorf("error counting taskd's backends: %w", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT relname, n_live_tup, n_dead_tup, autovacuum_count,
			pg_total_relation_size(relid), pg_indexes_size(relid)
		FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = ANY($1)`, loadTables)
	if err != nil {
		return smp, fmt.Errorf("error reading table statistics: %w", err)
	}
	for rows.Next() {
		var name string
		var ts tableSample
		if err := rows.Scan(&name, &ts.Live, &ts.Dead, &ts.Autovacuums, &ts.TotalBytes, &ts.IndexBytes); err != nil {
			rows.Close()
			return smp, fmt.Errorf("error reading table statistics: %w", err)
		}
		smp.Tables[name] = ts
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return smp, fmt.Errorf("error reading table statistics: %w", err)
	}
	err = s.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE state = 'available'),
		count(*) FILTER (WHERE state = 'running') FROM river_job`).Scan(&smp.Rows, &smp.Available, &smp.Running)
	if err != nil {
		return smp, fmt.Errorf("error counting tasks: %w", err)
	}

	c := s.load.ledger.counts()
	smp.Acked, smp.Final = c.acked, c.final
	single, batch := s.load.window.take()
	smp.SingleP99, smp.BatchP99 = quantile(single, 0.99), quantile(batch, 0.99)
	smp.SingleN, smp.BatchN = len(single), len(batch)
	return smp, nil
}

// readRSS reads VmRSS of /proc/PID/status, in bytes.
func readRSS(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("error reading taskd's memory: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "VmRSS:	   51234 kB"
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("error parsing VmRSS %q: %w", rest, err)
			}
			return kb * 1024, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("error reading taskd's memory: %w", err)
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// scrape GETs a Prometheus text exposition and returns the values of the
// unlabelled series names, failing if one is missing.
func scrape(ctx context.Context, c *http.Client, url string, names ...string) ([]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("error scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("error scraping %s: status %d", url, resp.StatusCode)
	}
	values := make([]float64, len(names))
	found := make([]bool, len(names))
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if i := slices.Index(names, name); i >= 0 {
			if values[i], err = strconv.ParseFloat(strings.TrimSpace(value), 64); err != nil {
				return nil, fmt.Errorf("error parsing %s %q: %w", name, value, err)
			}
			found[i] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("error scraping %s: %w", url, err)
	}
	for i, ok := range found {
		if !ok {
			return nil, fmt.Errorf("%s has no %s", url, names[i])
		}
	}
	return values, nil
}

// latencies collects submit latencies, singles and batches apart.
type latencies struct {
	mu            sync.Mutex
	single, batch []time.Duration
}

func (l *latencies) add(d time.Duration, batch bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if batch {
		l.batch = append(l.batch, d)
	} else {
		l.single = append(l.single, d)
	}
}

// take returns the latencies collected and starts over.
func (l *latencies) take() (single, batch []time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	single, batch = l.single, l.batch
	l.single, l.batch = nil, nil
	return single, batch
}

func (l *latencies) quantile(q float64, batch bool) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if batch {
		return quantile(l.batch, q).Round(time.Microsecond * 100)
	}
	return quantile(l.single, q).Round(time.Microsecond * 100)
}

// quantile is the nearest-rank q-quantile of ds, 0 for none.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[max(0, int(math.Ceil(q*float64(len(s))))-1)]
}
