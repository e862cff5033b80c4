package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskd/taskd/internal/store/dbsqlc"
)

// ScheduleState is what the database remembers of one schedule (the
// configuration file says what it is).
type ScheduleState struct {
	Name string
	// LastTick is the latest tick taken; nil when none was.
	LastTick *time.Time
	// LastTaskID is the task the latest tick enqueued; 0 before the first.
	LastTaskID int64
	// LastEnqueuedAt is when that task was enqueued; nil before the first.
	LastEnqueuedAt *time.Time
}

// ScheduleInsertMissing records the schedules of names that have no row
// yet, each at the tick of the same index in ticks, which is not run.
func (s *Store) ScheduleInsertMissing(ctx context.Context, names []string, ticks []time.Time) error {
	// Inserting nothing twice is safe.
	err := s.Retry(ctx, func() error {
		return s.q.ScheduleInsertMissing(ctx, dbsqlc.ScheduleInsertMissingParams{Names: names, Ticks: ticks})
	})
	if err != nil {
		return fmt.Errorf("recording new schedules: %w", err)
	}
	return nil
}

// ScheduleTickTx takes tick for schedule name in tx, and reports whether
// it got it: false when the schedule's last tick is tick or later (another
// transaction took it), or the schedule has no row.
func (s *Store) ScheduleTickTx(ctx context.Context, tx pgx.Tx, name string, tick time.Time) (bool, error) {
	n, err := s.q.WithTx(tx).ScheduleTick(ctx, dbsqlc.ScheduleTickParams{Name: name, Tick: tick})
	if err != nil {
		return false, fmt.Errorf("taking tick %s of schedule %q: %w", tick.Format(time.RFC3339Nano), name, err)
	}
	return n == 1, nil
}

// ScheduleSetTaskTx records in tx the task that schedule name's latest tick
// enqueued.
func (s *Store) ScheduleSetTaskTx(ctx context.Context, tx pgx.Tx, name string, taskID int64) error {
	if err := s.q.WithTx(tx).ScheduleSetTask(ctx, dbsqlc.ScheduleSetTaskParams{Name: name, TaskID: taskID}); err != nil {
		return fmt.Errorf("recording the task of schedule %q: %w", name, err)
	}
	return nil
}

// Schedules returns the state of the schedules of names that have a row,
// by name.
func (s *Store) Schedules(ctx context.Context, names []string) (map[string]ScheduleState, error) {
	var rows []dbsqlc.TaskdSchedule
	err := s.Retry(ctx, func() (err error) {
		rows, err = s.q.ScheduleList(ctx, names)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading schedules: %w", err)
	}
	out := make(map[string]ScheduleState, len(rows))
	for _, r := range rows {
		st := ScheduleState{Name: r.Name, LastTick: r.LastTick, LastEnqueuedAt: r.LastEnqueuedAt}
		if r.LastTaskID != nil {
			st.LastTaskID = *r.LastTaskID
		}
		out[r.Name] = st
	}
	return out, nil
}

// Leader returns the ID of the River client elected leader, "" while none
// is (an election is due: the last leader stopped, or its term expired).
func (s *Store) Leader(ctx context.Context) (string, error) {
	var id string
	err := s.Retry(ctx, func() (err error) {
		id, err = s.q.LeaderGet(ctx)
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading River's leader: %w", err)
	}
	return id, nil
}
