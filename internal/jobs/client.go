// Package jobs runs taskd's tasks on River: the River client configured in
// one place (with the workers of the kinds in its registry), the retry
// policy, the middleware that records attempts, and the heartbeat that lets
// any process rescue the tasks of a dead one. Submissions are validated and
// inserted by internal/tasks.
package jobs

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskd/taskd/internal/kinds"
	"github.com/taskd/taskd/internal/kinds/builtin"
	"github.com/taskd/taskd/internal/limits"
	"github.com/taskd/taskd/internal/store"
)

// Defaults of Config.
const (
	// FetchCooldownDefault is River's minimum time between two fetches of a
	// queue. River's own default (100 ms) caps a queue at a few thousand
	// tasks a second and adds up to 100 ms of pickup latency; see
	// docs/PERFORMANCE.md for how this value was chosen.
	FetchCooldownDefault = 2 * time.Millisecond
	// FetchPollIntervalDefault is how often an idle queue polls for work
	// when no insert notification arrives (notifications normally wake it
	// at once).
	FetchPollIntervalDefault = time.Second
	// JobTimeoutDefault bounds one attempt of tasks run in taskd whose
	// kind sets no timeout ("sleep" sets its own) and that set none
	// themselves.
	JobTimeoutDefault = 15 * time.Minute
	// CompletedRetentionDefault is how long completed tasks are kept.
	CompletedRetentionDefault = 24 * time.Hour
	// CancelledRetentionDefault is how long cancelled tasks are kept.
	CancelledRetentionDefault = 24 * time.Hour
	// DiscardedRetentionDefault is how long discarded tasks are kept.
	DiscardedRetentionDefault = 7 * 24 * time.Hour
	// QueueDefaultWorkers is the size of the default queue. A worker is a
	// goroutine while it runs a task and nothing otherwise, so the size is
	// a ceiling on tasks in flight, not a cost: a push attempt waits for
	// its endpoint, and at
	// 100 an untuned process completed 0.58–0.70× what it did at 1,000
	// (docs/PERFORMANCE.md, scenario 1b). An endpoint that takes fewer at
	// once gets a queue of its own or a concurrency limit
	// (docs/OPERATIONS.md, "Sizing").
	QueueDefaultWorkers = 1000
	// MaxAttemptsDefault is a task's max_attempts when the submission sets
	// none.
	MaxAttemptsDefault = 25
	// LeaseLifeMax is the longest one attempt of an external kind may hold
	// its lease, heartbeats included. River's own rescuer, which cannot see
	// leases, is set to look only at jobs running longer than that.
	LeaseLifeMax = 12 * time.Hour
	// LeaseCheckIntervalDefault is how often a process that knows external
	// kinds looks for expired leases.
	LeaseCheckIntervalDefault = time.Second
	// UserAgentDefault is the User-Agent of pushed attempts.
	UserAgentDefault = "taskd"
)

// DefaultQueues returns the default queue sizes: "default" with
// QueueDefaultWorkers workers and "cpu" with CPUWorkersDefault.
func DefaultQueues() map[string]int {
	return map[string]int{river.QueueDefault: QueueDefaultWorkers, builtin.QueueCPU: CPUWorkersDefault()}
}

// CPUWorkersDefault is the cpu queue's default workers: one per core but
// one, so that CPU-bound tasks leave a core to the API. With every core on
// cpu tasks, GET /v1/tasks/{id} took 13 ms at p50 and 41 ms at p99 (0.4
// and 0.8 ms idle); with one worker fewer, 0.3 and 3.4 ms
// (docs/PERFORMANCE.md, scenario 12). More processes, on more machines,
// add capacity; a limit on the queue caps the cluster's total.
func CPUWorkersDefault() int { return max(1, runtime.NumCPU()-1) }

