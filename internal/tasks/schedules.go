package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/taskd/taskd/internal/schedule"
	"github.com/taskd/taskd/internal/store"
)

// SchedulePollInterval is the longest the scheduler sleeps between two
// looks at River's leadership. It bounds how long a tick waits when the
// leader that should have enqueued it died: its successor enqueues it
// within this much of being elected.
const SchedulePollInterval = time.Second

// Schedule is a periodic task: Task is enqueued at every tick of Spec, once
// across the whole cluster, by whichever process is River's leader.
type Schedule struct {
	// Name identifies the schedule across processes and restarts: the
	// database remembers its last tick under it, and its tasks carry it
	// (metadata "schedule").
	Name string
	Spec schedule.Spec
	// Task is the task enqueued at each tick, as a submission would give
	// it; it is validated as one when the Service is made. Delay and
	// ScheduledAt are not for schedules.
	Task TaskParams
}

// ScheduleInfo is a schedule with what the database remembers of it.
type ScheduleInfo struct {
	Name  string
	Spec  schedule.Spec
	Kind  string
	Queue string
	// LastTaskID is the task the latest tick enqueued; 0 before the first.
	LastTaskID int64
	// LastEnqueuedAt is when that task was enqueued; nil before the first.
	LastEnqueuedAt *time.Time
	// NextRunAt is when the schedule's next task is due: its next tick, or
	// its latest one while that waits for a leader to enqueue it. Zero for
	// a cron expression with no tick within 5 years.
	NextRunAt time.Time
}

// Task metadata of scheduled tasks.
const (
	// MetadataSchedule names the schedule that enqueued a task.
	MetadataSchedule = "schedule"
	// MetadataScheduleTick is the tick (RFC 3339, UTC) it was enqueued for;
	// no two tasks of one schedule have the same.
	MetadataScheduleTick = "schedule_tick"
)

// scheduled is a validated Schedule.
type scheduled struct {
	Schedule
	params river.InsertManyParams
	// taken is the latest tick this process knows to be taken, by itself
	// or another; zero when it does not know (it has just been elected).
	taken time.Time
}

// scheduler enqueues the ticks of the schedules while its process is
// River's leader. It runs in every process, so that whichever is elected
// takes over; a tick is taken in the transaction that inserts its task
// (store.ScheduleTickTx), so that two processes that both believe they lead
// cannot enqueue it twice.
type scheduler struct {
	store  *store.Store
	river  *river.Client[pgx.Tx]
	logger *slog.Logger
	list   []*scheduled
	// notify announces inserted tasks to waiting claims (notifyClaims).
	notify func(context.Context, pgx.Tx, []river.InsertManyParams) error
	// inserted reports a committed tick's task (Service.inserted).
	inserted func(...river.InsertManyParams)
	// isLeader and now are the River client's leadership and the clock;
	// tests replace them.
	isLeader func(context.Context) (bool, error)
	now      func() time.Time
	poll     time.Duration

	// leading is set while the last look found this process leading; it
	// is the loop's alone.
	leading bool
	// failing is set after a step failed (logError); the loop's alone.
	failing bool

	startOnce sync.Once
	stopOnce  sync.Once
	cancel    context.CancelFunc
	done      chan struct{}
}

