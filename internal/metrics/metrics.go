// Package metrics is taskd's Prometheus instrumentation: one registry per
// process (never the global one) holding the Go and process collectors and
// taskd's own series, served by Handler as GET /metrics.
//
// Counters count what this process did, so summing them across processes
// gives the cluster's. The gauges read from the database (taskd_queue_*)
// are the same in every process; a scrape reads them again when the last
// read is older than the refresh interval, once for all the scrapes at
// that moment, so that any number of scrapers costs the database at most
// one query per interval, and a process nobody scrapes costs it nothing.
// See docs/OPERATIONS.md.
package metrics

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/taskd/taskd/internal/store"
)

// RefreshIntervalDefault is how often Run reads the leadership, and the
// most a scrape's queue stats may be older than the scrape before it reads
// them again.
const RefreshIntervalDefault = 5 * time.Second

// QueueStates are the unfinished states taskd_queue_tasks reports, each
// queue with all of them (0 when it has none), so that an alert on one
// state of one queue never sees its series vanish.
var QueueStates = []string{"available", "pending", "retryable", "running", "scheduled"}

// Buckets of the duration histograms, in seconds.
var (
	// attemptBuckets span taskd's tasks: milliseconds to the 15-minute
	// default timeout.
	attemptBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900}
	// httpBuckets reach 60 s, the longest ?wait=.
	httpBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
)

// Config configures Metrics.
type Config struct {
	// Store is read for the queue gauges and its pool for the pool
	// gauges. Required.
	Store *store.Store
	// Queues are queues reported even while they hold no unfinished task
	// (the configuration's queues); queues with tasks are reported
	// anyway.
	Queues []string
	// LeaderFunc reports whether this process is River's leader
	// (jobs.Client.IsLeader); nil: taskd_leader is always 0 (a process
	// without a River client that elects).
	LeaderFunc func(context.Context) (bool, error)
	// WaitersFunc returns the number of waiting ?wait= requests
	// (tasks.Service.Waiters); nil: taskd_waiters is always 0.
	WaitersFunc func() int
	// RefreshInterval: see RefreshIntervalDefault.
	RefreshInterval time.Duration
	// Logger reports failed refreshes. Defaults to a discarding logger.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	c.RefreshInterval = cmp.Or(c.RefreshInterval, RefreshIntervalDefault)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Metrics holds a process's registry and series.
type Metrics struct {
	cfg Config
	reg *prometheus.Registry

	inserted        *prometheus.CounterVec
	attempts        *prometheus.CounterVec
	attemptDuration *prometheus.HistogramVec
	httpRequests    *prometheus.CounterVec
	httpDuration    *prometheus.HistogramVec
	// httpSeries and attemptSeries hold the series of the label values
	// seen (seriesCache).
	httpSeries, attemptSeries seriesCache
	leader                    prometheus.Gauge
	queues                    *queueCollector
}

// New returns Metrics with every series registered. Run refreshes the
// leadership; the queue gauges are read when scraped (queueCollector).
func New(cfg Config) (*Metrics, error) {
	cfg = cfg.withDefaults()
	if cfg.Store == nil {
		return nil, errors.New("metrics: Config.Store is required")
	}
	m := &Metrics{
		cfg: cfg,
		reg: prometheus.NewRegistry(),
		inserted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskd_tasks_inserted_total",
			Help: "Tasks this process inserted (submissions, batches, batch callbacks, schedules), counted once their transaction committed.",
		}, []string{"kind", "queue"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskd_attempts_total",
			Help: "Attempts this process's River workers finished, by outcome (the outcomes of the tasks' attempt rows).",
		}, []string{"kind", "queue", "outcome"}),
		attemptDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "taskd_attempt_duration_seconds",
			Help:    "How long the attempts this process's River workers finished ran.",
			Buckets: attemptBuckets,
		}, []string{"kind", "queue"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskd_http_requests_total",
			Help: "HTTP requests this process answered, by route pattern (\"unmatched\" for no route), method and status code.",
		}, []string{"route", "method", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "taskd_http_request_duration_seconds",
			Help:    "How long this process took to answer HTTP requests, by route pattern and method (?wait= included).",
			Buckets: httpBuckets,
		}, []string{"route", "method"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "taskd_leader",
			Help: "1 when this process is River's elected leader (maintenance, schedules), else 0.",
		}),
		queues: newQueueCollector(cfg.Queues, cfg.Store.QueueStats, cfg.RefreshInterval, cfg.Logger),
	}
	waiters := cfg.WaitersFunc
	if waiters == nil {
		waiters = func() int { return 0 }
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.inserted, m.attempts, m.attemptDuration, m.httpRequests, m.httpDuration, m.leader, m.queues,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "taskd_waiters",
			Help: "Requests of this process waiting for tasks to finish (?wait=).",
		}, func() float64 { return float64(waiters()) }),
		newPoolCollector(cfg.Store),
	)
	return m, nil
}