// Config configures a Client.
type Config struct {
	// Store is taskd's database access. Required.
	Store *store.Store
	// Kinds are the kinds this process accepts and works. Defaults to the
	// built-in kinds.
	Kinds *kinds.Registry
	// Logger is handed to River too. Defaults to a discarding logger.
	Logger *slog.Logger
	// Queues maps each queue this process works to its number of workers.
	// Defaults to DefaultQueues() (none with InsertOnly). Which queues
	// submissions may go to is the cluster's business, not this
	// process's: see tasks.Config.Queues.
	Queues map[string]int
	// InsertOnly makes a client that works nothing (`taskd api`): River is
	// configured without Queues or Workers, so it never fetches, never
	// stands for leader and runs none of River's maintenance, and of
	// taskd's own upkeep only the heartbeat runs (so that the slots of
	// limits this process decides for claims count as alive); rescuing
	// dead processes' tasks, expiring leases and cleaning up are left to
	// the processes that work. Inserts use the same River options as a
	// working client's. Queues must be empty.
	InsertOnly bool
	// FetchCooldown: see FetchCooldownDefault.
	FetchCooldown time.Duration
	// FetchPollInterval: see FetchPollIntervalDefault.
	FetchPollInterval time.Duration
	// JobTimeout: see JobTimeoutDefault. -1 means no timeout.
	JobTimeout time.Duration
	// CompletedRetention, CancelledRetention, DiscardedRetention: how long
	// finished tasks are kept before River's cleaner deletes them (and
	// taskd's rows with them); -1 keeps them forever.
	CompletedRetention, CancelledRetention, DiscardedRetention time.Duration
	// HeartbeatInterval: see HeartbeatIntervalDefault. A heartbeat does
	// not wait for the one before, and each may take until the watchdog's
	// bound (RescueAfter minus HeartbeatInterval/2) to finish.
	HeartbeatInterval time.Duration
	// HeartbeatStore is what the heartbeat runs on. Defaults to Store.
	// taskd gives it a pool of its own, of HeartbeatsInFlight
	// connections, so that a beat never queues for a connection behind
	// the API's and River's statements: on a slow link those hold every
	// connection of the shared pool for seconds, and a process whose
	// beats cannot get one for RescueAfter has its tasks cancelled by its
	// watchdog and rescued by the others although it is alive.
	HeartbeatStore *store.Store
	// RescueAfter: see RescueAfterDefault. Must be at least twice
	// HeartbeatInterval. A process whose heartbeats have failed for
	// RescueAfter minus HeartbeatInterval/2, counted from the start of the
	// last that succeeded, cancels its running attempts (with the cause
	// ErrHeartbeatLost) and those that start, until a heartbeat succeeds:
	// two processes run one task at once only when an attempt takes longer
	// than HeartbeatInterval/2 to return once cancelled.
	RescueAfter time.Duration
	// LeaseCheckInterval: see LeaseCheckIntervalDefault.
	LeaseCheckInterval time.Duration
	// UserAgent: see UserAgentDefault.
	UserAgent string
	// Limits are the cluster-wide limits on starting tasks (the
	// configuration file's limits); nil or empty: none.
	Limits *limits.Set
	// FinishedFunc, when set, is told of the tasks of batches that this
	// process brought to a final state (its workers, its rescue of a dead
	// process's tasks, its expiry of leases), after the state was saved:
	// of its workers' tasks, their batches, as the tasks' metadata names
	// them; of the others, the tasks themselves. internal/tasks decides
	// batch callbacks on it. Tasks that River ran outside any batch (no
	// batch_id in their metadata) are left out, so that unbatched work
	// costs nothing more. It must not block: it runs on the goroutine that
	// announces finished tasks. A task or batch may be passed more than
	// once, and some may be missed (River drops events when its
	// subscription is full; a process may die first), so its user needs a
	// periodic recheck of its own.
	FinishedFunc func(Finished)
	// Plugins are handed to River (river.Config.Plugins): hooks and worker
	// middleware that observe every attempt, such as the metrics'. They
	// run whatever DisableAttempts says. Their worker middleware is
	// entered before taskd's own (River puts plugins outermost), and their
	// hooks run around the work alone, after every middleware decided to
	// run it.
	Plugins []rivertype.Plugin
	// DisableAttempts turns off attempt recording. Only the benchmark uses
	// it, to measure what recording costs.
	DisableAttempts bool
	// ID is the River client ID. Defaults to hostname, PID and a random
	// suffix, unique for every start.
	ID string
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if len(c.Queues) == 0 && !c.InsertOnly {
		c.Queues = DefaultQueues()
	}
	if c.Kinds == nil {
		c.Kinds = builtin.Registry()
	}
	c.FetchCooldown = cmp.Or(c.FetchCooldown, FetchCooldownDefault)
	c.FetchPollInterval = cmp.Or(c.FetchPollInterval, FetchPollIntervalDefault)
	c.JobTimeout = cmp.Or(c.JobTimeout, JobTimeoutDefault)
	c.CompletedRetention = cmp.Or(c.CompletedRetention, CompletedRetentionDefault)
	c.CancelledRetention = cmp.Or(c.CancelledRetention, CancelledRetentionDefault)
	c.DiscardedRetention = cmp.Or(c.DiscardedRetention, DiscardedRetentionDefault)
	c.HeartbeatInterval = cmp.Or(c.HeartbeatInterval, HeartbeatIntervalDefault)
	c.RescueAfter = cmp.Or(c.RescueAfter, RescueAfterDefault)
	c.HeartbeatStore = cmp.Or(c.HeartbeatStore, c.Store)
	c.LeaseCheckInterval = cmp.Or(c.LeaseCheckInterval, LeaseCheckIntervalDefault)
	c.UserAgent = cmp.Or(c.UserAgent, UserAgentDefault)
	return c
}

