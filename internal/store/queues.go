package store

import (
	"context"
	"fmt"
	"time"

	"github.com/taskd/taskd/internal/store/dbsqlc"
)

// QueueStats is what the database says of one queue's unfinished tasks.
type QueueStats struct {
	Name string
	// Counts counts the unfinished tasks by state.
	Counts map[string]int64
	// OldestAvailable is the age of the oldest task ready to run; nil when
	// none is.
	OldestAvailable *time.Duration
}

// QueueStats returns the stats of every queue that has unfinished tasks,
// by name.
func (s *Store) QueueStats(ctx context.Context) (map[string]*QueueStats, error) {
	var rows []dbsqlc.QueueStatsRow
	err := s.Retry(ctx, func() error {
		r, err := s.q.QueueStats(ctx)
		rows = r
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading queue stats: %w", err)
	}
	out := map[string]*QueueStats{}
	for _, r := range rows {
		q := out[r.Queue]
		if q == nil {
			q = &QueueStats{Name: r.Queue, Counts: map[string]int64{}}
			out[r.Queue] = q
		}
		q.Counts[r.State] = r.Tasks
		if r.OldestAvailableSecs >= 0 {
			d := time.Duration(r.OldestAvailableSecs * float64(time.Second))
			q.OldestAvailable = &d
		}
	}
	return out, nil
}

// QueuePauseUnworked pauses queue name when River keeps no row for it
// (no process works it) but it holds unfinished tasks; false when it holds
// none, and so is unknown. See the query.
func (s *Store) QueuePauseUnworked(ctx context.Context, name string) (bool, error) {
	var n int64
	err := s.Retry(ctx, func() (err error) {
		n, err = s.q.QueuePauseUnworked(ctx, name)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("pausing queue %q: %w", name, err)
	}
	return n > 0, nil
}

// QueuePausedKeep marks the rows of paused queues updated, so that River's
// queue cleaner keeps them and their pause (see the query), and returns how
// many it marked.
func (s *Store) QueuePausedKeep(ctx context.Context) (int64, error) {
	n, err := s.q.QueuePausedKeep(ctx)
	if err != nil {
		return 0, fmt.Errorf("keeping paused queues: %w", err)
	}
	return n, nil
}