// Registry returns the registry, for tests and for adding series.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in Prometheus's text format (or
// OpenMetrics, when asked).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, EnableOpenMetrics: true})
}

// TaskInserted counts one inserted task (tasks.Config.InsertedFunc).
func (m *Metrics) TaskInserted(kind, queue string) {
	m.inserted.WithLabelValues(kind, queue).Inc()
}

// ObserveHTTP counts one answered request. route is chi's pattern, or
// "unmatched"; method one the API knows, or "other".
func (m *Metrics) ObserveHTTP(route, method string, code int, d time.Duration) {
	obs := m.httpSeries.get(seriesKey{a: route, b: method, n: code}, func() *series {
		return &series{count: m.httpRequests.WithLabelValues(route, method, statusText(code)), duration: m.httpDuration.WithLabelValues(route, method)}
	})
	obs.count.Inc()
	obs.duration.Observe(d.Seconds())
}

// observeAttempt counts one finished attempt.
func (m *Metrics) observeAttempt(kind, queue, outcome string, d time.Duration) {
	obs := m.attemptSeries.get(seriesKey{a: kind, b: queue, c: outcome}, func() *series {
		return &series{count: m.attempts.WithLabelValues(kind, queue, outcome), duration: m.attemptDuration.WithLabelValues(kind, queue)}
	})
	obs.count.Inc()
	obs.duration.Observe(d.Seconds())
}

// seriesKey is the label values of a counter and a histogram observed
// together; n is a status code where one is a label.
type seriesKey struct {
	a, b, c string
	n       int
}

// series is a counter's and a histogram's children observed together.
type series struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// seriesCache holds the series of each key seen (seriesKey to *series),
// so that an observation costs one map lookup rather than two label
// hashes and vector lookups (about 2 % of taskd's CPU under a GET load).
// Label values come from bounded sets (route patterns, methods, statuses,
// configured kinds and queues, outcomes), so it grows no larger than the
// vectors themselves.
type seriesCache struct{ m sync.Map }

// get returns k's series, made by newSeries the first time.
func (c *seriesCache) get(k seriesKey, newSeries func() *series) *series {
	v, ok := c.m.Load(k)
	if !ok {
		v, _ = c.m.LoadOrStore(k, newSeries())
	}
	return v.(*series)
}

