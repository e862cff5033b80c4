package jobs

import (
	"context"
	"log/slog"
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
func (c *Client) announceFinished(events <-chan *river.Event) {
	defer close(c.announceDone)
	var ids []int64
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
		ids = ids[:0]
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

func isFinal(s rivertype.JobState) bool {
	return s == rivertype.JobStateCompleted || s == rivertype.JobStateCancelled || s == rivertype.JobStateDiscarded
}
