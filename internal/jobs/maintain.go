package jobs

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/taskd/taskd/internal/store"
)

const (
	// HeartbeatIntervalDefault is how often a process marks itself alive.
	HeartbeatIntervalDefault = 5 * time.Second
	// RescueAfterDefault is how long a process may stay silent before its
	// running tasks count as lost and are run again.
	RescueAfterDefault = 15 * time.Second

	rescueBatch        = 1000
	staleProcessMaxAge = time.Hour
	batchCleanInterval = time.Minute
	batchCleanMinAge   = time.Hour
)

// maintain rescues the tasks of dead processes and this process's own
// orphans, and cleans up after them, every HeartbeatInterval. Every process
// runs it; the queries are safe to run concurrently. The heartbeat runs
// apart (heartbeats).
func (c *Client) maintain(ctx context.Context) {
	c.rescueOnce(ctx)
	tick := time.NewTicker(c.cfg.HeartbeatInterval)
	defer tick.Stop()
	lastClean := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// Jitter keeps processes started together from rescuing in step.
		select {
		case <-ctx.Done():
			return
		case <-time.After(rand.N(c.cfg.HeartbeatInterval / 4)):
		}
		c.rescueOnce(ctx)
		c.rescueOrphans(ctx)
		if time.Since(lastClean) >= batchCleanInterval {
			lastClean = time.Now()
			c.clean(ctx)
		}
	}
}

// heartbeats marks the process alive every HeartbeatInterval until ctx is
// done. An insert-only client runs it alone, leaving rescue and cleanup to
// the processes that work.
//
// A beat does not wait for the one before (up to HeartbeatsInFlight run at
// once): on a slow link, whose round trip is as long as the interval, each
// beat takes longer than the interval and must still count (R4's 500 ms
// each way against the fault suite's 1 s interval cancelled every task
// when each beat had one interval), and a beat hung on a dead connection
// (a network cut without a reset) must not hold up the next, which the
// pool gives another connection.
func (c *Client) heartbeats(ctx context.Context) {
	beat := time.NewTicker(c.cfg.HeartbeatInterval)
	defer beat.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, HeartbeatsInFlight)
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
		}
		select {
		case slots <- struct{}{}:
		default:
			continue // as many beats as may be are still trying
		}
		wg.Go(func() {
			defer func() { <-slots }()
			c.heartbeat(ctx)
		})
	}
}

// HeartbeatsInFlight bounds the heartbeats running at once, and so the
// connections they hold while the database keeps quiet: the size of
// Config.HeartbeatStore's pool.
const HeartbeatsInFlight = 2

// heartbeat marks the process alive once, registering it again if its row
// is gone, and tells the watchdog when it succeeded. The statement gets
// until the watchdog's bound (RescueAfter minus its margin): a beat slower
// than that could not have kept the process's tasks anyway, and the
// deadline closes a connection that hangs.
func (c *Client) heartbeat(ctx context.Context) {
	bctx, cancel := context.WithTimeout(ctx, c.cfg.RescueAfter-watchdogMargin(c.cfg.HeartbeatInterval))
	defer cancel()
	start := time.Now()
	err := c.beatStore.ProcessHeartbeat(bctx, c.id)
	if errors.Is(err, store.ErrNotFound) {
		// Deleted after an hour of silence (clean), long after the watchdog
		// stopped every attempt: the timestamp that counts is the new row's.
		start = time.Now()
		err = c.beatStore.ProcessRegister(bctx, c.id, c.hostname, c.pid)
	}
	if err == nil {
		if c.watchdog != nil {
			c.watchdog.beat(start)
		}
		return
	}
	if ctx.Err() == nil {
		c.logger.Error("heartbeat failed", slog.String("error", err.Error()))
	}
}

// rescueOnce rescues lost tasks until none is left.
func (c *Client) rescueOnce(ctx context.Context) {
	for {
		rescued, err := c.store.RescueLost(ctx, c.cfg.RescueAfter, rescueBatch)
		if err != nil {
			if ctx.Err() == nil {
				c.logger.Error("rescuing lost tasks", slog.String("error", err.Error()))
			}
			return
		}
		if len(rescued) > 0 {
			// Tasks whose work had completed run again: worth telling
			// apart from tasks cut off while working.
			unsaved := 0
			for _, r := range rescued {
				if r.Outcome == store.OutcomeCompletedUnsaved {
					unsaved++
				}
			}
			c.logger.Warn("rescued tasks of a dead process", slog.Int("count", len(rescued)),
				slog.Int("completed_unsaved", unsaved), slog.Int64("first_id", rescued[0].TaskID))
			c.announceFinal(ctx, rescuedFinal(rescued))
		}
		if len(rescued) < rescueBatch {
			return
		}
	}
}

// announceFinal tells waiters and batch callbacks, in every process, of
// tasks a rescue or a lease expiry left final: whoever ran them cannot.
func (c *Client) announceFinal(ctx context.Context, ids []int64) {
	if len(ids) == 0 {
		return
	}
	_ = c.store.NotifyFinished(ctx, ids)
	c.finished(Finished{Tasks: ids})
}

// rescuedFinal returns the IDs of the rescued tasks the rescue left final
// (out of attempts, or cancelled).
func rescuedFinal(rescued []store.RescuedTask) []int64 {
	var ids []int64
	for _, r := range rescued {
		if store.IsFinal(r.State) {
			ids = append(ids, r.TaskID)
		}
	}
	return ids
}

func (c *Client) clean(ctx context.Context) {
	if _, err := c.store.ProcessDeleteStale(ctx, staleProcessMaxAge); err != nil && ctx.Err() == nil {
		c.logger.Error("deleting stale processes", slog.String("error", err.Error()))
	}
	if _, err := c.store.BatchDeleteEmpty(ctx, batchCleanMinAge, 1000); err != nil && ctx.Err() == nil {
		c.logger.Error("deleting empty batches", slog.String("error", err.Error()))
	}
	// A pause lasts until it is resumed, also for a queue no process
	// works for a day (River's queue cleaner would drop its row).
	if _, err := c.store.QueuePausedKeep(ctx); err != nil && ctx.Err() == nil {
		c.logger.Error("keeping paused queues", slog.String("error", err.Error()))
	}
}

// leaseExpireBatch bounds the leases one statement expires.
const leaseExpireBatch = 1000

// expireLeases makes the tasks of external workers whose leases ran out
// available again, every LeaseCheckInterval, so that a task whose worker
// died is offered again within about that long. Every process that knows
// external kinds runs it; SKIP LOCKED keeps them apart.
func (c *Client) expireLeases(ctx context.Context) {
	t := time.NewTicker(c.cfg.LeaseCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for {
			expired, err := c.store.LeaseExpire(ctx, leaseExpireBatch)
			if err != nil {
				if ctx.Err() == nil {
					c.logger.Error("lease expiry failed", slog.String("error", err.Error()))
				}
				break
			}
			if len(expired) > 0 {
				c.logger.Info("leases expired; their tasks are offered again", slog.Int("count", len(expired)),
					slog.Int64("first_id", expired[0].ID))
				var final []int64
				for _, e := range expired {
					if store.IsFinal(e.State) {
						final = append(final, e.ID)
					}
				}
				c.announceFinal(ctx, final)
			}
			if len(expired) < leaseExpireBatch {
				break
			}
		}
	}
}
