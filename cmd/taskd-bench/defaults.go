package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/taskd/taskd/internal/jobs"
)

// tunedEnv is scenario 1b's tuned taskd: the -tuned-* settings, the cpu
// queue at its default.
func (c *config) tunedEnv() []string {
	return []string{
		"TASKD_QUEUES=default=" + strconv.Itoa(c.TunedWorkers) + ",cpu=" + strconv.Itoa(jobs.CPUWorkersDefault()),
		"TASKD_FETCH_COOLDOWN=" + c.TunedCooldown.String(),
		"TASKD_FETCH_POLL_INTERVAL=" + c.TunedPoll.String(),
		"TASKD_DB_MAX_CONNS=" + strconv.Itoa(c.TunedConns),
	}
}

// tunedRiver is scenario 1b's tuned bare River, set as tunedEnv sets taskd.
func (c *config) tunedRiver() riverSettings {
	return riverSettings{Name: "tuned", FetchCooldown: c.TunedCooldown, FetchPollInterval: c.TunedPoll,
		Workers: c.TunedWorkers, Conns: int32(c.TunedConns)}
}

// scenario1b: how near taskd's defaults come to its best. Scenario 1's
// load against taskd with no settings, taskd tuned (-tuned-*), and bare
// River tuned the same, in turn.
func (b *bench) scenario1b(ctx context.Context) error {
	c := b.cfg
	tuned := fmt.Sprintf("%d workers, cooldown %s, poll %s, %d conns", c.TunedWorkers, c.TunedCooldown, c.TunedPoll, c.TunedConns)
	b.logf("scenario 1b: defaults against tuned: scenario 1's load (%d double tasks, %d per batch, %d submitters) on taskd untuned, taskd tuned and bare River tuned (%s), %d rounds",
		c.N, c.BatchSize, c.Clients, tuned, c.Pairs)
	var untuned, tunedTaskd, tunedBare []float64
	for i := 1; i <= c.Pairs; i++ {
		r, err := b.e2eTaskd(ctx, e2eRun{N: c.N})
		if err != nil {
			return fmt.Errorf("taskd untuned: %w", err)
		}
		b.logf("  round %d taskd untuned:    %s", i, r)
		untuned = append(untuned, r.Rate)
		if r, err = b.e2eTaskd(ctx, e2eRun{N: c.N, Env: c.tunedEnv()}); err != nil {
			return fmt.Errorf("taskd tuned: %w", err)
		}
		b.logf("  round %d taskd tuned:      %s", i, r)
		tunedTaskd = append(tunedTaskd, r.Rate)
		if r, err = b.e2eBare(ctx, c.tunedRiver()); err != nil {
			return fmt.Errorf("bare River tuned: %w", err)
		}
		b.logf("  round %d bare River tuned: %s", i, r)
		tunedBare = append(tunedBare, r.Rate)
	}
	const name = "1b defaults"
	b.compare(row{Scenario: name, Metric: "tasks/s untuned", A: untuned, B: tunedTaskd, Baseline: "taskd tuned (" + tuned + ")", Target: "≥0.85× taskd tuned"})
	b.compare(row{Scenario: name, Metric: "tasks/s tuned", A: tunedTaskd, B: tunedBare, Baseline: "bare River tuned the same"})
	b.compare(row{Scenario: name, Metric: "tasks/s untuned", A: untuned, B: tunedBare, Baseline: "bare River tuned the same"})
	return nil
}
