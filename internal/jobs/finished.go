package jobs

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/tidwall/gjson"
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

// Finished is what Config.FinishedFunc is told of tasks that became final.
type Finished struct {
	// Tasks are tasks whose batches, if any, are still to be found.
	Tasks []int64
	// Batches are the batches of other such tasks, as the tasks' metadata
	// named them: finding those needs no read of the tasks.
	Batches []int64
}

// announceFinished announces the tasks this process's workers brought to a
// final state, in batches, to the requests waiting for them in every
// process (store.NotifyFinished). River sends the events after it saved
// the jobs' states, so a waiter woken by one reads the final state.
// The batches of tasks of batches are handed to Config.FinishedFunc too.
func (c *Client) announceFinished(events <-chan *river.Event) {
	defer close(c.announceDone)
	var ids []int64
	var batched Finished
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
		ids, batched.Tasks, batched.Batches = ids[:0], batched.Tasks[:0], batched.Batches[:0]
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
			if c.cfg.FinishedFunc != nil {
				batched.add(ev.Job)
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

// add adds the batch of job, if it is in one. A batch's tasks tend to
// finish together, so a batch that is the last one added is not added
// again.
func (f *Finished) add(job *rivertype.JobRow) {
	batch, in, ok := batchOf(job.Metadata)
	switch {
	case !in:
	case !ok:
		f.Tasks = append(f.Tasks, job.ID)
	case len(f.Batches) == 0 || f.Batches[len(f.Batches)-1] != batch:
		f.Batches = append(f.Batches, batch)
	}
}

// finished hands f to Config.FinishedFunc, if any, in slices of their
// own.
func (c *Client) finished(f Finished) {
	if c.cfg.FinishedFunc != nil && (len(f.Tasks) > 0 || len(f.Batches) > 0) {
		c.cfg.FinishedFunc(Finished{Tasks: slices.Clone(f.Tasks), Batches: slices.Clone(f.Batches)})
	}
}

// batchOf returns the batch that job metadata names (internal/tasks puts
// {"batch_id": N} there): in says whether it names one, ok whether N
// could be read. Every finished task passes through here, so metadata
// without the key is told by a byte search, without a decode.
func batchOf(metadata []byte) (batch int64, in, ok bool) {
	if !bytes.Contains(metadata, []byte(`"batch_id"`)) {
		return 0, false, false
	}
	r := gjson.GetBytes(metadata, "batch_id")
	if !r.Exists() {
		return 0, false, false // a key of that name further in
	}
	if r.Type != gjson.Number {
		return 0, true, false
	}
	batch, err := strconv.ParseInt(r.Raw, 10, 64)
	return batch, true, err == nil && batch > 0
}

func isFinal(s rivertype.JobState) bool {
	return s == rivertype.JobStateCompleted || s == rivertype.JobStateCancelled || s == rivertype.JobStateDiscarded
}
