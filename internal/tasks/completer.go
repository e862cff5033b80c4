package tasks

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/taskd/taskd/internal/store"
)

const (
	// completeGroupMax bounds the completions one statement writes.
	completeGroupMax = 1000
	// completeTimeout bounds one group's statement.
	completeTimeout = 30 * time.Second
)

// completer writes the completions of external workers in groups, one
// statement and one commit per group, as taskd's attempt recorder and
// River's own completer do: each commit waits for the WAL to reach the
// disk, and at thousands of completions a second those waits, not the
// statements, are the cost. It takes the first waiting completion, adds
// whatever else is waiting by then (without waiting for more), writes them
// and answers their callers; completions that arrive meanwhile form the
// next group. An idle service waits for one statement only.
type completer struct {
	store *store.Store
	// finishedFunc is handed the tasks each group completed.
	finishedFunc func(ids []int64)
	ch           chan completeRequest

	startOnce sync.Once
	stopOnce  sync.Once
	stop      chan struct{} // closed by close
	done      chan struct{} // closed when run returns
}

// errClosed answers completions that arrive after close.
var errClosed = errors.New("tasks: the service is shutting down")

type completeRequest struct {
	c    store.Completion
	done chan completeResult
}

type completeResult struct {
	ok  bool
	err error
}

func newCompleter(s *store.Store, finished func(ids []int64)) *completer {
	return &completer{store: s, finishedFunc: finished, ch: make(chan completeRequest, completeGroupMax), stop: make(chan struct{}), done: make(chan struct{})}
}

// close stops the completer once the group being written is; completions
// still waiting are answered errClosed.
func (c *completer) close() {
	c.stopOnce.Do(func() {
		close(c.stop)
		c.startOnce.Do(func() { close(c.done) }) // never started
		<-c.done
		for {
			select {
			case r := <-c.ch:
				r.done <- completeResult{err: errClosed}
			default:
				return
			}
		}
	})
}

// complete completes one task in the next group, and says whether its
// lease held. It returns early with ctx's error when ctx ends first; the
// completion may still be written.
func (c *completer) complete(ctx context.Context, comp store.Completion) (bool, error) {
	select {
	case <-c.stop:
		return false, errClosed
	default:
	}
	c.startOnce.Do(func() { go c.run() })
	req := completeRequest{c: comp, done: make(chan completeResult, 1)}
	select {
	case c.ch <- req:
	case <-c.stop:
		return false, errClosed
	case <-ctx.Done():
		return false, ctx.Err()
	}
	select {
	case r := <-req.done:
		return r.ok, r.err
	case <-c.done:
		// Stopped: the answer, if the completion made it into the last
		// group, is there now.
		select {
		case r := <-req.done:
			return r.ok, r.err
		default:
			return false, errClosed
		}
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// run writes groups until close.
func (c *completer) run() {
	defer close(c.done)
	var held []completeRequest // held back from the last group: a task it already had
	for {
		var group, next []completeRequest
		seen := map[int64]bool{}
		// Twice in one statement, a task would count as completed by both:
		// a second completion of a task waits for the next group, where its
		// lease no longer holds.
		add := func(r completeRequest) {
			if seen[r.c.ID] {
				next = append(next, r)
				return
			}
			seen[r.c.ID] = true
			group = append(group, r)
		}
		for _, r := range held {
			add(r)
		}
		if len(group) == 0 {
			select {
			case r := <-c.ch:
				add(r)
			case <-c.stop:
				return
			}
		}
	drain:
		for len(group) < completeGroupMax {
			select {
			case r := <-c.ch:
				add(r)
			default:
				break drain
			}
		}
		c.write(group)
		held = next
	}
}

// write completes a group. Should the statement fail for a reason other
// than the database being unreachable, each completion is tried on its
// own, so that one of them cannot fail the others.
func (c *completer) write(group []completeRequest) {
	cs := make([]store.Completion, len(group))
	for i, r := range group {
		cs[i] = r.c
	}
	ctx, cancel := context.WithTimeout(context.Background(), completeTimeout)
	defer cancel()
	done, err := c.store.LeaseCompleteMany(ctx, cs)
	if err != nil && len(group) > 1 && !errors.Is(err, store.ErrUnavailable) {
		for _, r := range group {
			c.write([]completeRequest{r})
		}
		return
	}
	var finished []int64
	for i, r := range group {
		if err != nil {
			r.done <- completeResult{err: err}
			continue
		}
		if done[i] {
			finished = append(finished, r.c.ID)
		}
		r.done <- completeResult{ok: done[i]}
	}
	// A lost announcement only delays waiters until their recheck.
	_ = c.store.NotifyFinished(ctx, finished)
	c.finishedFunc(finished)
}
