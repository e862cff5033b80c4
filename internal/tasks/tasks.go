// Package tasks is taskd's use cases on tasks: validating and submitting
// tasks and batches (with idempotency keys), cancelling and retrying them,
// inserting the callbacks of batches once they are done.
// The HTTP handlers, pull claims and schedules call it, so that every way
// in shares one validation path. It runs on River through
// internal/jobs and on taskd's rows through internal/store.
package tasks

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/store"
)

// Config configures a Service.
type Config struct {
	// Store is taskd's database access. Required.
	Store *store.Store
	// Jobs is the River client the tasks are inserted with, and whose
	// kinds submissions are validated against. Required.
	Jobs *jobs.Client
	// Logger reports what the claim listener cannot tell a caller.
	// Defaults to a discarding logger.
	Logger *slog.Logger
	// ClaimRecheckInterval is how often, while claims wait, one query
	// looks for claimable tasks that no notification announced. Defaults
	// to ClaimRecheckIntervalDefault.
	ClaimRecheckInterval time.Duration
	// FinishRecheckInterval: see FinishRecheckIntervalDefault.
	FinishRecheckInterval time.Duration
	// ThenRecheckInterval: see ThenRecheckIntervalDefault.
	ThenRecheckInterval time.Duration
	// Schedules are the cluster's periodic tasks, which this process
	// enqueues whenever it is River's leader (StartSchedules). Each one's
	// task is validated as a submission when the Service is made, with
	// errors naming "schedules[i]".
	Schedules []Schedule
	// Queues are the cluster's configured queues: those a submission (or
	// a schedule's task) may go to, whichever process receives it. They
	// are not the queues this process works: an insert-only process (taskd
	// api) works none and accepts tasks for all of them, and the leader
	// enqueues every schedule whatever it works itself. A queue outside
	// them is refused (422), so that no task waits for a worker nobody
	// configured. Defaults to the queues of Jobs.
	Queues []string
	// InsertedFunc, when set, is called once for every task this process
	// inserted (submissions, batches, batch callbacks, schedules' ticks),
	// after its transaction committed: a rolled-back transaction, a
	// repeated idempotent request or a retried transaction count nothing.
	// The metrics count inserted tasks with it. It must not block.
	InsertedFunc func(kind, queue string)
}

// ClaimRecheckIntervalDefault: River sends at most one insert notification
// per queue per fetch cooldown, a notification sent while the listener
// reconnects is lost, and a retried task becomes ready at its scheduled
// time without any; the recheck bounds how long such a task waits.
const ClaimRecheckIntervalDefault = time.Second

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.ClaimRecheckInterval = cmp.Or(c.ClaimRecheckInterval, ClaimRecheckIntervalDefault)
	c.FinishRecheckInterval = cmp.Or(c.FinishRecheckInterval, FinishRecheckIntervalDefault)
	c.ThenRecheckInterval = cmp.Or(c.ThenRecheckInterval, ThenRecheckIntervalDefault)
	if c.Queues == nil && c.Jobs != nil {
		c.Queues = c.Jobs.QueueNames()
	}
	return c
}

func (c Config) validate() error {
	if c.Store == nil || c.Jobs == nil {
		return errors.New("tasks: Config.Store and Config.Jobs are required")
	}
	return nil
}

// Service submits, cancels and retries tasks, and hands tasks of external
// kinds to the workers that claim them. Close stops its claim listener.
type Service struct {
	store  *store.Store
	jobs   *jobs.Client
	river  *river.Client[pgx.Tx]
	logger *slog.Logger
	// rules are the kinds and queues submissions are checked against.
	rules  Rules
	claims *broker
	// completions groups the completions of external workers.
	completions *completer
	// submits groups the single submissions.
	submits *submitter
	// waiters holds the requests waiting for tasks to finish.
	waiters *finishWaiters
	// then inserts the callbacks of batches (RunBatchCallbacks).
	then *thenRunner
	// sched enqueues the schedules' ticks.
	sched *scheduler
	// insertedFunc is Config.InsertedFunc.
	insertedFunc func(kind, queue string)
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Service{
		store: cfg.Store, jobs: cfg.Jobs, river: cfg.Jobs.River(), logger: cfg.Logger,
		rules:   Rules{Kinds: cfg.Jobs.Kinds(), Queues: slices.Sorted(slices.Values(cfg.Queues))},
		claims:  newBroker(cfg.Store, cfg.Logger, cfg.ClaimRecheckInterval),
		waiters: newFinishWaiters(cfg.Store, cfg.Logger, cfg.FinishRecheckInterval),

		insertedFunc: cfg.InsertedFunc,
	}
	s.then = newThenRunner(s, cfg.Logger, cfg.ThenRecheckInterval)
	s.completions = newCompleter(cfg.Store, s.then.finished)
	s.submits = newSubmitter(s, submitWriters)
	var err error
	if s.sched, err = newScheduler(s, s.rules, cfg.Schedules); err != nil {
		return nil, err
	}
	return s, nil
}

// RunBatchCallbacks inserts the callbacks of batches ("then") as their
// batches become done, until ctx ends; every process that runs tasks runs
// it once (see thenRunner). Before it returns, it decides the batches of
// the tasks that TasksFinished handed it, so cancel ctx after the River
// client stopped.
func (s *Service) RunBatchCallbacks(ctx context.Context) {
	s.then.run(ctx)
}

// TasksFinished tells the batch callbacks that tasks reached a final state
// (jobs.Config.FinishedFunc). It never blocks.
func (s *Service) TasksFinished(f jobs.Finished) {
	s.then.finished(f.Tasks)
	s.then.batchesFinished(f.Batches)
}

// Close stops the schedules and the listener of waiting claims; claims
// still waiting return what they have.
func (s *Service) Close() {
	s.sched.stop()
	s.claims.close()
	s.waiters.close()
	s.completions.close()
	s.submits.close()
}

// Waiters returns the number of requests of this process waiting for
// tasks to finish (?wait=) now.
func (s *Service) Waiters() int { return int(s.waiters.waiting.Load()) }

// inserted reports committed inserts to Config.InsertedFunc.
func (s *Service) inserted(params ...river.InsertManyParams) {
	if s.insertedFunc == nil {
		return
	}
	for _, p := range params {
		s.insertedFunc(p.Args.Kind(), cmp.Or(p.InsertOpts.Queue, river.QueueDefault))
	}
}

// WaitFinished waits until every task of ids is in a final state
// (completed, cancelled, discarded) or gone, or d has passed; it returns
// ctx's error when ctx ends first (the client left). Waiting is driven by
// the announcements of every process (see finishWaiters), not by polling.
func (s *Service) WaitFinished(ctx context.Context, ids []int64, d time.Duration) error {
	return s.waiters.wait(ctx, ids, d)
}