// newScheduler validates the schedules against rules; errors name
// "schedules[i]" and the field, as the configuration file's paths do.
func newScheduler(s *Service, rules Rules, list []Schedule) (*scheduler, error) {
	sc := &scheduler{
		store: s.store, river: s.river, logger: s.logger, notify: s.notifyClaims, inserted: s.inserted,
		isLeader: s.jobs.IsLeader, now: time.Now, poll: SchedulePollInterval,
		done: make(chan struct{}),
	}
	var errs []FieldError
	seen := map[string]bool{}
	now := time.Now()
	for i, sch := range list {
		prefix := "schedules[" + strconv.Itoa(i) + "]"
		switch {
		case sch.Name == "":
			errs = append(errs, FieldError{Field: prefix + ".name", Message: "is required"})
		case seen[sch.Name]:
			errs = append(errs, FieldError{Field: prefix + ".name", Message: fmt.Sprintf("schedule %q is given twice", sch.Name)})
		}
		seen[sch.Name] = true
		if sch.Spec.IsZero() {
			errs = append(errs, FieldError{Field: prefix, Message: "has no cron or every"})
		}
		if sch.Task.Delay != nil || sch.Task.ScheduledAt != nil {
			errs = append(errs, FieldError{Field: prefix, Message: "a schedule's task has no delay or scheduled_at: it is due at its tick"})
		}
		params, ferrs := rules.prepare(&sch.Task, prefix, now, false)
		errs = append(errs, ferrs...)
		sc.list = append(sc.list, &scheduled{Schedule: sch, params: params})
	}
	if len(errs) > 0 {
		return nil, &ValidationError{Errors: errs}
	}
	return sc, nil
}

// start runs the loop until stop; it does nothing without schedules.
func (sc *scheduler) start() {
	if len(sc.list) == 0 {
		return
	}
	sc.startOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		sc.cancel = cancel
		go sc.run(ctx)
	})
}

// stop ends the loop and waits for it; a tick being enqueued is rolled
// back or committed, never half done.
func (sc *scheduler) stop() {
	sc.stopOnce.Do(func() {
		sc.startOnce.Do(func() { close(sc.done) }) // never started
		if sc.cancel != nil {
			sc.cancel()
		}
		<-sc.done
	})
}

func (sc *scheduler) run(ctx context.Context) {
	defer close(sc.done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		timer.Reset(sc.step(ctx))
	}
}

// step enqueues the due ticks if this process leads, and returns how long
// to sleep: until the next tick, and at most the poll interval, so that a
// process elected meanwhile takes over within it.
func (sc *scheduler) step(ctx context.Context) time.Duration {
	if err := sc.lead(ctx); err != nil {
		sc.logError(ctx, err)
	} else {
		sc.failing = false
	}
	return sc.wait(sc.now())
}

// lead enqueues the due ticks while this process is River's leader.
func (sc *scheduler) lead(ctx context.Context) error {
	lead, err := sc.isLeader(ctx)
	if err != nil || !lead {
		sc.leading = false
		return err
	}
	if !sc.leading {
		// Newly elected: what the last leader took is unknown here.
		for _, s := range sc.list {
			s.taken = time.Time{}
		}
		if err := sc.recordNew(ctx); err != nil {
			return err
		}
		sc.leading = true
	}
	return sc.enqueueDue(ctx)
}

// recordNew gives the schedules seen for the first time their row, at
// their latest tick (or now, before their first), which is not run: a new
// schedule starts at its next tick.
func (sc *scheduler) recordNew(ctx context.Context) error {
	now := sc.now()
	names := make([]string, len(sc.list))
	ticks := make([]time.Time, len(sc.list))
	for i, s := range sc.list {
		names[i] = s.Name
		ticks[i] = s.Spec.Latest(now)
		if ticks[i].IsZero() {
			ticks[i] = now
		}
	}
	return sc.store.ScheduleInsertMissing(ctx, names, ticks)
}

// enqueueDue enqueues, for each schedule, its latest tick if it is later
// than the last one taken. After a gap (no leader for a while, the whole
// cluster down) that is one task for the latest tick, not one per tick
// missed. A tick that fails is tried again at the next step.
func (sc *scheduler) enqueueDue(ctx context.Context) error {
	now := sc.now()
	var errs []error
	for _, s := range sc.list {
		tick := s.Spec.Latest(now)
		if tick.IsZero() || !tick.After(s.taken) {
			continue
		}
		id, err := sc.enqueue(ctx, s, tick)
		if err != nil {
			errs = append(errs, fmt.Errorf("schedule %q, tick %s: %w", s.Name, tick.Format(time.RFC3339Nano), err))
			continue
		}
		s.taken = tick
		if id != 0 {
			sc.logger.DebugContext(ctx, "schedules: enqueued", slog.String("schedule", s.Name), slog.Time("tick", tick), slog.Int64("task_id", id))
		}
	}
	return errors.Join(errs...)
}

