package metrics

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskd/taskd/internal/store"
)

// poolCollector reports the database pool's statistics, read from memory
// on every scrape (pgxpool.Pool.Stat costs no query).
type poolCollector struct {
	pool                                    *pgxpool.Pool
	acquired, idle, total, maxConns         *prometheus.Desc
	acquires, acquireSeconds, emptyAcquires *prometheus.Desc
}

func newPoolCollector(s *store.Store) *poolCollector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &poolCollector{
		pool:           s.Pool(),
		acquired:       d("taskd_db_pool_acquired_conns", "Connections of this process's pool in use now."),
		idle:           d("taskd_db_pool_idle_conns", "Connections of this process's pool idle now."),
		total:          d("taskd_db_pool_total_conns", "Connections of this process's pool open now (acquired, idle and being opened)."),
		maxConns:       d("taskd_db_pool_max_conns", "Most connections this process's pool opens (--db-max-conns)."),
		acquires:       d("taskd_db_pool_acquires_total", "Connections acquired from this process's pool."),
		acquireSeconds: d("taskd_db_pool_acquire_duration_seconds_total", "Time spent acquiring connections from this process's pool; divided by taskd_db_pool_acquires_total, the mean wait."),
		emptyAcquires:  d("taskd_db_pool_empty_acquires_total", "Acquires that had to wait for a connection because none was idle."),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.acquired, c.idle, c.total, c.maxConns, c.acquires, c.acquireSeconds, c.emptyAcquires} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.pool.Stat()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	n := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	g(c.acquired, float64(st.AcquiredConns()))
	g(c.idle, float64(st.IdleConns()))
	g(c.total, float64(st.TotalConns()))
	g(c.maxConns, float64(st.MaxConns()))
	n(c.acquires, float64(st.AcquireCount()))
	n(c.acquireSeconds, st.AcquireDuration().Seconds())
	n(c.emptyAcquires, float64(st.EmptyAcquireCount()))
}
