package jobs

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

const (
	// finishedChanSize is River's event buffer; River drops events when it
	// is full, which only delays waiters until their recheck.
	finishedChanSize = 10_000
	// finishedBatchMax and finishedLinger shape the announcements: what
	// arrives within finishedLinger of the first event goes out in one.
	finishedBatchMax = 1000
	finishedLinger   = 2 * time.Millisecond
)

// announceFinished announces the tasks this process's workers brought to a
// final state, in batches, to the requests waiting for them in every
// process (store.NotifyFinished). River sends the events after it saved
// the jobs' states, so a waiter woken by one reads the final state.
// Tasks of batches are handed to Config.FinishedFunc too.
func (c *Client) announceFinished(events <-chan *river.Event) {
	defer close(c.announceDone)
	var ids, batched []int64
	flush := func() {
		if len(ids) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.store.NotifyFinished(ctx, ids); err != nil {
			c.logger.Warn("announcing finished tasks failed; their waiters wait for the recheck",
				slog.Int("count", len(ids)), slog.String("error", err.Error()))
		}
		c.finished(batched)
		ids, batched = ids[:0], batched[:0]
	}
	var linger <-chan time.Time
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				flush()
				return
			}
			if ev.Job != nil && ev.Kind == river.EventKindJobSnoozed && c.limitMW != nil {
				c.limitMW.settled(ev.Job.ID)
				continue
			}
			if ev.Job == nil || !isFinal(ev.Job.State) {
				continue
			}
			ids = append(ids, ev.Job.ID)
			if c.cfg.FinishedFunc != nil && inBatch(ev.Job.Metadata) {
				batched = append(batched, ev.Job.ID)
			}
			if len(ids) >= finishedBatchMax {
				flush()
				linger = nil
			} else if linger == nil {
				linger = time.After(finishedLinger)
			}
		case <-linger:
			flush()
			linger = nil
		}
	}
}

// finished hands ids to Config.FinishedFunc, if any, as a slice of their
// own.
func (c *Client) finished(ids []int64) {
	if c.cfg.FinishedFunc != nil && len(ids) > 0 {
		c.cfg.FinishedFunc(slices.Clone(ids))
	}
}

// inBatch reports whether job metadata names a batch (internal/tasks puts
// {"batch_id": N} there). A byte search, not a decode, since every
// finished task passes through here.
func inBatch(metadata []byte) bool {
	return bytes.Contains(metadata, []byte(`"batch_id"`))
}

func isFinal(s rivertype.JobState) bool {
	return s == rivertype.JobStateCompleted || s == rivertype.JobStateCancelled || s == rivertype.JobStateDiscarded
}