// ConfigError is an invalid setting of Config. Field names it, so that a
// command can name its own flag for it instead of checking the rule again.
type ConfigError struct {
	// Field is the Config field at fault ("RescueAfter").
	Field string
	// Message says what is wrong, without the field's name.
	Message string
}

func (e *ConfigError) Error() string { return "jobs: " + e.Field + " " + e.Message }

// Validate reports the first invalid setting of c, after its defaults are
// filled in, as a *ConfigError. It does not need Store, so that a command
// can check its flags before it connects.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.InsertOnly && len(c.Queues) > 0 {
		return &ConfigError{Field: "Queues", Message: "must be empty for an insert-only client, which works no queue"}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Queues)) {
		if n := c.Queues[name]; n < 1 || n > river.QueueNumWorkersMax {
			return &ConfigError{Field: "Queues", Message: fmt.Sprintf("queue %q: workers must be between 1 and %d", name, river.QueueNumWorkersMax)}
		}
	}
	switch {
	case c.FetchCooldown < river.FetchCooldownMin:
		return &ConfigError{Field: "FetchCooldown", Message: "must be at least " + river.FetchCooldownMin.String()}
	case c.FetchPollInterval < c.FetchCooldown:
		return &ConfigError{Field: "FetchPollInterval", Message: "must be at least FetchCooldown"}
	case c.RescueAfter < 2*c.HeartbeatInterval:
		return &ConfigError{Field: "RescueAfter", Message: "must be at least twice HeartbeatInterval"}
	}
	return nil
}