// enqueue takes tick for s and inserts its task, in one transaction. It
// returns the task's ID, or 0 when the tick had been taken already.
func (sc *scheduler) enqueue(ctx context.Context, s *scheduled, tick time.Time) (int64, error) {
	meta, err := json.Marshal(map[string]string{
		MetadataSchedule:     s.Name,
		MetadataScheduleTick: tick.UTC().Format(time.RFC3339Nano),
	})
	if err != nil {
		return 0, fmt.Errorf("encoding metadata: %w", err)
	}
	opts := *s.params.InsertOpts
	opts.Metadata = meta
	params := river.InsertManyParams{Args: s.params.Args, InsertOpts: &opts}
	var id int64
	err = sc.store.WithTx(ctx, func(tx pgx.Tx) error {
		id = 0
		ok, err := sc.store.ScheduleTickTx(ctx, tx, s.Name, tick)
		if err != nil || !ok {
			return err
		}
		res, err := sc.river.InsertTx(ctx, tx, params.Args, params.InsertOpts)
		if err != nil {
			return fmt.Errorf("inserting the task of schedule %q: %w", s.Name, err)
		}
		if err := sc.notify(ctx, tx, []river.InsertManyParams{params}); err != nil {
			return err
		}
		id = res.Job.ID
		return sc.store.ScheduleSetTaskTx(ctx, tx, s.Name, id)
	})
	if err != nil {
		return 0, err
	}
	if id != 0 {
		sc.inserted(params)
	}
	return id, nil
}

// wait is how long to sleep from now: until the earliest next tick, at
// most the poll interval.
func (sc *scheduler) wait(now time.Time) time.Duration {
	d := sc.poll
	for _, s := range sc.list {
		if next := s.Spec.Next(now); !next.IsZero() {
			d = min(d, next.Sub(now))
		}
	}
	return max(d, time.Millisecond)
}

// logError logs a step's error, at warning level the first time and then
// at debug level until a step succeeds again, so that a database that stays
// away is one warning, not one a second.
func (sc *scheduler) logError(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return // shutting down
	}
	level := slog.LevelWarn
	if sc.failing {
		level = slog.LevelDebug
	}
	sc.failing = true
	sc.logger.Log(ctx, level, "schedules: cannot enqueue; trying again shortly", slog.String("error", err.Error()))
}

// Schedules returns the schedules with their last task and next run, in
// the configuration file's order; a tenant's, only those of its queues.
func (s *Service) Schedules(ctx context.Context) ([]ScheduleInfo, error) {
	var list []*scheduled
	for _, sch := range s.sched.list {
		if QueueVisible(ctx, sch.params.InsertOpts.Queue) {
			list = append(list, sch)
		}
	}
	names := make([]string, len(list))
	for i, sch := range list {
		names[i] = sch.Name
	}
	states, err := s.store.Schedules(ctx, names)
	if err != nil {
		return nil, err
	}
	now := s.sched.now()
	out := make([]ScheduleInfo, len(list))
	for i, sch := range list {
		st, known := states[sch.Name]
		info := ScheduleInfo{
			Name: sch.Name, Spec: sch.Spec, Kind: sch.params.Args.Kind(), Queue: sch.params.InsertOpts.Queue,
			LastTaskID: st.LastTaskID, LastEnqueuedAt: st.LastEnqueuedAt,
			NextRunAt: sch.Spec.Next(now),
		}
		// A tick later than the last taken is due now, and waits for the
		// leader (at most SchedulePollInterval, unless none is elected). A
		// schedule no leader has seen yet starts at its next tick.
		if latest := sch.Spec.Latest(now); known && !latest.IsZero() && (st.LastTick == nil || st.LastTick.Before(latest)) {
			info.NextRunAt = latest
		}
		out[i] = info
	}
	return out, nil
}

// StartSchedules starts enqueuing the Service's schedules, in this process
// whenever it is River's leader, until Close. Without schedules it does
// nothing.
func (s *Service) StartSchedules() { s.sched.start() }