// Run refreshes the leadership gauge at once and then every
// RefreshInterval, until ctx ends. A failed refresh keeps the last value
// and is logged once until a refresh succeeds again. (The queue gauges are
// read by the scrapes that need them: queueCollector.)
func (m *Metrics) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.RefreshInterval)
	defer t.Stop()
	failing := false
	for {
		err := m.Refresh(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			failing = true
			m.cfg.Logger.Warn("refreshing metrics failed; keeping the last values", slog.String("error", err.Error()))
		case err == nil && failing:
			failing = false
			m.cfg.Logger.Info("refreshing metrics works again")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Refresh reads the leadership once.
func (m *Metrics) Refresh(ctx context.Context) error {
	if m.cfg.LeaderFunc == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.RefreshInterval)
	defer cancel()
	leads, err := m.cfg.LeaderFunc(ctx)
	if err != nil {
		return err
	}
	if leads {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
	return nil
}

// queueCollector reports the queue stats as one consistent snapshot, read
// when a scrape finds the last read older than maxAge. The stats count
// the unfinished rows of river_job, which costs PostgreSQL more the
// longer the queues are (about 0.1 s at a backlog of 200,000 tasks,
// docs/PERFORMANCE.md, "Round 2, eighth run"): read on a timer, they cost
// that in every process every interval, scraped or not.
type queueCollector struct {
	tasks, oldest *prometheus.Desc
	configured    []string
	read          func(context.Context) (map[string]*store.QueueStats, error)
	maxAge        time.Duration
	logger        *slog.Logger
	now           func() time.Time // time.Now; tests set their own

	mu      sync.Mutex
	stats   map[string]*store.QueueStats
	readAt  time.Time     // of the last read, whether or not it succeeded
	reading chan struct{} // closed when the read under way ends; nil: none
	failing bool
}

func newQueueCollector(configured []string, read func(context.Context) (map[string]*store.QueueStats, error), maxAge time.Duration, logger *slog.Logger) *queueCollector {
	return &queueCollector{
		tasks: prometheus.NewDesc("taskd_queue_tasks",
			"Unfinished tasks of each queue by state, from the database (the same in every process).",
			[]string{"queue", "state"}, nil),
		oldest: prometheus.NewDesc("taskd_queue_oldest_available_age_seconds",
			"Age of each queue's oldest task ready to run (0 when none is), from the database (the same in every process).",
			[]string{"queue"}, nil),
		configured: configured,
		read:       read,
		maxAge:     maxAge,
		logger:     logger,
		now:        time.Now,
	}
}

// current returns the stats, read again first when the last read is
// maxAge old: one read, within maxAge, for every scrape that comes
// meanwhile. A read that fails keeps the last values (nil before the
// first success), is logged once until one succeeds again, and is not
// tried again before maxAge has passed.
func (c *queueCollector) current() map[string]*store.QueueStats {
	c.mu.Lock()
	if !c.readAt.IsZero() && c.now().Sub(c.readAt) < c.maxAge {
		defer c.mu.Unlock()
		return c.stats
	}
	if c.reading == nil {
		c.reading = make(chan struct{})
		go c.readOnce(c.reading)
	}
	wait := c.reading
	c.mu.Unlock()
	<-wait
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// readOnce reads the stats and then closes done.
func (c *queueCollector) readOnce(done chan struct{}) {
	// Not the scrape's context: the read serves the scrapes that come
	// while it runs too.
	ctx, cancel := context.WithTimeout(context.Background(), c.maxAge)
	stats, err := c.read(ctx)
	cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readAt, c.reading = c.now(), nil
	switch {
	case err == nil:
		c.stats = stats
		if c.failing {
			c.failing = false
			c.logger.Info("reading the queue stats for the metrics works again")
		}
	case !c.failing:
		c.failing = true
		c.logger.Warn("reading the queue stats for the metrics failed; keeping the last values", slog.String("error", err.Error()))
	}
	close(done)
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.tasks
	ch <- c.oldest
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	stats := c.current()
	if stats == nil {
		return // not read yet: no value rather than a false 0
	}
	names := map[string]bool{}
	for _, q := range c.configured {
		names[q] = true
	}
	for q := range stats {
		names[q] = true
	}
	for _, q := range slices.Sorted(maps.Keys(names)) {
		st := stats[q]
		for _, state := range QueueStates {
			var n int64
			if st != nil {
				n = st.Counts[state]
			}
			ch <- prometheus.MustNewConstMetric(c.tasks, prometheus.GaugeValue, float64(n), q, state)
		}
		age := 0.0
		if st != nil && st.OldestAvailable != nil {
			age = st.OldestAvailable.Seconds()
		}
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, age, q)
	}
}

// statusText is a status code as a label value.
func statusText(code int) string {
	if code < 100 || code > 999 {
		return "other"
	}
	return string([]byte{byte('0' + code/100), byte('0' + code/10%10), byte('0' + code%10)})
}