// Client is taskd's River client with the machinery around it.
type Client struct {
	cfg   Config
	store *store.Store
	// beatStore is what the heartbeat runs on (Config.HeartbeatStore).
	beatStore *store.Store
	kinds     *kinds.Registry
	logger    *slog.Logger
	river     *river.Client[pgx.Tx]
	recorder  *attemptRecorder
	id        string
	hostname  string
	pid       int

	stopMaintain  context.CancelFunc
	maintainDone  chan struct{}
	recorderStart bool
	pushers       []*pushWorker
	hasExternal   bool
	limiter       *limits.Limiter
	limitMW       *limitMiddleware
	// watchdog stops the attempts of a process that cannot heartbeat (nil
	// for an insert-only client, which runs none).
	watchdog *watchdog
	// held are the tasks this process works (nil for an insert-only
	// client), for the rescue of its orphans.
	held *heldSet
	// waited are the running tasks requests wait for (nil without attempt
	// recording), filled by a listener while the client runs.
	waited      *waitedSet
	stopLimiter context.CancelFunc
	limiterDone chan struct{}

	// Announcements of finished tasks (announceFinished).
	stopEvents   func()
	announceDone chan struct{}
}

// NewClient configures a Client. Start runs it.
func NewClient(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if cfg.Store == nil {
		return nil, errors.New("jobs: Config.Store is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hostname, _ := os.Hostname()
	c := &Client{
		cfg:       cfg,
		store:     cfg.Store,
		beatStore: cfg.HeartbeatStore,
		kinds:     cfg.Kinds,
		logger:    cfg.Logger,
		hostname:  hostname,
		pid:       os.Getpid(),
	}
	c.id = cfg.ID
	if c.id == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.id = fmt.Sprintf("%s_%d_%s", cmp.Or(hostname, "taskd"), c.pid, hex.EncodeToString(b[:]))
	}

	// An insert-only client has no Workers at all: River refuses Queues
	// without Workers, and a client without Queues never starts working.
	var workers *river.Workers
	if !cfg.InsertOnly {
		workers = river.NewWorkers()
		if err := c.addWorkers(workers); err != nil {
			return nil, err
		}
	}
	var queues map[string]river.QueueConfig
	for name, n := range cfg.Queues {
		if queues == nil {
			queues = make(map[string]river.QueueConfig, len(cfg.Queues))
		}
		queues[name] = river.QueueConfig{MaxWorkers: n}
	}

	var middleware []rivertype.Middleware
	if !cfg.InsertOnly {
		// Outermost of all: see heldMiddleware.
		c.held = newHeldSet()
		middleware = append(middleware, &heldMiddleware{held: c.held})
	}
	c.limiter = limits.New(limits.Config{Store: cfg.Store, Set: cfg.Limits, Logger: cfg.Logger, ClientID: c.id, Alive: cfg.RescueAfter})
	if !cfg.Limits.Empty() && !cfg.InsertOnly {
		// Outermost but for heldMiddleware: see limitMiddleware.
		c.limitMW = &limitMiddleware{limiter: c.limiter, logger: cfg.Logger}
		middleware = append(middleware, c.limitMW)
	}
	if !cfg.InsertOnly {
		c.watchdog = newWatchdog(cfg.RescueAfter, cfg.HeartbeatInterval, cfg.Logger)
		c.watchdog.held = c.held
		middleware = append(middleware, &watchdogMiddleware{watchdog: c.watchdog})
	}
	if !cfg.DisableAttempts && !cfg.InsertOnly {
		c.recorder = newAttemptRecorder(cfg.Store, cfg.Logger)
		c.recorder.suspect = c.watchdog.overdue
		c.waited = newWaitedSet()
		middleware = append(middleware, &attemptMiddleware{clientID: c.id, recorder: c.recorder, waited: c.waited})
	}

	// River's own rescuer only looks at how long a job has been running, so
	// it cannot tell a dead owner from a slow task; taskd's heartbeat
	// rescue handles dead processes within seconds, and River's stays as a
	// backstop well beyond any attempt's timeout.
	// Also beyond the longest lease, whatever this process's own kinds:
	// River's leader discards running jobs of kinds it has no worker for,
	// and the leader may be a process that knows no external kind. A
	// task's own timeout is at most kinds.GoTimeoutMax, which is
	// LeaseLifeMax (TestTimeoutBoundsUnderRescue).
	longest := max(cfg.Kinds.LongestTimeout(cfg.JobTimeout), LeaseLifeMax)
	rc, err := river.NewClient[pgx.Tx](newDriver(cfg.Store, c.watchdog, c.held, c.recorder, cfg.Logger), &river.Config{
		ID:      c.id,
		Logger:  cfg.Logger,
		Queues:  queues,
		Workers: workers,
		// Processes with different kinds share queues, and a kind worked
		// by external workers has no River worker anywhere.
		FetchOnlyKnownKinds: true,
		// Submissions are checked against the kinds registry (internal/
		// tasks), which also knows the external kinds River has no worker
		// for.
		SkipUnknownJobCheck:         true,
		Middleware:                  middleware,
		Plugins:                     cfg.Plugins,
		RetryPolicy:                 &RetryPolicy{Kinds: cfg.Kinds},
		MaxAttempts:                 MaxAttemptsDefault,
		FetchCooldown:               cfg.FetchCooldown,
		FetchPollInterval:           cfg.FetchPollInterval,
		JobTimeout:                  cfg.JobTimeout,
		RescueStuckJobsAfter:        longest + time.Hour,
		CompletedJobRetentionPeriod: cfg.CompletedRetention,
		CancelledJobRetentionPeriod: cfg.CancelledRetention,
		DiscardedJobRetentionPeriod: cfg.DiscardedRetention,
		ReindexerIndexNames:         reindexerIndexNames(),
	})
	if err != nil {
		return nil, fmt.Errorf("configuring River client: %w", err)
	}
	c.river = rc
	return c, nil
}

// addWorkers adds the River workers of the registry's kinds: Go kinds run
// in process, http kinds push, external kinds get none.
func (c *Client) addWorkers(workers *river.Workers) error {
	cfg := c.cfg
	cfg.Kinds.AddWorkers(workers, c.attemptTimeout)
	for _, k := range cfg.Kinds.All() {
		switch k.Run {
		case kinds.RunHTTP:
			w, err := newPushWorker(k, cfg.Queues[k.Queue], cfg.UserAgent, c.attemptTimeout)
			if err != nil {
				return fmt.Errorf("jobs: kind %q: %w", k.Name, err)
			}
			river.AddWorkerArgs(workers, kinds.RawArgs{KindName: k.Name}, w)
			c.pushers = append(c.pushers, w)
		case kinds.RunExternal:
			// No worker: River must not fetch these (FetchOnlyKnownKinds);
			// external workers claim them (internal/tasks).
			c.hasExternal = true
		}
	}
	return nil
}

// ID returns the client's ID, as recorded in attempts and River's
// attempted_by.
func (c *Client) ID() string { return c.id }

// IsLeader reports whether this client is River's elected leader: the one
// process of a cluster that runs River's maintenance services, and taskd's
// schedules. River does not say, so it reads River's table (river_leader).
// Leadership is a lease: a leader cut off from the database believes it
// leads until its term runs out, while another may have been elected, so
// work that must happen once is guarded in the database as well (as the
// schedules' ticks are).
func (c *Client) IsLeader(ctx context.Context) (bool, error) {
	if c.cfg.InsertOnly {
		return false, nil // it never stands for election
	}
	id, err := c.store.Leader(ctx)
	if err != nil {
		return false, err
	}
	return id == c.id, nil
}

// InsertOnly reports whether the client works nothing (Config.InsertOnly).
func (c *Client) InsertOnly() bool { return c.cfg.InsertOnly }

// River returns the underlying River client (for the River UI).
func (c *Client) River() *river.Client[pgx.Tx] { return c.river }

// Limiter returns the cluster-wide limits, which claims of external kinds
// ask too.
func (c *Client) Limiter() *limits.Limiter { return c.limiter }

// Kinds returns the kinds this client accepts and works.
func (c *Client) Kinds() *kinds.Registry { return c.kinds }

// QueueNames returns the queues this process works, sorted.
func (c *Client) QueueNames() []string {
	return slices.Sorted(maps.Keys(c.cfg.Queues))
}

// HasQueue reports whether this process works queue.
func (c *Client) HasQueue(queue string) bool {
	_, ok := c.cfg.Queues[queue]
	return ok
}

// Start registers the process, then starts working tasks. The process is
// registered first so that its tasks never look ownerless.
func (c *Client) Start(ctx context.Context) error {
	start := time.Now()
	if err := c.store.ProcessRegister(ctx, c.id, c.hostname, c.pid); err != nil {
		return err
	}
	if c.watchdog != nil {
		c.watchdog.beat(start)
	}
	if c.recorder != nil {
		go c.recorder.run()
		c.recorderStart = true
	}
	// The limiter decides before River's workers start and after they
	// stopped.
	lctx, stopLimiter := context.WithCancel(context.WithoutCancel(ctx))
	c.stopLimiter, c.limiterDone = stopLimiter, make(chan struct{})
	go func() {
		defer close(c.limiterDone)
		c.limiter.Run(lctx)
	}()
	if c.cfg.InsertOnly {
		// Nothing to fetch or announce: River is not started (it would
		// refuse, having no queues), and the heartbeat is all the upkeep.
		mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c.stopMaintain, c.maintainDone = cancel, make(chan struct{})
		go func() {
			defer close(c.maintainDone)
			c.heartbeats(mctx)
		}()
		return nil
	}
	eventKinds := []river.EventKind{river.EventKindJobCompleted, river.EventKindJobCancelled, river.EventKindJobFailed}
	if c.limitMW != nil {
		eventKinds = append(eventKinds, river.EventKindJobSnoozed)
	}
	events, stopEvents := c.river.SubscribeConfig(&river.SubscribeConfig{
		ChanSize: finishedChanSize,
		Kinds:    eventKinds,
	})
	c.stopEvents, c.announceDone = stopEvents, make(chan struct{})
	go c.announceFinished(events)
	// River's work context must outlive ctx: cancelling it would stop River
	// without the grace period Stop gives.
	if err := c.river.Start(context.WithoutCancel(ctx)); err != nil {
		c.stopEvents()
		<-c.announceDone
		c.stopEvents = nil
		c.stopLimiter()
		<-c.limiterDone
		return fmt.Errorf("starting River client: %w", err)
	}
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.stopMaintain = cancel
	c.maintainDone = make(chan struct{})
	go func() {
		defer close(c.maintainDone)
		var wg sync.WaitGroup
		// The heartbeat and its watchdog run apart from the rescue and the
		// cleanup, whose statements may take long, so that the heartbeat
		// keeps time.
		wg.Go(func() { c.heartbeats(mctx) })
		wg.Go(func() { c.watchdog.run(mctx) })
		if c.hasExternal {
			wg.Go(func() { c.expireLeases(mctx) })
		}
		if c.waited != nil {
			wg.Go(func() { c.waited.listen(mctx, c.store, c.logger) })
		}
		c.maintain(mctx)
		wg.Wait()
	}()
	return nil
}

// Stop stops fetching new tasks and waits for running ones until ctx is
// done; then it cancels them (River makes them available again) and waits
// up to hardTimeout more. Attempts are written and the process row removed
// before it returns.
func (c *Client) Stop(ctx context.Context, hardTimeout time.Duration) error {
	err := c.river.Stop(ctx)
	if err != nil && ctx.Err() != nil {
		c.logger.Warn("grace period over; cancelling running tasks")
		// River's completions wait for their attempt rows; a write that
		// keeps failing must not hold up the hard stop as well.
		if c.recorder != nil {
			c.recorder.abandonRetries()
		}
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hardTimeout)
		err = c.river.StopAndCancel(hctx)
		cancel()
	}
	if c.held != nil {
		c.held.stopped()
	}
	if c.stopMaintain != nil {
		c.stopMaintain()
		<-c.maintainDone
	}
	if c.stopLimiter != nil {
		c.stopLimiter()
		<-c.limiterDone
	}
	// A worker that ignored even the hard stop may still record an
	// attempt, so the recorder is closed only after a clean stop.
	if c.recorderStart && err == nil {
		c.recorder.close()
	}
	if c.stopEvents != nil {
		// After River stopped: the last completions are announced too.
		c.stopEvents()
		<-c.announceDone
	}
	for _, w := range c.pushers {
		w.client.Close()
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if derr := c.store.ProcessDelete(dctx, c.id); derr != nil {
		err = errors.Join(err, derr)
	}
	if err != nil {
		return fmt.Errorf("stopping River client: %w", err)
	}
	return nil
}

// QueueInfo is a queue as River knows it, with this process's workers.
type QueueInfo struct {
	Name string
	// Paused is River's pause, which every process honours.
	Paused bool
	// Workers is this process's workers for it; 0 when it does not work it.
	Workers int
}

// ErrUnknownQueue is returned for a queue River has no record of.
var ErrUnknownQueue = errors.New("unknown queue")

// Queues lists the queues River has records of (every queue a process
// works or worked lately) and those this process works, by name.
func (c *Client) Queues(ctx context.Context) ([]QueueInfo, error) {
	var res *river.QueueListResult
	err := c.store.Retry(ctx, func() (err error) {
		res, err = c.river.QueueList(ctx, river.NewQueueListParams().First(10_000))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing queues: %w", err)
	}
	byName := map[string]*QueueInfo{}
	for _, q := range res.Queues {
		byName[q.Name] = &QueueInfo{Name: q.Name, Paused: q.PausedAt != nil}
	}
	for name, n := range c.cfg.Queues {
		if byName[name] == nil {
			byName[name] = &QueueInfo{Name: name}
		}
		byName[name].Workers = n
	}
	out := make([]QueueInfo, 0, len(byName))
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		out = append(out, *byName[name])
	}
	return out, nil
}

// PauseQueue pauses a queue in every process: no new task of it starts
// until ResumeQueue; running ones finish. A queue no process works (River
// keeps no row for it) is paused too when it holds unfinished tasks, as an
// external kind's queue does: its claims skip it.
func (c *Client) PauseQueue(ctx context.Context, name string) error {
	// Pausing twice is pausing once: safe to retry.
	err := c.store.Retry(ctx, func() error { return c.river.QueuePause(ctx, name, nil) })
	if errors.Is(err, rivertype.ErrNotFound) {
		paused, err := c.store.QueuePauseUnworked(ctx, name)
		if err != nil {
			return err
		}
		if !paused {
			return ErrUnknownQueue
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("pausing queue %q: %w", name, err)
	}
	return nil
}

// ResumeQueue undoes PauseQueue.
func (c *Client) ResumeQueue(ctx context.Context, name string) error {
	if err := c.store.Retry(ctx, func() error { return c.river.QueueResume(ctx, name, nil) }); err != nil {
		if errors.Is(err, rivertype.ErrNotFound) {
			return ErrUnknownQueue
		}
		return fmt.Errorf("resuming queue %q: %w", name, err)
	}
	return nil
}

// droppedRiverIndexes are River's indexes on river_job that taskd's
// migration 00016 drops (unused by taskd, River and the River UI; see
// docs/PERFORMANCE-indexes.md).
var droppedRiverIndexes = []string{"river_job_args_index", "river_job_metadata_index"}

// reindexerIndexNames is River's reindexer's default list without
// droppedRiverIndexes, which it would otherwise look for every day and
// warn about.
func reindexerIndexNames() []string {
	return slices.DeleteFunc(river.ReindexerIndexNamesDefault(), func(name string) bool {
		return slices.Contains(droppedRiverIndexes, name)
	})
}
